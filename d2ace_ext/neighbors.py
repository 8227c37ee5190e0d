"""The local label-appearance matrix Z of Eq. 10, from K nearest neighbours.

The neighbour search (Euclidean) runs once per training set; Z is kept as its nonzeros.
The search is chosen by ``knn_backend`` (a field of D2ACE's and Hard-Imb's configs):

- ``"exact"``: scikit-learn's exact search, O(n² d) (brute force at d > 15).
- ``"faiss"``: FAISS's inverted-file index (IVF-Flat), approximate: k-means cells of
  the points, each query scanning the ``nprobe`` cells nearest to it. On the GPU when
  the features are CUDA tensors and the installed FAISS has GPU support.
- ``"auto"`` (the default): ``"faiss"`` from :data:`AUTO_FAISS_FROM` instances on, when
  FAISS is installed; ``"exact"`` below (so every data set of the paper keeps the exact
  neighbours). ``docs/selectors.md`` has the measurements behind the threshold.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

from .sparse_rows import SparseRows

_ROW_CHUNK = 1 << 14

KNN_BACKENDS = ("exact", "faiss", "auto")

#: From this many instances ``knn_backend="auto"`` uses FAISS (when installed): below it
#: the exact search costs a few CPU-minutes at most and FAISS saves little (2.6x at 10^5
#: rows, mediamill-shaped), from it the exact O(n^2) cost runs into CPU-hours while
#: FAISS's advantage grows as sqrt(n) (12x at 10^6); docs/selectors.md has the table.
AUTO_FAISS_FROM = 200_000

#: FAISS's IVF-Flat settings: about 4 √n cells (FAISS's guideline is 4 √n to 16 √n),
#: the k-means trained on at most 64 points per cell, and the cells each query scans
#: (64: recall 0.73 at 10^5 and 0.63 at 10^6 on noisy mediamill-shaped features,
#: 0.98-1.0 on the real sets with structured features; docs/selectors.md).
_CELLS_PER_SQRT_N = 4
_TRAIN_POINTS_PER_CELL = 64
_MIN_POINTS_PER_CELL = 39  # FAISS's own floor of training points per cell: small n gets fewer cells
DEFAULT_NPROBE = 64
_FAISS_SEED = 1234  # k-means initialisation, so every process builds the same index
_QUERY_CHUNK = 1 << 16

_INSTALL_HINT = "pip install 'd2ace_ext[faiss]' (faiss-cpu), or faiss-gpu for CUDA"


def check_knn_backend(value, name: str = "knn_backend") -> None:
    """Raise ValueError naming ``name`` unless ``value`` is one of :data:`KNN_BACKENDS`."""
    if not isinstance(value, str) or value not in KNN_BACKENDS:
        raise ValueError(f"{name} must be one of {KNN_BACKENDS}, got {value!r}")


def faiss_available() -> bool:
    """Whether ``import faiss`` works here."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _import_faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError(f"knn_backend='faiss' needs FAISS, which is not installed: {_INSTALL_HINT}") from None
    return faiss


def chosen_backend(backend: str, n: int) -> str:
    """The search ``backend`` ("exact", "faiss" or "auto") runs for n instances: "exact"
    or "faiss". "auto" is "faiss" from AUTO_FAISS_FROM instances when FAISS is installed,
    and warns (falling back to "exact") when it is not."""
    check_knn_backend(backend)
    if backend != "auto":
        return backend
    if n < AUTO_FAISS_FROM:
        return "exact"
    if faiss_available():
        return "faiss"
    warnings.warn(
        f"knn_backend='auto': n = {n} is at or past {AUTO_FAISS_FROM}, where the approximate FAISS "
        f"search is the default, but FAISS is not installed; using the exact search, O(n² d). "
        f"To speed it up: {_INSTALL_HINT}",
        RuntimeWarning,
        stacklevel=3,
    )
    return "exact"


def resolve_neighbors(n: int, k: int, features, neighbors, needed_for: str, backend: str = "exact") -> torch.Tensor:
    """The (n, K) int64 neighbour indices a selector uses: ``neighbors`` checked when
    given (``backend`` is then unused), else the K-NN of ``features`` (n, d) by
    ``backend`` (see :data:`KNN_BACKENDS`). ``needed_for`` names the use in the error
    raised when neither is given."""
    if neighbors is not None:
        if not isinstance(neighbors, torch.Tensor) or neighbors.dim() != 2 or neighbors.shape[0] != n:
            got = tuple(neighbors.shape) if isinstance(neighbors, torch.Tensor) else type(neighbors).__name__
            raise ValueError(f"neighbors must be a ({n}, {k}) index tensor, got {got}")
        if neighbors.shape[1] != k:
            raise ValueError(
                f"neighbors has {neighbors.shape[1]} columns but num_neighbors = {k}; "
                f"pass ({n}, {k}) indices or set num_neighbors to match"
            )
        if neighbors.is_floating_point() or neighbors.is_complex() or neighbors.dtype == torch.bool:
            raise TypeError(f"neighbors must hold integer indices, got dtype {neighbors.dtype}")
        if neighbors.layout != torch.strided or int(neighbors.min()) < 0 or int(neighbors.max()) >= n:
            raise ValueError(f"neighbors must be a dense tensor of indices in [0, {n})")
        neighbors = neighbors.to(torch.int64)
        check_other_instances(neighbors, k)
        return neighbors
    if features is None:
        raise ValueError(f"features is required for {needed_for}")
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] != n:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features must be an ({n}, d) tensor, got {shape}")
    if not features.is_floating_point() or not bool(torch.isfinite(features).all()):
        raise ValueError("features must be finite floating-point values")
    if k >= n:
        raise ValueError(f"num_neighbors must be below n = {n}, got {k}")
    return nearest_neighbors(features, k, backend)


