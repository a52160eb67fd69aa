"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) without a dense (query + gallery)^2 matrix.

The semantics are those of the reference implementation (zhunzhong07/person-re-ranking, the
``re_ranking(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value)`` that torchreid and layumi's
baseline ship): distances in, the final query x gallery distance out. For the N = Q + G items:

1. d(i, j) is the squared distance divided by the largest squared distance of item i; each
   item's ``max(k1 + 1, k2)`` nearest items (itself included) are kept, nothing else.
2. R(i, k) are those of i's k + 1 nearest that have i among their own k + 1 nearest. R(i, k1)
   grows by R(c, round(k1 / 2)) for every c in R(i, k1) sharing more than 2/3 of it with R(i, k1).
3. V[i, j] = exp(-d(i, j)) over the grown set, normalised to sum 1: a sparse row of a few
   dozen entries (a dense N x N matrix in the reference).
4. Local query expansion: V[i] becomes the mean of V over i's k2 nearest.
5. Jaccard distance of query q and gallery g: 1 - m / (2 - m), m = sum_j min(V[q, j], V[g, j]),
   found through an inverted index (gallery items per column j), never a dense matrix.
6. final = (1 - lambda) * Jaccard + lambda * d(q, g).

Memory is the sparse V (about N * k1 * k2 entries at most) plus bounded chunks; the dense entry
also holds its inputs and its [Q, G] output. Ties between equal distances may order
neighbours differently from NumPy's argsort, as they may between two NumPy versions.
"""

import itertools
from dataclasses import dataclass

import torch

from lfm.metrics.distance import (
    ArrayLike,
    Distance,
    check_distance,
    check_feature_shapes,
    check_finite,
    prepare_features,
    prepared_distance,
)

# Chunks are sized so that their temporaries hold about this many elements.
_CHUNK_ELEMENTS = 1 << 23


@dataclass(frozen=True)
class RerankSettings:
    """The published defaults (k1=20, k2=6, lambda_value=0.3) are the paper's for Market-1501."""

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3

    def __post_init__(self) -> None:
        for name in ("k1", "k2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"rerank {name} must be a positive int, got {value!r}")
        if not 0.0 <= self.lambda_value <= 1.0:
            raise ValueError(f"rerank lambda_value must be in [0, 1], got {self.lambda_value!r}")


class _DistanceMatrices:
    """Distances of the Q + G items from the reference's three dense matrices.

    Item i's distances are column i of [[q_q, q_g], [q_g^T, g_g]], as in the reference (the
    same as row i when q_q and g_g are symmetric)."""

    def __init__(self, q_g: torch.Tensor, q_q: torch.Tensor, g_g: torch.Tensor):
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.num_query, self.num_gallery = q_g.shape
        self.num_items = self.num_query + self.num_gallery
        self.device = q_g.device

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """[stop - start, N] distances of items start..stop (which lie on one side of num_query)."""
        q = self.num_query
        if stop <= q:
            return torch.cat([self.q_q[:, start:stop].T, self.q_g[start:stop]], dim=1)
        return torch.cat([self.q_g[:, start - q : stop - q].T, self.g_g[:, start - q : stop - q].T], dim=1)

    def pairs(self, items: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        """Distance of each item to the other item of its pair (the reference's D[other, item])."""
        q = self.num_query
        item_is_query, other_is_query = items < q, others < q
        item_q, item_g = items.clamp(max=q - 1), (items - q).clamp(min=0)
        other_q, other_g = others.clamp(max=q - 1), (others - q).clamp(min=0)
        return torch.where(
            other_is_query,
            torch.where(item_is_query, self.q_q[other_q, item_q], self.q_g[other_q, item_g]),
            torch.where(item_is_query, self.q_g[item_q, other_g], self.g_g[other_g, item_g]),
        )

    def query_gallery(self, queries: torch.Tensor) -> torch.Tensor:
        return self.q_g.index_select(0, queries)


class _Features:
    """Distances of the Q + G items computed from their features when needed."""

    def __init__(self, query: torch.Tensor, gallery: torch.Tensor, distance: Distance):
        self.items = prepare_features(torch.cat([query, gallery]), distance)
        self.distance = distance
        self.num_query, self.num_gallery = query.shape[0], gallery.shape[0]
        self.num_items = self.num_query + self.num_gallery
        self.device = self.items.device

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return prepared_distance(self.items[start:stop], self.items, self.distance)

    def pairs(self, items: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        distances = torch.empty(items.numel(), dtype=self.items.dtype, device=self.device)
        for start, stop in _row_chunks(items.numel(), self.items.shape[1]):
            left, right = self.items[items[start:stop]], self.items[others[start:stop]]
            distances[start:stop] = (
                1 - (left * right).sum(dim=1) if self.distance == "cosine" else (left - right).norm(dim=1)
            )
        return distances

    def query_gallery(self, queries: torch.Tensor) -> torch.Tensor:
        return prepared_distance(self.items[queries], self.items[self.num_query :], self.distance)


def _row_chunks(num_rows: int, row_length: int, split_at: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) ranges of about _CHUNK_ELEMENTS elements, none crossing `split_at`."""
    size = max(1, _CHUNK_ELEMENTS // max(row_length, 1))
    bounds = set(range(0, num_rows, size)) | {num_rows} | ({split_at} if split_at else set())
    bounds = sorted(bounds)
    return list(itertools.pairwise(bounds))


def _nearest(source, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's `count` nearest items [N, count] (nearest first) and its largest squared distance [N]."""
    nearest = torch.empty(source.num_items, count, dtype=torch.int64, device=source.device)
    scale = torch.empty(source.num_items, dtype=torch.float32, device=source.device)
    for start, stop in _row_chunks(source.num_items, source.num_items, source.num_query):
        squared = source.rows(start, stop).to(torch.float32).square_()
        scale[start:stop] = squared.amax(dim=1)
        nearest[start:stop] = torch.topk(squared, count, dim=1, largest=False, sorted=True).indices
    return nearest, scale


def _is_reciprocal(neighbours: torch.Tensor) -> torch.Tensor:
    """[N, k] bool: whether neighbours[i, m] has i among its own k neighbours."""
    num_items, k = neighbours.shape
    reciprocal = torch.empty_like(neighbours, dtype=torch.bool)
    for start, stop in _row_chunks(num_items, k * k):
        own = torch.arange(start, stop, device=neighbours.device)[:, None, None]
        reciprocal[start:stop] = (neighbours[neighbours[start:stop]] == own).any(dim=2)
    return reciprocal


def _expanded_sets(nearest: torch.Tensor, k1: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's grown k-reciprocal set as (rows, cols) index pairs, grouped by row, cols ascending."""
    num_items = nearest.shape[0]
    half = round(k1 / 2)  # round half to even, as np.around in the reference
    near, near_half = nearest[:, : k1 + 1], nearest[:, : half + 1]
    members = near.masked_fill(~_is_reciprocal(near), -1)  # R(i, k1); -1: not a member
    half_members = near_half.masked_fill(~_is_reciprocal(near_half), -2)  # R(c, k1/2); -2 never matches
    half_sizes = (half_members >= 0).sum(dim=1).to(torch.float64)
    rows, cols = [], []
    for start, stop in _row_chunks(num_items, (k1 + 1) * (half + 1) * (k1 + 1)):
        own = members[start:stop]
        candidates = half_members[near[start:stop]]  # [c, k1 + 1, half + 1]
        shared = (candidates[..., None] == own[:, None, None, :]).any(dim=3).sum(dim=2)
        accepted = (own >= 0) & (shared.to(torch.float64) > 2.0 / 3 * half_sizes[near[start:stop]])
        grown = torch.cat([own, candidates.masked_fill(~accepted[..., None], -1).flatten(1)], dim=1)
        grown = grown.masked_fill(grown < 0, num_items).sort(dim=1).values
        repeated = torch.cat([torch.zeros_like(grown[:, :1], dtype=torch.bool), grown[:, 1:] == grown[:, :-1]], 1)
        keep = (grown < num_items) & ~repeated
        chunk_rows, position = keep.nonzero(as_tuple=True)
        rows.append(chunk_rows + start)
        cols.append(grown[chunk_rows, position])
    return torch.cat(rows), torch.cat(cols)


def _segment_sum(values: torch.Tensor, segments: torch.Tensor, num_segments: int) -> torch.Tensor:
    return torch.zeros(num_segments, dtype=values.dtype, device=values.device).index_add_(0, segments, values)


def _gather_rows(
    row_start: torch.Tensor, row_count: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry positions of the given CSR rows, and for each the position of its row in `rows`."""
    counts = row_count[rows]
    owner = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), counts)
    offset = torch.arange(owner.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[owner]
    return row_start[rows][owner] + offset, owner


@dataclass(frozen=True)
class _SparseRows:
    """A sparse [N, N] matrix in CSR form: rows (grouped, ascending), cols, values, row_start, row_count."""

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    row_count: torch.Tensor

    @property
    def row_start(self) -> torch.Tensor:
        return torch.cumsum(self.row_count, 0) - self.row_count

    @classmethod
    def from_grouped(cls, rows, cols, values, num_rows: int) -> "_SparseRows":
        return cls(rows, cols, values, torch.bincount(rows, minlength=num_rows))


def _query_expansion(encoding: _SparseRows, nearest: torch.Tensor, k2: int) -> _SparseRows:
    """V[i] <- mean of V over i's k2 nearest items, in chunks of items."""
    num_items = nearest.shape[0]
    row_start, rows, cols, values = encoding.row_start, [], [], []
    mean_row_length = max(1, int(encoding.row_count.float().mean()) * k2)
    for start, stop in _row_chunks(num_items, mean_row_length):
        sources = nearest[start:stop, :k2].reshape(-1)
        positions, owner = _gather_rows(row_start, encoding.row_count, sources)
        item = owner // k2 + start
        keys, inverse = torch.unique(item * num_items + encoding.cols[positions], return_inverse=True)
        summed = _segment_sum(encoding.values[positions], inverse, keys.numel())
        rows.append(keys // num_items)
        cols.append(keys % num_items)
        values.append(summed / k2)
    return _SparseRows.from_grouped(torch.cat(rows), torch.cat(cols), torch.cat(values), num_items)


class KReciprocalDistance:
    """The re-ranked query x gallery distance, computed for chunks of queries on demand.

    Built by :func:`k_reciprocal_rerank_features` (or :func:`k_reciprocal_rerank`): the
    neighbour sets and the sparse encodings are computed once; ``rows`` gives any queries'
    rows of the final distance, so an evaluation never holds more than a chunk of them.
    """

    def __init__(self, source, settings: RerankSettings):
        if settings.k1 + 1 > source.num_items or settings.k2 > source.num_items:
            raise ValueError(
                f"rerank k1 + 1 and k2 must not exceed the {source.num_items} query + gallery items, "
                f"got k1={settings.k1}, k2={settings.k2}"
            )
        self.source, self.settings = source, settings
        self.num_query, self.num_gallery = source.num_query, source.num_gallery
        nearest, self.scale = _nearest(source, max(settings.k1 + 1, settings.k2))
        rows, cols = _expanded_sets(nearest, settings.k1)
        weights = torch.exp(-self._normalised(source.pairs(rows, cols).to(torch.float32), rows))
        weights = weights / _segment_sum(weights, rows, source.num_items)[rows]
        encoding = _SparseRows.from_grouped(rows, cols, weights, source.num_items)
        if settings.k2 != 1:
            encoding = _query_expansion(encoding, nearest, settings.k2)
        self.encoding = encoding
        self._build_gallery_index()

    def _normalised(self, distance: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Squared distance over the item's largest squared distance (broadcast over a row's columns)."""
        scale = self.scale[items]
        return distance.square() / (scale if distance.ndim == 1 else scale[:, None])

    def _build_gallery_index(self) -> None:
        """Inverted index: for each column j, the gallery items with V[g, j] > 0 and those values."""
        encoding, num_query = self.encoding, self.num_query
        in_gallery = encoding.rows >= num_query
        cols = encoding.cols[in_gallery]
        order = torch.argsort(cols, stable=True)
        self.index_items = encoding.rows[in_gallery][order] - num_query
        self.index_values = encoding.values[in_gallery][order]
        self.index_count = torch.bincount(cols, minlength=self.source.num_items)
        self.index_start = torch.cumsum(self.index_count, 0) - self.index_count

    def rows(self, queries: torch.Tensor) -> torch.Tensor:
        """[len(queries), G] final distances of the given query indices."""
        queries = torch.as_tensor(queries, device=self.source.device).to(torch.int64)
        parts = [self._jaccard(part) for part in self._cost_chunks(queries)]
        jaccard = torch.cat(parts) if parts else torch.empty(0, self.num_gallery, device=self.source.device)
        original = self._normalised(self.source.query_gallery(queries).to(torch.float32), queries)
        lambda_value = self.settings.lambda_value
        return jaccard * (1 - lambda_value) + original * lambda_value

    def dense(self) -> torch.Tensor:
        """The whole [Q, G] final distance."""
        output = torch.empty(self.num_query, self.num_gallery, dtype=torch.float32, device=self.source.device)
        for start, stop in _row_chunks(self.num_query, self.num_gallery):
            output[start:stop] = self.rows(torch.arange(start, stop, device=self.source.device))
        return output

    def _cost_chunks(self, queries: torch.Tensor) -> list[torch.Tensor]:
        """Split `queries` so each part expands to about _CHUNK_ELEMENTS (query entry, gallery item) pairs."""
        encoding = self.encoding
        positions, owner = _gather_rows(encoding.row_start, encoding.row_count, queries)
        cost = _segment_sum(self.index_count[encoding.cols[positions]], owner, queries.numel())
        cost = cost + self.num_gallery  # the dense [rows, G] accumulator
        bounds = torch.searchsorted(
            torch.cumsum(cost, 0),
            torch.arange(_CHUNK_ELEMENTS, int(cost.sum()) + _CHUNK_ELEMENTS, _CHUNK_ELEMENTS, device=cost.device),
        )
        edges = sorted({0, queries.numel(), *(int(bound) + 1 for bound in bounds.tolist() if bound < queries.numel())})
        return [queries[start:stop] for start, stop in itertools.pairwise(edges)]

    def _jaccard(self, queries: torch.Tensor) -> torch.Tensor:
        encoding = self.encoding
        positions, owner = _gather_rows(encoding.row_start, encoding.row_count, queries)
        cols = encoding.cols[positions]
        pair_positions, entry = _gather_rows(self.index_start, self.index_count, cols)
        shared = torch.minimum(encoding.values[positions][entry], self.index_values[pair_positions])
        flat = owner[entry] * self.num_gallery + self.index_items[pair_positions]
        overlap = torch.zeros(queries.numel() * self.num_gallery, dtype=torch.float32, device=queries.device)
        overlap = overlap.index_add_(0, flat, shared).view(queries.numel(), self.num_gallery)
        return 1 - overlap / (2 - overlap)


def _as_float_tensor(value: ArrayLike, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(value)
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    check_finite(tensor, name)
    return tensor


def k_reciprocal_rerank(
    q_g_dist: ArrayLike,
    q_q_dist: ArrayLike,
    g_g_dist: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> torch.Tensor:
    """Re-ranked [Q, G] distance from query-gallery, query-query and gallery-gallery distances.

    Inputs are Euclidean-style distances (tensors or NumPy arrays, on any device); the result
    is float32 on their device, as the reference's is float32.
    """
    q_g = _as_float_tensor(q_g_dist, "q_g_dist")
    q_q = _as_float_tensor(q_q_dist, "q_q_dist").to(q_g.device)
    g_g = _as_float_tensor(g_g_dist, "g_g_dist").to(q_g.device)
    num_query, num_gallery = q_g.shape
    if q_q.shape != (num_query, num_query) or g_g.shape != (num_gallery, num_gallery):
        raise ValueError(
            f"q_g_dist has shape {tuple(q_g.shape)}, so q_q_dist must be {(num_query, num_query)} and g_g_dist "
            f"{(num_gallery, num_gallery)}; got {tuple(q_q.shape)} and {tuple(g_g.shape)}"
        )
    settings = RerankSettings(k1, k2, lambda_value)
    return KReciprocalDistance(_DistanceMatrices(q_g, q_q, g_g), settings).dense()


def k_reciprocal_rerank_features(
    query_features: ArrayLike,
    gallery_features: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    distance: Distance = "euclidean",
) -> KReciprocalDistance:
    """Re-ranking from features [Q, D] and [G, D]: no dense matrix is ever built.

    ``distance`` is the base distance (as in :func:`lfm.metrics.pairwise_distance`). Returns a
    :class:`KReciprocalDistance`; its ``rows(query_indices)`` gives chunks of the final distance
    and ``dense()`` the whole [Q, G] matrix.
    """
    check_distance(distance)
    query = _as_float_tensor(query_features, "query_features")
    gallery = _as_float_tensor(gallery_features, "gallery_features").to(query.device)
    check_feature_shapes(query, gallery)
    return KReciprocalDistance(_Features(query, gallery, distance), RerankSettings(k1, k2, lambda_value))
