"""Evaluate a feature file written by src/eval.py save_features=true.

    python -m lfm.metrics outputs/<eval run>/features.npz [--rerank] [--k1 20 --k2 6 --lambda-value 0.3]

Distance and AP definition default to the ones the file was written with, so the printed
metrics are the evaluation's; --rerank adds the k-reciprocal re-ranked ones.
"""

import argparse
import json
import sys

from lfm.errors import InputError
from lfm.metrics.features_file import load_features
from lfm.metrics.reid import evaluate_features

KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lfm.metrics", description=__doc__.splitlines()[0])
    parser.add_argument("features", help="a .npz feature file (src/eval.py save_features=true)")
    parser.add_argument("--rerank", action="store_true", help="also report the k-reciprocal re-ranked metrics")
    parser.add_argument("--k1", type=int, help="re-ranking k1 (default: the file's, else 20)")
    parser.add_argument("--k2", type=int, help="re-ranking k2 (default: the file's, else 6)")
    parser.add_argument("--lambda-value", type=float, help="re-ranking lambda (default: the file's, else 0.3)")
    parser.add_argument("--distance", choices=("cosine", "euclidean"), help="default: the file's")
    parser.add_argument("--ap", choices=("standard", "trapezoid"), help="default: the file's")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    return parser.parse_args(argv)


def evaluate_file(args: argparse.Namespace) -> dict[str, float]:
    features = load_features(args.features)
    settings = features.settings
    distance = args.distance or settings.get("distance", "cosine")
    ap = args.ap or settings.get("ap", "standard")
    results = evaluate_features(*features.ranking_inputs(), distance=distance, ap=ap)
    metrics = {key: results[key] for key in KEYS}
    if args.rerank:
        rerank = dict(settings.get("rerank_settings") or {})
        chosen = {"k1": args.k1, "k2": args.k2, "lambda_value": args.lambda_value}
        rerank.update({key: value for key, value in chosen.items() if value is not None})
        try:
            reranked = evaluate_features(*features.ranking_inputs(), distance=distance, ap=ap, rerank=rerank)
        except ValueError as error:
            raise InputError(str(error)) from None
        metrics.update({f"rerank/{key}": reranked[key] for key in KEYS})
    return metrics


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        metrics = evaluate_file(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if args.json:
        print(json.dumps(metrics))
        return
    print("Results: " + " ".join(f"{key}={metrics[key]:.4f}" for key in KEYS))
    if args.rerank:
        print("Re-ranked: " + " ".join(f"{key}={metrics['rerank/' + key]:.4f}" for key in KEYS))


if __name__ == "__main__":
    main()