def check_other_instances(neighbors: torch.Tensor, k: int) -> None:
    """Raise ValueError naming the first row of ``neighbors`` (n, K) int64 that lists its
    own instance or one instance twice: the exact search gives K distinct other
    instances, and Hard-Imb and Eq. 10 count each listed one (the instance itself is
    added by ``include_self``, not by the list)."""
    hint = (
        f"pass each instance's {k} nearest other instances, each once (scikit-learn: kneighbors() "
        "without X; FAISS: search K + 1 and drop the query itself)"
    )
    rows = torch.arange(neighbors.shape[0], device=neighbors.device)
    itself = (neighbors == rows[:, None]).any(1)
    if bool(itself.any()):
        row = int(itself.nonzero()[0, 0])
        raise ValueError(f"neighbors row {row} lists instance {row} itself: {hint}")
    ordered = neighbors.sort(1).values
    twice = ordered[:, 1:] == ordered[:, :-1]
    if bool(twice.any()):
        row, col = (int(v) for v in twice.nonzero()[0])
        raise ValueError(f"neighbors row {row} lists instance {int(ordered[row, col])} twice: {hint}")


def random_neighbors(n: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k distinct other instances per row, at random: (n, k) int64, a stand-in K-NN where
    which neighbours does not matter (benchmarks of cost, tests of code paths). Row i
    holds i + o, i + o + 1, ..., i + o + k - 1 (mod n) for a random o in [1, n - k]."""
    if not 1 <= k < n:
        raise ValueError(f"random_neighbors: k must be in [1, n - 1] = [1, {n - 1}], got {k}")
    start = torch.randint(1, n - k + 1, (n, 1), generator=generator)
    return (torch.arange(n)[:, None] + start + torch.arange(k)) % n


def nearest_neighbors(features: torch.Tensor, k: int, backend: str = "exact") -> torch.Tensor:
    """Indices of the k nearest other instances. features (n, d) -> (n, k) int64, on the CPU.

    The query point itself is never among its own neighbours (scikit-learn's rule when
    the fitted points are queried). ``backend``: "exact" (scikit-learn), "faiss"
    (:func:`approximate_neighbors`) or "auto" (see :func:`chosen_backend`).
    """
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"num_neighbors must be in [1, n - 1] = [1, {n - 1}], got {k}")
    if chosen_backend(backend, n) == "faiss":
        return approximate_neighbors(features, k)
    points = np.ascontiguousarray(features.detach().to("cpu", torch.float64).numpy())
    search = NearestNeighbors(n_neighbors=k).fit(points)
    found = search.kneighbors(return_distance=False)
    return torch.from_numpy(found.astype(np.int64))


def approximate_neighbors(
    features: torch.Tensor, k: int, *, nlist: int | None = None, nprobe: int = DEFAULT_NPROBE
) -> torch.Tensor:
    """The k nearest other instances by FAISS's IVF-Flat index, approximate.
    features (n, d) -> (n, k) int64 on the CPU. See :class:`IVFNeighbors` for nlist,
    nprobe and the device."""
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"num_neighbors must be in [1, n - 1] = [1, {n - 1}], got {k}")
    return IVFNeighbors(features, nlist).search(k, nprobe)


class IVFNeighbors:
    """A FAISS IVF-Flat (L2) index over the rows of features (n, d), queried by its own rows.

    nlist: the number of k-means cells (default about 4 √n, at most n / 39). Built on the
    GPU when ``features`` is a CUDA tensor and FAISS has GPU support, else on the CPU.
    The k-means seed is fixed and FAISS runs on torch's thread count, so the same
    features, FAISS build and ``torch.get_num_threads()`` give the same index, and the
    same neighbours, in every process. Distances are float32 (the exact backend's are
    float64), so near-ties may order differently.
    """

    def __init__(self, features: torch.Tensor, nlist: int | None = None) -> None:
        faiss = _import_faiss()
        n, d = features.shape
        if nlist is None:
            nlist = max(1, min(round(_CELLS_PER_SQRT_N * math.sqrt(n)), n // _MIN_POINTS_PER_CELL))
        if not isinstance(nlist, int) or isinstance(nlist, bool) or not 1 <= nlist <= n:
            raise ValueError(f"nlist must be an integer in [1, n] = [1, {n}], got {nlist!r}")
        self.nlist = nlist
        self.points = np.ascontiguousarray(features.detach().to("cpu", torch.float32).numpy())
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist, faiss.METRIC_L2)
        self._gpu_resources = None  # must outlive the GPU index
        if features.is_cuda and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            self._gpu_resources = faiss.StandardGpuResources()
            device = features.device.index if features.device.index is not None else torch.cuda.current_device()
            index = faiss.index_cpu_to_gpu(self._gpu_resources, device, index)
        # Set on the index that trains (the GPU copy has k-means parameters of its own).
        index.cp.seed = _FAISS_SEED
        index.cp.max_points_per_centroid = _TRAIN_POINTS_PER_CELL
        index.cp.min_points_per_centroid = 1  # small n: fewer than 39 points per cell is expected there
        with _threads_of_torch(faiss):
            index.train(self.points)
            index.add(self.points)
        self.index = index

    def search(self, k: int, nprobe: int = DEFAULT_NPROBE, rows: np.ndarray | None = None) -> torch.Tensor:
        """The k nearest other rows of each of ``rows`` (m,) (default: all n), scanning
        ``nprobe`` cells per query (more: closer to exact, slower; nprobe >= nlist scans
        everything) -> (m, k) int64 on the CPU, nearest first, the row itself left out."""
        faiss = _import_faiss()
        n = self.points.shape[0]
        if not 1 <= k < n:
            raise ValueError(f"num_neighbors must be in [1, n - 1] = [1, {n - 1}], got {k}")
        if not isinstance(nprobe, int) or isinstance(nprobe, bool) or nprobe < 1:
            raise ValueError(f"nprobe must be an integer >= 1, got {nprobe!r}")
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= n)):
            raise ValueError(f"rows must be a 1-D array of row indices in [0, {n})")
        self.index.nprobe = min(nprobe, self.nlist)
        found = np.empty((rows.shape[0], k + 1), dtype=np.int64)
        with _threads_of_torch(faiss):
            for start in range(0, rows.shape[0], _QUERY_CHUNK):  # bounded (rows, k + 1) results
                stop = min(start + _QUERY_CHUNK, rows.shape[0])
                found[start:stop] = self.index.search(self.points[rows[start:stop]], k + 1)[1]
            short = np.flatnonzero((found < 0).any(1))
            if short.size:  # queries whose scanned cells held fewer than k + 1 points: exact search for those
                found[short] = faiss.knn(self.points[rows[short]], self.points, k + 1)[1]
        return torch.from_numpy(_without_self(found, rows, k))


@contextlib.contextmanager
def _threads_of_torch(faiss):
    """FAISS's OpenMP threads set to torch's intra-op threads while the block runs: the
    one thread setting a run already has (``torch.set_num_threads``, the harness's
    ``--threads``) also governs the search. It also fixes the result: FAISS's k-means
    rounds differently with another thread count (12 % of the rows' neighbours changed
    between 1 and 2 threads at n = 20,000), so processes with the same torch setting,
    such as the ranks of one run, build the same index."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(torch.get_num_threads())
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _without_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """(m, k + 1) neighbours of ``rows`` (m,), nearest first, each row itself possibly
    among them -> (m, k): the row itself removed where present, else the farthest
    dropped (scikit-learn's rule when the fitted points are queried)."""
    is_self = found == rows[:, None]
    # A stable sort on is_self puts the self entry (key 1) after the others and keeps
    # their order by distance; the first k are the neighbours.
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(found, order, axis=1)


def local_label_appearance(
    labels: torch.Tensor, neighbors: torch.Tensor | None, include_self: bool, rows: torch.Tensor | None = None
) -> SparseRows:
    """Eq. 10: Z_ij = 1 when some instance of N(x_i) has label j.

    labels: (n, q) 0/1; neighbors: (n, K) int64 or None (N(x_i) = {x_i});
    ``include_self`` adds x_i to its K neighbours (the published code); rows: (m,) int64
    the instances whose rows of Z to build, in that order (default: all n; a row-sharded
    state builds only its own).
    """
    relevant = labels != 0
    own = relevant if rows is None else relevant[rows.to(relevant.device)]
    if neighbors is None or neighbors.shape[1] == 0:
        return SparseRows.from_dense(own)
    neighbors = neighbors.to(relevant.device)
    if rows is not None:
        neighbors = neighbors[rows.to(relevant.device)]
    appear = torch.empty_like(own)
    for start in range(0, own.shape[0], _ROW_CHUNK):
        stop = min(start + _ROW_CHUNK, own.shape[0])
        block = relevant[neighbors[start:stop]].any(1)
        if include_self:
            block |= own[start:stop]
        appear[start:stop] = block
    return SparseRows.from_dense(appear)
