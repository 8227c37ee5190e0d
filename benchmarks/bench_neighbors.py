"""Exact (scikit-learn) against approximate (FAISS IVF-Flat) K-NN, side by side.

For each n: the construction time of the K = 6 neighbours of every instance by each
backend, the recall of the approximate neighbours against the exact ones, and the share
of D2ACE's local label-appearance entries Z (Eq. 10, the correlation term's input) that
change when the approximate neighbours replace the exact ones.

Data: a seeded synthetic set of mediamill's shape (d = 120, q = 101, label cardinality
4.38, ``make_multilabel``: features and labels from one low-rank latent model, so the
labels follow the features as in real data), or ``--features uniform`` (i.i.d. uniform
features: no structure, the worst case for any approximate search; Z then uses the
synthetic labels), or a real MULAN set (``--dataset NAME``, MinMax-scaled, all rows;
needs ``D2ACE_DATA_DIR``).

Exact search is O(n² d): past ``--full-exact-up-to`` rows it runs on ``--queries``
sampled rows only and its time for all n rows is that time × n / queries (brute force:
the cost is linear in the number of queries; the fit itself is a copy). Recall and the
Z change are then measured on those rows (a Z row depends only on that row's
neighbours, so the sampled rows are an unbiased sample of Z's rows). FAISS's build
(k-means + adding the points) is always timed in full; its search likewise past
``--full-faiss-up-to`` rows. Each printed time says whether it was measured or scaled.

    python -m benchmarks.bench_neighbors --n 100000 1000000 [--queries 2000] [--nprobe 16 64]
    python -m benchmarks.bench_neighbors --dataset Corel5k
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

from d2ace_ext.datasets.synthetic import make_multilabel
from d2ace_ext.neighbors import DEFAULT_NPROBE, IVFNeighbors, _without_self, nearest_neighbors

K = 6
MEDIAMILL = {"d": 120, "q": 101, "cardinality": 4.38}


def synthetic(n: int, kind: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (n, 120) float32, labels (n, 101) 0/1) of mediamill's shape."""
    features, labels = make_multilabel(n, MEDIAMILL["d"], MEDIAMILL["q"], MEDIAMILL["cardinality"], seed=seed)
    if kind == "uniform":
        features = torch.rand(n, MEDIAMILL["d"], generator=torch.Generator().manual_seed(seed + 1))
    return features, labels


def real(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A MULAN set, MinMax-scaled as the paper's protocol feeds it to the K-NN."""
    from d2ace_ext.datasets.mulan import load_mulan

    x, y = load_mulan(name)
    low, high = x.min(0), x.max(0)
    x = (x - low) / np.where(high > low, high - low, 1.0)
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))


