"""Time and peak memory of k-reciprocal re-ranking beside the dense NumPy reference.

Each row runs in its own process (so its peak resident memory is its own, inputs included):
- Market-1501 scale (3,368 query x 15,913 gallery, 512-d): the reference (benchmarks/
  reference_rerank.py, the published algorithm in dense NumPy) and ours from the same three
  distance matrices; ours from the features; agreement of ours with the reference.
- MSMT17 scale (11,659 x 82,161, 512-d): ours from the features, re-ranked rows consumed
  chunk by chunk by the ranking metric, as src/eval.py does (no dense matrix anywhere).

Run: python benchmarks/bench_rerank.py [--skip-reference] [--skip-msmt]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lfm.metrics import evaluate_features, evaluate_ranking
from lfm.metrics.rerank import k_reciprocal_rerank, k_reciprocal_rerank_features

SCALES = {"market1501": (3_368, 15_913, 750), "msmt17": (11_659, 82_161, 3_060)}
FEATURE_DIM = 512
TARGETS = {"ours, distances": (20.0, 3.0), "msmt17": (None, 8.0)}


def clustered_features(scale: str, seed: int = 0) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """L2-normalised features around identity centres [Q + G, 512], pids and cameras (6 or 15)."""
    num_query, num_gallery, num_ids = SCALES[scale]
    rng = np.random.default_rng(seed)
    pids = rng.integers(1, num_ids + 1, num_query + num_gallery)
    camids = rng.integers(1, 7 if scale == "market1501" else 16, num_query + num_gallery)
    features = rng.standard_normal((num_ids + 1, FEATURE_DIM), dtype=np.float32)[pids]
    features += 2.25 * rng.standard_normal(features.shape, dtype=np.float32)
    return torch.nn.functional.normalize(torch.from_numpy(features), dim=1), pids, camids


def euclidean(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Dense Euclidean distances, filled in row chunks (no cdist temporaries of the full size)."""
    out = torch.empty(left.shape[0], right.shape[0])
    for start in range(0, left.shape[0], 1024):
        out[start : start + 1024] = torch.cdist(left[start : start + 1024], right)
    return out


def run_case(case: str, output: Path) -> dict:
    """One measurement in this process: seconds of the re-ranking itself and peak memory (GB)."""
    scale = "msmt17" if case == "msmt17" else "market1501"
    num_query = SCALES[scale][0]
    features, pids, camids = clustered_features(scale)
    query, gallery = features[:num_query], features[num_query:]
    result = {}
    if case in ("reference", "ours, distances"):
        q_g, q_q, g_g = euclidean(query, gallery), euclidean(query, query), euclidean(gallery, gallery)
        start = time.perf_counter()
        if case == "reference":
            sys.path.insert(0, str(Path(__file__).parent))
            from reference_rerank import reference_rerank

            final = reference_rerank(q_g.numpy(), q_q.numpy(), g_g.numpy())
        else:
            final = k_reciprocal_rerank(q_g, q_q, g_g).numpy()
        result["seconds"] = time.perf_counter() - start
        np.save(output, final)
    elif case == "ours, features":
        start = time.perf_counter()
        final = k_reciprocal_rerank_features(query, gallery).dense()
        result["seconds"] = time.perf_counter() - start
        np.save(output, final.numpy())
    else:
        start = time.perf_counter()
        metrics = evaluate_features(
            query,
            gallery,
            pids[:num_query],
            pids[num_query:],
            camids[:num_query],
            camids[num_query:],
            distance="euclidean",
            rerank={},
        )
        result["seconds"] = time.perf_counter() - start
        result["mAP"] = metrics["mAP"]
    result["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return result


def measure(case: str, output: Path) -> dict:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", case, "--output", str(output)], capture_output=True, text=True
    )
    if completed.returncode:
        raise SystemExit(f"{case} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def agreement(reference: np.ndarray, ours: np.ndarray) -> str:
    top_ref, top_ours = np.argsort(reference, axis=1)[:, :10], np.argsort(ours, axis=1)[:, :10]
    same = int((top_ref == top_ours).all(axis=1).sum())
    return f"max |diff| {np.abs(reference - ours).max():.1e}, same top-10 for {same} of {len(reference)} queries"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-reference", action="store_true", help="skip the dense NumPy reference (74 s, 9 GB)")
    parser.add_argument("--skip-msmt", action="store_true", help="skip the MSMT17-scale row")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, Path(args.output))))
        return

    cases = [
        *([] if args.skip_reference else ["reference"]),
        "ours, distances",
        "ours, features",
        *([] if args.skip_msmt else ["msmt17"]),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; each row in its own process")
    with tempfile.TemporaryDirectory() as folder:
        outputs = {case: Path(folder) / f"{index}.npy" for index, case in enumerate(cases)}
        results = {case: measure(case, outputs[case]) for case in cases}
        lines = []
        if "reference" in results:
            reference = np.load(outputs["reference"])
            for case in ("ours, distances", "ours, features"):
                lines.append(f"{case} vs reference: {agreement(reference, np.load(outputs[case]))}")
            lines.append(
                "evaluated on the reference's output: "
                f"mAP {ranking_map(reference):.4f}; on ours (distances): {ranking_map(np.load(outputs['ours, distances'])):.4f}"
            )
    print()
    print("| scale | implementation | seconds | peak memory (GB) | target |")
    print("|---|---|---|---|---|")
    for case, result in results.items():
        scale = "MSMT17 (11,659 x 82,161)" if case == "msmt17" else "Market-1501 (3,368 x 15,913)"
        name = {"reference": "reference (dense NumPy)", "msmt17": "ours, features, ranked chunk by chunk"}.get(
            case, case
        )
        seconds_target, memory_target = TARGETS.get(case, (None, None))
        met = (seconds_target is None or result["seconds"] <= seconds_target) and (
            memory_target is None or result["peak_gb"] <= memory_target
        )
        target = (
            ""
            if memory_target is None
            else (
                f"{'<= ' + str(seconds_target) + ' s, ' if seconds_target else ''}<= {memory_target} GB: {'met' if met else 'NOT met'}"
            )
        )
        print(f"| {scale} | {name} | {result['seconds']:.1f} | {result['peak_gb']:.2f} | {target} |")
    print()
    for line in lines:
        print(line)


def ranking_map(final: np.ndarray) -> float:
    """mAP of a Market-scale re-ranked distance with the benchmark's pids and cameras."""
    _, pids, camids = clustered_features("market1501")
    num_query = SCALES["market1501"][0]
    return evaluate_ranking(final, pids[:num_query], pids[num_query:], camids[:num_query], camids[num_query:])["mAP"]


if __name__ == "__main__":
    main()
