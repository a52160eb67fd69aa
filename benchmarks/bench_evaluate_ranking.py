"""Time evaluate_ranking against a NumPy full-argsort evaluation at Market-1501 scale.

The NumPy side follows torchreid's Python ``eval_market1501`` path: one
``np.argsort(distmat, axis=1)`` and a per-query loop over the sorted rows (with the
per-query precision computed by NumPy rather than a list comprehension, and junk
items removed in the loop since our protocol keeps them in the gallery).

Run: python benchmarks/bench_evaluate_ranking.py
"""

import argparse
import statistics
import time

import numpy as np
import torch

from lfm.metrics import evaluate_ranking

NUM_QUERY = 3_368
NUM_GALLERY = 15_913
NUM_IDS = 750
NUM_CAMERAS = 6
FEATURE_DIM = 512
TARGET_RATIO = 1 / 3
# Per-dimension noise around unit-variance id centres: gives rank-1 ~0.97, mAP ~0.7.
NOISE = 2.25


def market_like_inputs(seed: int) -> tuple[np.ndarray, ...]:
    """Clustered features with Market-like ids, cameras, junk (-1) and distractors (0)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, NUM_IDS + 1)
    q_pids = rng.choice(ids, NUM_QUERY)
    q_camids = rng.integers(1, NUM_CAMERAS + 1, NUM_QUERY)
    g_pids = np.concatenate([rng.choice(ids, NUM_GALLERY - 2_900), np.zeros(2_500, int), np.full(400, -1)])
    g_camids = rng.integers(1, NUM_CAMERAS + 1, NUM_GALLERY)
    centers = rng.standard_normal((NUM_IDS + 2, FEATURE_DIM), dtype=np.float32)
    features = torch.from_numpy(
        np.concatenate([centers[q_pids + 1], centers[g_pids + 1]])
        + NOISE * rng.standard_normal((NUM_QUERY + NUM_GALLERY, FEATURE_DIM), dtype=np.float32)
    )
    features = torch.nn.functional.normalize(features, dim=1)
    distmat = (1 - features[:NUM_QUERY] @ features[NUM_QUERY:].T).numpy()
    return distmat, q_pids, g_pids, q_camids, g_camids


def numpy_argsort_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """torchreid's eval_market1501 (Python path) with junk removal: CMC [max_rank] and mAP."""
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap = [], []
    for q_idx in range(distmat.shape[0]):
        order = indices[q_idx]
        remove = ((g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])) | (g_pids[order] == -1)
        raw_cmc = matches[q_idx][~remove]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        precision = raw_cmc.cumsum() / np.arange(1, raw_cmc.size + 1)
        all_ap.append((precision * raw_cmc).sum() / raw_cmc.sum())
    return np.mean(np.asarray(all_cmc, dtype=np.float64), axis=0), float(np.mean(all_ap))


def timed(fn) -> tuple[float, object]:
    """Wall time of one call, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def evaluate_with_threads(inputs: tuple[torch.Tensor, ...], threads: int) -> dict:
    """evaluate_ranking with torch limited to the given number of intra-op threads."""
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return evaluate_ranking(*inputs)
    finally:
        torch.set_num_threads(default_threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of evaluate_ranking per thread setting")
    parser.add_argument("--numpy-repeats", type=int, default=2, help="timed runs of the NumPy evaluation")
    args = parser.parse_args()

    inputs = market_like_inputs(seed=0)
    torch_inputs = tuple(torch.from_numpy(x) for x in inputs)
    all_threads = torch.get_num_threads()
    thread_settings = sorted({all_threads, 1}, reverse=True)
    print(f"distmat {inputs[0].shape[0]} x {inputs[0].shape[1]} float32, cores shared with other jobs")

    # Interleaved repeats, so that load from other jobs on the machine hits every row alike.
    ours = evaluate_ranking(*torch_inputs)
    times = {threads: [] for threads in thread_settings}
    numpy_times = []
    for repeat in range(max(args.repeats, args.numpy_repeats)):
        if repeat < args.repeats:
            for threads in thread_settings:
                times[threads].append(timed(lambda: evaluate_with_threads(torch_inputs, threads))[0])
        if repeat < args.numpy_repeats:
            elapsed, (numpy_cmc, numpy_map) = timed(lambda: numpy_argsort_ranking(*inputs))
            numpy_times.append(elapsed)

    cmc_diff = float(np.abs(ours["cmc"].numpy() - numpy_cmc).max())
    map_diff = abs(ours["mAP"] - numpy_map)
    agree = cmc_diff <= 1e-6 and map_diff <= 1e-6
    print(f"rank1 {ours['rank1']:.4f}  mAP {ours['mAP']:.4f}  valid queries {ours['num_valid_queries']}")
    verdict = "ok" if agree else "MISMATCH"
    print(f"agreement with NumPy: max |cmc diff| {cmc_diff:.1e}, |mAP diff| {map_diff:.1e} -> {verdict}")

    numpy_s = statistics.median(numpy_times)
    print()
    print("| implementation                            | seconds (median) | ratio | target <= 1/3 |")
    print("|-------------------------------------------|------------------|-------|---------------|")
    print(f"| {'numpy full argsort + per-query loop':<41} | {numpy_s:16.3f} | {1:5.3f} | {'-':<13} |")
    for threads in thread_settings:
        seconds = statistics.median(times[threads])
        ratio = seconds / numpy_s
        name = f"lfm evaluate_ranking (torch, {threads} thread{'s' if threads > 1 else ''})"
        print(f"| {name:<41} | {seconds:16.3f} | {ratio:5.3f} | {'met' if ratio <= TARGET_RATIO else 'NOT met':<13} |")
    if not agree:
        raise SystemExit("evaluate_ranking disagrees with the NumPy reference")


if __name__ == "__main__":
    main()
