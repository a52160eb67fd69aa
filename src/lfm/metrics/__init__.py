"""Evaluation metrics: re-ID ranking (CMC, mAP, mINP), distances, k-reciprocal re-ranking."""

from lfm.metrics.distance import pairwise_distance
from lfm.metrics.reid import ReIDRankingMetric, evaluate_features, evaluate_ranking
from lfm.metrics.rerank import KReciprocalDistance, RerankSettings, k_reciprocal_rerank, k_reciprocal_rerank_features

__all__ = [
    "KReciprocalDistance",
    "ReIDRankingMetric",
    "RerankSettings",
    "evaluate_features",
    "evaluate_ranking",
    "k_reciprocal_rerank",
    "k_reciprocal_rerank_features",
    "pairwise_distance",
]