def timed(work):
    """(work(), wall seconds, CPU seconds of this process, all threads). The machine
    may be shared: CPU seconds are the steadier measure there, wall seconds what a
    user waits on an idle one."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def exact_rows(features: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, float, float]:
    """The exact K-NN of ``rows`` (scikit-learn, float64, the exact backend's search) and
    the wall and CPU seconds all n rows would take: the fit, plus the search of
    ``rows`` × n / len(rows)."""
    points = np.ascontiguousarray(features.to(torch.float64).numpy())
    search, fit_wall, fit_cpu = timed(lambda: NearestNeighbors(n_neighbors=K + 1).fit(points))
    found, wall, cpu = timed(lambda: search.kneighbors(points[rows], return_distance=False))
    scale = points.shape[0] / rows.size
    return (
        torch.from_numpy(_without_self(found.astype(np.int64), rows, K)),
        fit_wall + wall * scale,
        fit_cpu + cpu * scale,
    )


def recall(features: torch.Tensor, rows: np.ndarray, exact: torch.Tensor, approx: torch.Tensor) -> tuple[float, float]:
    """(set recall, distance recall) of ``approx`` against ``exact`` (m, K), the
    neighbours of ``rows`` (m,). Set recall: mean |exact ∩ approx| / K. Distance
    recall: the share of approximate neighbours no farther (float64, relative 1e-6)
    than the exact K-th one, which counts a tied neighbour as found; sets with many
    tied distances (binary features such as bibtex's) need it."""
    hits = (exact[:, :, None] == approx[:, None, :]).any(2).sum()
    x = features.to(torch.float64)
    anchor = x[torch.from_numpy(rows)][:, None, :]
    kth = (x[exact[:, -1]] - anchor[:, 0]).norm(dim=1)
    far = (x[approx] - anchor).norm(dim=2)
    close = far <= kth[:, None] * (1 + 1e-6)
    return float(hits) / exact.numel(), float(close.float().mean())


def z_rows(labels: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
    """Eq. 10 for the rows whose neighbours are given (the paper preset: x_i itself not
    added): Z_ij = 1 when some neighbour has label j. neighbors (m, K) -> (m, q) bool."""
    return (labels[neighbors] != 0).any(1)


def label_jaccard(labels: torch.Tensor, rows: np.ndarray, neighbors: torch.Tensor) -> float:
    """Mean over ``rows`` and their neighbours (m, K) of |Y_i ∩ Y_j| / |Y_i ∪ Y_j|: how
    alike the labels of an instance and its neighbours are, which is what Z carries."""
    y = labels != 0
    mine = y[torch.from_numpy(rows)][:, None, :]
    theirs = y[neighbors]
    both, either = (mine & theirs).sum(2), (mine | theirs).sum(2)
    return float((both / either.clamp(min=1)).mean())


def row(
    name: str,
    n: int,
    backend: str,
    timed_as: str,
    walls: tuple[float, float],
    cpus: tuple[float, float],
    features,
    labels,
    rows,
    exact,
    found,
    z_exact,
) -> dict:
    """One printed line: times (build, search), recall and the Z change of ``found`` against ``exact``."""
    changed = z_exact ^ z_rows(labels, found)
    set_recall, distance_recall = recall(features, rows, exact, found)
    return {
        "case": name,
        "n": n,
        "backend": backend,
        "build_s": walls[0],
        "search_s": walls[1],
        "total_s": sum(walls),
        "build_cpu_s": cpus[0],
        "total_cpu_s": sum(cpus),
        "timed": timed_as,
        "recall": set_recall,
        "distance_recall": distance_recall,
        "z_changed_of_entries": float(changed.float().mean()),
        "z_changed_of_nonzeros": float(changed.sum()) / max(int(z_exact.sum()), 1),
        "rows_with_z_change": float(changed.any(1).float().mean()),
        "label_jaccard": label_jaccard(labels, rows, found),
    }


def case(name: str, features: torch.Tensor, labels: torch.Tensor, args) -> list[dict]:
    n = features.shape[0]
    full_exact = n <= args.full_exact_up_to
    full_faiss = n <= args.full_faiss_up_to
    rows = (
        np.arange(n) if full_exact else np.sort(np.random.default_rng(args.seed).choice(n, args.queries, replace=False))
    )
    if full_exact:
        exact, exact_s, exact_cpu = timed(lambda: nearest_neighbors(features, K, "exact"))
    else:
        exact, exact_s, exact_cpu = exact_rows(features, rows)
    z_exact = z_rows(labels, exact)
    timed_as = "measured" if full_exact else f"scaled from {rows.size} rows"
    out = [
        row(name, n, "exact", timed_as, (0.0, exact_s), (0.0, exact_cpu), features, labels, rows, exact, exact, z_exact)
    ]
    index, build_s, build_cpu = timed(lambda: IVFNeighbors(features))
    for nprobe in args.nprobe:
        found, search_s, search_cpu = timed(lambda: index.search(K, nprobe, rows=None if full_faiss else rows))
        scale = 1 if full_faiss else n / rows.size
        # Compared on the rows the exact search covered (all of them, or the sample).
        approx = found[torch.from_numpy(rows)] if full_faiss and rows.size < n else found
        timed_as = "measured" if full_faiss else f"build measured, search scaled from {rows.size} rows"
        out.append(
            row(
                name,
                n,
                f"faiss nlist={index.nlist} nprobe={nprobe}",
                timed_as,
                (build_s, search_s * scale),
                (build_cpu, search_cpu * scale),
                features,
                labels,
                rows,
                exact,
                approx,
                z_exact,
            )
        )
    # The floor: K other instances drawn at random, no search at all.
    g = torch.Generator().manual_seed(args.seed)
    drawn = (torch.from_numpy(rows)[:, None] + torch.randint(1, n, (rows.size, K), generator=g)) % n
    out.append(
        row(name, n, "random (reference)", "-", (0.0, 0.0), (0.0, 0.0), features, labels, rows, exact, drawn, z_exact)
    )
    return out


def show(rows: list[dict]) -> None:
    print(
        f"{'case':<22} {'n':>9} {'backend':<28} {'build s':>8} {'search s':>9} {'total s':>9} {'cpu s':>9} {'recall@6':>8} {'dist rec':>8} "
        f"{'Z chg/nq':>9} {'Z chg/nnz':>9} {'rows chg':>8} {'jaccard':>7}  timed"
    )
    for r in rows:
        print(
            f"{r['case']:<22} {r['n']:>9} {r['backend']:<28} {r['build_s']:>8.1f} {r['search_s']:>9.1f} "
            f"{r['total_s']:>9.1f} {r['total_cpu_s']:>9.1f} {r['recall']:>8.3f} {r['distance_recall']:>8.3f} {r['z_changed_of_entries']:>9.4f} "
            f"{r['z_changed_of_nonzeros']:>9.4f} {r['rows_with_z_change']:>8.3f} {r['label_jaccard']:>7.3f}  {r['timed']}",
            flush=True,
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="*", default=[100_000, 1_000_000], help="synthetic set sizes")
    parser.add_argument("--features", choices=("synthetic", "uniform"), default="synthetic")
    parser.add_argument("--dataset", nargs="*", default=[], help="real MULAN sets instead of --n (D2ACE_DATA_DIR)")
    parser.add_argument("--queries", type=int, default=2000, help="sampled rows where a search is scaled")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[DEFAULT_NPROBE], help="FAISS cells scanned per query")
    parser.add_argument("--full-exact-up-to", type=int, default=20_000, help="largest n searched exactly in full")
    parser.add_argument("--full-faiss-up-to", type=int, default=200_000, help="largest n FAISS searches in full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"faiss {__import__('faiss').__version__}, K = {K}",
        flush=True,
    )
    rows: list[dict] = []
    cases = [(name, lambda name=name: real(name)) for name in args.dataset] or [
        (f"{args.features} d=120", lambda n=n: synthetic(n, args.features, args.seed)) for n in args.n
    ]
    for name, make in cases:
        features, labels = make()
        found = case(name, features, labels, args)
        show(found)
        rows += found
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
