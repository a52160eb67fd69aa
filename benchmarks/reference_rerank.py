"""The published k-reciprocal re-ranking as dense NumPy, step for step: what we compare against.

A re-implementation of ``re_ranking(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value)`` from
zhunzhong07/person-re-ranking (the version torchreid and layumi's baseline ship): the same
dense (Q + G)^2 float32 matrices (distances, V, its query expansion), the same full argsort,
the same per-item loops, so its time and memory are the reference's. Used by the tests
(agreement) and by benchmarks/bench_rerank.py (time and peak memory beside ours).
"""

import numpy as np


def reference_rerank(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3) -> np.ndarray:
    num_query = q_g_dist.shape[0]
    squared = np.power(np.block([[q_q_dist, q_g_dist], [q_g_dist.T, g_g_dist]]), 2).astype(np.float32)
    dist = np.transpose(squared / np.max(squared, axis=0))
    del squared
    num_items = dist.shape[0]
    order = np.argsort(dist).astype(np.int32)
    half = int(np.around(k1 / 2.0))

    def reciprocal(item: int, k: int) -> np.ndarray:
        forward = order[item, : k + 1]
        backward = order[forward, : k + 1]
        return forward[np.where(backward == item)[0]]

    encoding = np.zeros_like(dist)
    for item in range(num_items):
        own = reciprocal(item, k1)
        grown = own
        for candidate in own:
            theirs = reciprocal(candidate, half)
            if len(np.intersect1d(theirs, own)) > 2.0 / 3 * len(theirs):
                grown = np.append(grown, theirs)
        grown = np.unique(grown)
        weight = np.exp(-dist[item, grown])
        encoding[item, grown] = weight / np.sum(weight)
    dist = dist[:num_query]
    if k2 != 1:
        expanded = np.zeros_like(encoding)
        for item in range(num_items):
            expanded[item] = np.mean(encoding[order[item, :k2]], axis=0)
        encoding = expanded
        del expanded
    holders = [np.where(encoding[:, column] != 0)[0] for column in range(num_items)]
    jaccard = np.zeros_like(dist)
    for query in range(num_query):
        overlap = np.zeros(num_items, dtype=np.float32)
        for column in np.where(encoding[query] != 0)[0]:
            others = holders[column]
            overlap[others] += np.minimum(encoding[query, column], encoding[others, column])
        jaccard[query] = 1 - overlap / (2.0 - overlap)
    final = jaccard * (1 - lambda_value) + dist * lambda_value
    return final[:, num_query:]
