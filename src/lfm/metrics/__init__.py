"""Evaluation metrics."""

from lfm.metrics.reid import ReIDRankingMetric, evaluate_ranking, pairwise_distance

__all__ = ["ReIDRankingMetric", "evaluate_ranking", "pairwise_distance"]
