"""Time evaluate_ranking against a NumPy full-argsort evaluation at Market-1501 scale, and the
memory-bounded evaluate_features against the dense path at MSMT17 scale.

The NumPy side follows torchreid's Python ``eval_market1501`` path: one
``np.argsort(distmat, axis=1)`` and a per-query loop over the sorted rows (with the
per-query precision computed by NumPy rather than a list comprehension, and junk
items removed in the loop since our protocol keeps them in the gallery).

MSMT17 scale (11,659 query x 82,161 gallery, 512-d features): each path runs in its own
process; "memory above the features" is its peak resident memory minus the resident memory
once the features exist. The dense path (pairwise_distance, then evaluate_ranking) is what the
metric did before; evaluate_features computes distances query chunk by query chunk.

Run: python benchmarks/bench_evaluate_ranking.py [--skip-msmt]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lfm.metrics import evaluate_features, evaluate_ranking, pairwise_distance

NUM_QUERY = 3_368
NUM_GALLERY = 15_913
NUM_IDS = 750
NUM_CAMERAS = 6
FEATURE_DIM = 512
TARGET_RATIO = 1 / 3
# Per-dimension noise around unit-variance id centres: gives rank-1 ~0.97, mAP ~0.7.
NOISE = 2.25
MSMT17 = {"num_query": 11_659, "num_gallery": 82_161, "num_ids": 3_060, "num_cameras": 15}
MSMT17_TARGETS = {"seconds": 30.0, "gb_above_features": 4.0}


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


def msmt17_inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Clustered, L2-normalised query and gallery features at MSMT17 scale, with pids and cameras."""
    rng = np.random.default_rng(seed)
    num_query, num_gallery = MSMT17["num_query"], MSMT17["num_gallery"]
    pids = rng.integers(1, MSMT17["num_ids"] + 1, num_query + num_gallery)
    camids = rng.integers(1, MSMT17["num_cameras"] + 1, num_query + num_gallery)
    features = rng.standard_normal((MSMT17["num_ids"] + 1, FEATURE_DIM), dtype=np.float32)[pids]
    features += NOISE * rng.standard_normal(features.shape, dtype=np.float32)
    features = torch.nn.functional.normalize(torch.from_numpy(features), dim=1)
    pids, camids = torch.from_numpy(pids), torch.from_numpy(camids)
    return (
        features[:num_query],
        features[num_query:],
        pids[:num_query],
        pids[num_query:],
        camids[:num_query],
        camids[num_query:],
    )


def memory_gb(field: str) -> float:
    """This process's resident memory (VmRSS) or its peak since the last reset (VmHWM), in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1e6
    raise SystemExit("the memory columns need Linux's /proc/self/status")


def msmt17_child(path: str) -> dict:
    """One MSMT17-scale evaluation in this process: seconds, GB above the features, mAP."""
    query, gallery, q_pids, g_pids, q_camids, g_camids = msmt17_inputs()
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak (VmHWM) from here
    with_features = memory_gb("VmRSS")
    start = time.perf_counter()
    if path == "dense":
        result = evaluate_ranking(pairwise_distance(query, gallery, "cosine"), q_pids, g_pids, q_camids, g_camids)
    else:
        result = evaluate_features(query, gallery, q_pids, g_pids, q_camids, g_camids, distance="cosine")
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "gb_above_features": memory_gb("VmHWM") - with_features,
        "mAP": result["mAP"],
        "mINP": result["mINP"],
    }


def msmt17_table() -> None:
    results = {}
    for path in ("dense", "chunked"):
        completed = subprocess.run([sys.executable, __file__, "--msmt17-child", path], capture_output=True, text=True)
        if completed.returncode:
            raise SystemExit(f"MSMT17 {path} evaluation failed:\n{completed.stderr}")
        results[path] = json.loads(completed.stdout.strip().splitlines()[-1])
    names = {"dense": "pairwise_distance + evaluate_ranking (before)", "chunked": "evaluate_features (chunked)"}
    print()
    print(f"MSMT17 scale: {MSMT17['num_query']:,} query x {MSMT17['num_gallery']:,} gallery, 512-d, cosine")
    print("| implementation | seconds | GB above the features | mAP | target <= 30 s, <= 4 GB |")
    print("|---|---|---|---|---|")
    for path, result in results.items():
        met = (
            result["seconds"] <= MSMT17_TARGETS["seconds"]
            and result["gb_above_features"] <= MSMT17_TARGETS["gb_above_features"]
        )
        target = ("met" if met else "NOT met") if path == "chunked" else "-"
        print(
            f"| {names[path]} | {result['seconds']:.1f} | {result['gb_above_features']:.2f} | "
            f"{result['mAP']:.4f} | {target} |"
        )
    if abs(results["dense"]["mAP"] - results["chunked"]["mAP"]) > 1e-6:
        raise SystemExit("evaluate_features disagrees with the dense evaluation at MSMT17 scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-msmt", action="store_true", help="skip the MSMT17-scale table")
    parser.add_argument("--msmt17-child", choices=("dense", "chunked"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of evaluate_ranking per thread setting")
    parser.add_argument("--numpy-repeats", type=int, default=2, help="timed runs of the NumPy evaluation")
    args = parser.parse_args()
    if args.msmt17_child:
        print(json.dumps(msmt17_child(args.msmt17_child)))
        return

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
                times[threads].append(timed(lambda threads=threads: evaluate_with_threads(torch_inputs, threads))[0])
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
    if not args.skip_msmt:
        msmt17_table()


if __name__ == "__main__":
    main()
