"""Re-ID ranking metrics: CMC, mAP and mINP under the Market-1501 protocol.

Protocol (torchreid's ``eval_market1501``): for each query, gallery items with the
same pid *and* the same camera are dropped, as are all junk items (pid ``-1``);
distractors (pid ``0``) stay as negatives. A *match* is a gallery item with the
query's pid seen by another camera. Queries left without a match are skipped.

The ranking is computed without sorting rows: each query's few match distances are
sorted, every gallery item is bucketed by how many matches are strictly closer
(``torch.searchsorted``), and counting the valid non-matches per bucket gives each
match's rank. Cost is O(Q * G * log M) for M matches per query, in bounded chunks.

Ties: a non-match at exactly the same distance as a match is ranked before it
(pessimistic), where a stable argsort would order the two by gallery index. This
needs bit-equal distances, which continuous features do not produce. Ties among
matches do not change any result.
"""

from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lfm.metrics.distance import (
    ArrayLike,
    Distance,
    check_distance,
    check_feature_shapes,
    check_finite,
    prepare_features,
    prepared_distance,
)
from lfm.metrics.rerank import k_reciprocal_rerank_features
from lfm.metrics.samples import first_occurrence

APDefinition = Literal["standard", "trapezoid"]

AP_DEFINITIONS = ("standard", "trapezoid")
_JUNK_PID = -1
# Rows per chunk are chosen so that one chunk's [rows, G] temporaries stay near this size.
_CHUNK_ELEMENTS = 1 << 22


def _check_ids(num_query: int, num_gallery: int, ids: dict[str, torch.Tensor]) -> None:
    expected = {"q_pids": num_query, "q_camids": num_query, "g_pids": num_gallery, "g_camids": num_gallery}
    for name, ids_tensor in ids.items():
        if ids_tensor.ndim != 1 or ids_tensor.numel() != expected[name]:
            raise ValueError(
                f"there are {num_query} queries and {num_gallery} gallery items but {name} has "
                f"{ids_tensor.numel()} entries (shape {tuple(ids_tensor.shape)}); "
                f"expected a 1-D array of {expected[name]}"
            )


def _validate_options(max_rank: int | None = None, ap: str | None = None, distance: str | None = None) -> None:
    if max_rank is not None and (isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < 1):
        raise ValueError(f"max_rank must be a positive int, got {max_rank!r}")
    if ap is not None and ap not in AP_DEFINITIONS:
        raise ValueError(f"ap must be one of {AP_DEFINITIONS}, got {ap!r}")
    if distance is not None:
        check_distance(distance)


def _position_in_row(rows: torch.Tensor, row_counts: torch.Tensor) -> torch.Tensor:
    """0-based position of each entry within its row, for entries grouped by ascending row."""
    row_start = torch.cumsum(row_counts, 0) - row_counts
    return torch.arange(rows.numel(), device=rows.device) - row_start[rows]


def _same_pid_pairs(
    q_pids: torch.Tensor, g_pids: torch.Tensor, q_camids: torch.Tensor, g_camids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(query, gallery) index pairs sharing a pid, grouped by query, and whether each is a match.

    Found through the gallery sorted by pid, so the cost is O(G log G + pairs), never Q * G.
    Junk queries (pid -1) get no pairs: they can have no match.
    """
    gallery_by_pid = torch.argsort(g_pids, stable=True)
    sorted_pids = g_pids[gallery_by_pid]
    first = torch.searchsorted(sorted_pids, q_pids, side="left")
    count = torch.searchsorted(sorted_pids, q_pids, side="right") - first
    count = count.masked_fill(q_pids == _JUNK_PID, 0)
    rows = torch.repeat_interleave(torch.arange(q_pids.numel(), device=q_pids.device), count)
    cols = gallery_by_pid[first[rows] + _position_in_row(rows, count)]
    return rows, cols, g_camids[cols] != q_camids[rows]


def _match_ranks(
    dist: torch.Tensor,
    pair_rows: torch.Tensor,
    pair_cols: torch.Tensor,
    pair_is_match: torch.Tensor,
    junk_cols: torch.Tensor,
    num_matches: torch.Tensor,
) -> torch.Tensor:
    """1-based ranks [C, M] of each query's matches among its valid gallery items.

    ``dist`` [C, G] is overwritten. Entries at or beyond a row's ``num_matches`` are
    padding and must be masked by the caller.
    """
    num_rows = dist.shape[0]
    max_matches = int(num_matches.max())
    match_rows, match_cols = pair_rows[pair_is_match], pair_cols[pair_is_match]
    match_dist = dist.new_full((num_rows, max_matches), float("inf"))
    match_dist[match_rows, _position_in_row(match_rows, num_matches)] = dist[match_rows, match_cols]
    match_dist = match_dist.sort(dim=1).values

    # Only valid non-matches are counted: matches, same-camera same-pid items and junk go
    # to +inf, whose bucket (the row's match count) lies past its last match and is never summed.
    dist[pair_rows, pair_cols] = float("inf")
    dist[:, junk_cols] = float("inf")
    bucket = torch.searchsorted(match_dist, dist, side="left", out_int32=True)
    num_buckets = max_matches + 1
    bucket += torch.arange(0, num_rows * num_buckets, num_buckets, device=dist.device, dtype=torch.int32)[:, None]
    per_bucket = torch.bincount(bucket.view(-1), minlength=num_rows * num_buckets).view(num_rows, num_buckets)
    negatives_before = per_bucket[:, :max_matches].cumsum(dim=1).to(torch.float64)
    return negatives_before + torch.arange(1, max_matches + 1, device=dist.device, dtype=torch.float64)


def _average_precision(ranks: torch.Tensor, num_matches: torch.Tensor, ap: str) -> torch.Tensor:
    """Per-query AP [C] from 1-based match ranks [C, M] (float64), padded past num_matches."""
    matches_so_far = torch.arange(1, ranks.shape[1] + 1, device=ranks.device, dtype=torch.float64)
    real = matches_so_far <= num_matches[:, None]
    precision = matches_so_far / ranks
    if ap == "trapezoid":
        # layumi's compute_mAP: average the precision just before and at each match.
        position = ranks - 1
        before = torch.where(position > 0, (matches_so_far - 1) / position.clamp(min=1), 1.0)
        precision = (precision + before) / 2
    return (precision * real).sum(dim=1) / num_matches


def _as_ids(values: dict[str, ArrayLike], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: torch.as_tensor(value, device=device).to(torch.int64) for name, value in values.items()}


def evaluate_ranking(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    ap: APDefinition = "standard",
) -> dict[str, torch.Tensor | float | int]:
    """CMC, mAP and mINP of a query x gallery distance matrix (smaller = more similar).

    Accepts torch tensors or NumPy arrays and runs on ``distmat``'s device.
    ``ap="standard"`` is the torchreid / fast-reid AP (mean precision at each match);
    ``ap="trapezoid"`` is layumi's ``compute_mAP``, never higher.

    Returns ``cmc`` (float64 tensor of length ``max_rank``, fractions), ``rank1``,
    ``rank5``, ``rank10``, ``mAP`` and ``mINP`` (floats in [0, 1]) and ``num_valid_queries``.
    mINP (Ye et al., TPAMI 2021) is the mean over valid queries of the number of matches
    divided by the rank of the last match. Unlike torchreid, which shortens ``cmc`` to the
    gallery size when ``max_rank`` exceeds it, ``cmc`` keeps length ``max_rank``: ranks past
    the gallery repeat the last value (1.0, since every valid query has a match within the gallery).
    """
    distmat = torch.as_tensor(distmat)
    if not distmat.is_floating_point():
        distmat = distmat.to(torch.float64)
    distmat = distmat.to(torch.promote_types(distmat.dtype, torch.float32))
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D [num_query, num_gallery], got shape {tuple(distmat.shape)}")
    ids = _as_ids({"q_pids": q_pids, "g_pids": g_pids, "q_camids": q_camids, "g_camids": g_camids}, distmat.device)
    _check_ids(*distmat.shape, ids)
    check_finite(distmat, "distmat")
    _validate_options(max_rank=max_rank, ap=ap)
    return _rank_queries(lambda queries: distmat.index_select(0, queries), distmat.shape[1], ids, max_rank, ap)


def evaluate_features(
    query_features: ArrayLike,
    gallery_features: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    distance: Distance = "cosine",
    max_rank: int = 50,
    ap: APDefinition = "standard",
    rerank: Mapping | None = None,
) -> dict[str, torch.Tensor | float | int]:
    """:func:`evaluate_ranking` of query [Q, D] and gallery [G, D] features, memory-bounded.

    Distances are computed for a chunk of queries at a time and never held whole, so the
    memory above the features is a few chunks of [rows, G] (MSMT17: 11,659 x 82,161 in a
    few hundred MB). ``rerank`` ({} for the defaults, or any of k1, k2, lambda_value) ranks by
    the k-reciprocal re-ranked distance instead (:mod:`lfm.metrics.rerank`), also chunk by chunk.
    """
    _validate_options(max_rank=max_rank, ap=ap, distance=distance)
    query = torch.as_tensor(query_features)
    gallery = torch.as_tensor(gallery_features).to(query.device)
    check_feature_shapes(query, gallery)
    ids = _as_ids({"q_pids": q_pids, "g_pids": g_pids, "q_camids": q_camids, "g_camids": g_camids}, query.device)
    _check_ids(query.shape[0], gallery.shape[0], ids)
    check_finite(query, "query_features")
    check_finite(gallery, "gallery_features")
    if rerank is not None:
        reranked = k_reciprocal_rerank_features(query, gallery, **rerank, distance=distance)
        return _rank_queries(reranked.rows, gallery.shape[0], ids, max_rank, ap)
    query, gallery = prepare_features(query, distance), prepare_features(gallery, distance)
    return _rank_queries(
        lambda queries: prepared_distance(query.index_select(0, queries), gallery, distance),
        gallery.shape[0],
        ids,
        max_rank,
        ap,
    )


def _rank_queries(
    distance_rows: Callable[[torch.Tensor], torch.Tensor],
    num_gallery: int,
    ids: dict[str, torch.Tensor],
    max_rank: int,
    ap: str,
) -> dict[str, torch.Tensor | float | int]:
    """The ranking metrics, taking the distance rows [rows, G] of chunks of valid queries."""
    device = ids["q_pids"].device
    rows, cols, is_match = _same_pid_pairs(ids["q_pids"], ids["g_pids"], ids["q_camids"], ids["g_camids"])
    num_matches = torch.bincount(rows[is_match], minlength=ids["q_pids"].numel())
    valid_queries = torch.nonzero(num_matches).squeeze(1)
    num_valid = valid_queries.numel()
    if num_valid == 0:
        raise ValueError(
            "no valid query: no query has a gallery match (same pid, different camera, pid != -1); "
            "check that query and gallery pids and camera ids come from the same split"
        )
    # Keep the pairs of valid queries only, with rows renumbered 0..num_valid-1 (still grouped).
    keep = num_matches[rows] > 0
    rows = (torch.cumsum(num_matches > 0, 0) - 1)[rows[keep]]
    cols, is_match, num_matches = cols[keep], is_match[keep], num_matches[valid_queries]
    junk_cols = torch.nonzero(ids["g_pids"] == _JUNK_PID).squeeze(1)

    num_ranks = max(max_rank, 10)
    first_rank_hist = torch.zeros(num_ranks + 1, dtype=torch.int64, device=device)
    ap_sum = torch.zeros((), dtype=torch.float64, device=device)
    inp_sum = torch.zeros((), dtype=torch.float64, device=device)
    chunk_rows = max(1, _CHUNK_ELEMENTS // max(num_gallery, 1))
    chunk_starts = torch.arange(0, num_valid + chunk_rows, chunk_rows, device=device)
    pair_bounds = torch.searchsorted(rows, chunk_starts).tolist()
    for chunk, start in enumerate(range(0, num_valid, chunk_rows)):
        pairs = slice(pair_bounds[chunk], pair_bounds[chunk + 1])
        chunk_matches = num_matches[start : start + chunk_rows]
        dist = distance_rows(valid_queries[start : start + chunk_rows])
        ranks = _match_ranks(dist, rows[pairs] - start, cols[pairs], is_match[pairs], junk_cols, chunk_matches)
        first_rank = ranks[:, 0].to(torch.int64).clamp(max=num_ranks + 1) - 1
        first_rank_hist += torch.bincount(first_rank, minlength=num_ranks + 1)
        ap_sum += _average_precision(ranks, chunk_matches, ap).sum()
        last_rank = ranks.gather(1, (chunk_matches - 1)[:, None]).squeeze(1)
        inp_sum += (chunk_matches / last_rank).sum()

    cmc = (first_rank_hist[:num_ranks].cumsum(dim=0).to(torch.float64) / num_valid).cpu()
    return {
        "cmc": cmc[:max_rank],
        "rank1": float(cmc[0]),
        "rank5": float(cmc[4]),
        "rank10": float(cmc[9]),
        "mAP": float(ap_sum) / num_valid,
        "mINP": float(inp_sum) / num_valid,
        "num_valid_queries": num_valid,
    }


class ReIDRankingMetric(Metric):
    """CMC, mAP and mINP over query and gallery features accumulated across batches (and DDP ranks).

    ``update`` takes a batch mixing query and gallery samples; ``index`` is each sample's
    dataset index, used in ``compute`` to drop the duplicates a DistributedSampler adds
    by padding (the first occurrence of each index is kept). ``compute`` returns
    :func:`evaluate_ranking`'s dict.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        distance: Distance = "cosine",
        max_rank: int = 50,
        ap: APDefinition = "standard",
        rerank: Mapping | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        _validate_options(max_rank=max_rank, ap=ap, distance=distance)
        self.distance = distance
        self.max_rank = max_rank
        self.ap = ap
        self.rerank = None if rerank is None else dict(rerank)
        for name in ("features", "pids", "camids", "is_query", "index"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        features: torch.Tensor,
        pids: torch.Tensor,
        camids: torch.Tensor,
        is_query: torch.Tensor,
        index: torch.Tensor,
    ) -> None:
        """Add a batch: features [N, D], pids [N], camids [N], is_query [N] bool, index [N] long."""
        if features.ndim != 2:
            raise ValueError(f"features must be 2-D [N, D], got shape {tuple(features.shape)}")
        per_sample = {"pids": pids, "camids": camids, "is_query": is_query, "index": index}
        for name, value in per_sample.items():
            if value.ndim != 1 or value.shape[0] != features.shape[0]:
                raise ValueError(
                    f"features has {features.shape[0]} rows but {name} has shape {tuple(value.shape)}; "
                    f"expected [{features.shape[0]}]"
                )
        if is_query.dtype != torch.bool:
            raise ValueError(f"is_query must be a bool tensor, got dtype {is_query.dtype}")
        self.features.append(features.detach())
        self.pids.append(pids.to(torch.int64))
        self.camids.append(camids.to(torch.int64))
        self.is_query.append(is_query)
        self.index.append(index.to(torch.int64))

    def gathered(self) -> dict[str, torch.Tensor]:
        """Every sample once, in dataset-index order: features, pids, camids, is_query, index."""
        # States are lists before a DDP sync and concatenated tensors after it.
        if len(self.index) == 0:
            raise ValueError("ReIDRankingMetric.compute() called before any update()")
        index = dim_zero_cat(self.index)
        first = first_occurrence(index)
        return {
            name: dim_zero_cat(getattr(self, name))[first]
            for name in ("features", "pids", "camids", "is_query", "index")
        }

    def compute(self) -> dict:
        """Deduplicate by index, split query / gallery, and evaluate the ranking chunk by chunk.

        With ``rerank`` set, the dict also holds ``"rerank"``: the same metrics on the
        k-reciprocal re-ranked distance."""
        samples = self.gathered()
        is_query = samples["is_query"]
        is_gallery = ~is_query
        if not is_query.any() or not is_gallery.any():
            raise ValueError(
                f"need both query and gallery features, got {int(is_query.sum())} query and "
                f"{int(is_gallery.sum())} gallery samples; check the is_query flags passed to update()"
            )
        features, pids, camids = samples["features"], samples["pids"], samples["camids"]
        arguments = (
            features[is_query],
            features[is_gallery],
            pids[is_query],
            pids[is_gallery],
            camids[is_query],
            camids[is_gallery],
            self.distance,
            self.max_rank,
            self.ap,
        )
        results = evaluate_features(*arguments)
        if self.rerank is not None:
            results["rerank"] = evaluate_features(*arguments, rerank=self.rerank)
        return results
