"""The K-NN backends of Eq. 10's local context and Hard-Imb's local imbalance: exact
(scikit-learn, as before), approximate (FAISS IVF-Flat) and "auto", chosen by
``knn_backend`` on D2ACEConfig / HardImbConfig. The FAISS tests skip where FAISS is not
installed (``pip install 'd2ace_ext[faiss]'``)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from d2ace_ext import D2ACEConfig, D2ACESampler, make_sampler
from d2ace_ext import neighbors as nb
from d2ace_ext.harness.option_checks import selector_options_accepted
from d2ace_ext.neighbors import local_label_appearance, nearest_neighbors
from d2ace_ext.selectors import HardImbSelector
from d2ace_ext.selectors.d2ace import D2ACESelector
from d2ace_ext.selectors.hard_imb import HardImbConfig, imbalance_weights

needs_faiss = pytest.mark.skipif(
    not nb.faiss_available(),
    reason="FAISS is not installed: pip install 'd2ace_ext[faiss]' (faiss-cpu) to run this test",
)

SMALL = dict(num_epochs=5, warmup_epochs=1, t_start=1, t_end=4)


def data(n=120, d=6, q=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    y = (torch.rand(n, q, generator=g) < 0.3).float()
    y[0] = 1.0  # every label has a positive
    return x, y


def sklearn_neighbors(x, k):
    """Today's exact search, written out: scikit-learn on float64, the point itself left out."""
    points = x.to(torch.float64).numpy()
    return torch.from_numpy(NearestNeighbors(n_neighbors=k).fit(points).kneighbors(return_distance=False)).long()


def epochs_seen(sampler, labels, epochs, seed=1, start=0):
    """Records seeded outputs for every batch of epochs start .. epochs - 1; returns
    each epoch's P and batches."""
    g = torch.Generator().manual_seed(seed)
    q = sampler.selector.q
    seen = []
    for epoch in range(start, epochs):
        sampler.set_epoch(epoch)
        batches = [list(b) for b in sampler]
        seen.append((sampler.probabilities, batches))
        for batch in batches:
            index = torch.tensor(batch)
            sampler.update(index, torch.randn(len(batch), q, generator=g), labels[index])
    return seen


def same_run(one, other):
    """Every epoch's P equal to the bit and the same batches."""
    assert len(one) == len(other)
    for (p_one, batches_one), (p_other, batches_other) in zip(one, other):
        assert torch.equal(p_one, p_other) and batches_one == batches_other


# -- the option --------------------------------------------------------------------------
def test_knn_backend_defaults_to_auto_and_rejects_unknown_values():
    assert D2ACEConfig().knn_backend == "auto" and HardImbConfig().knn_backend == "auto"
    assert D2ACEConfig.preset("reference").knn_backend == "auto"
    with pytest.raises(
        ValueError, match=r"D2ACEConfig.knn_backend must be one of \('exact', 'faiss', 'auto'\), got 'annoy'"
    ):
        D2ACEConfig(knn_backend="annoy")
    with pytest.raises(ValueError, match=r"HardImbConfig.knn_backend must be one of .*got 'hnsw'"):
        HardImbConfig(knn_backend="hnsw")
    with pytest.raises(ValueError, match="knn_backend must be one of"):
        nearest_neighbors(torch.rand(10, 2), 3, "fast")


def test_knn_backend_is_a_selector_option_of_the_command_line():
    assert "knn_backend" in selector_options_accepted("d2ace")
    assert "knn_backend" in selector_options_accepted("hard_imb")


def test_auto_is_exact_below_the_threshold_and_faiss_from_it(monkeypatch):
    monkeypatch.setattr(nb, "faiss_available", lambda: True)
    assert nb.chosen_backend("auto", nb.AUTO_FAISS_FROM - 1) == "exact"
    assert nb.chosen_backend("auto", nb.AUTO_FAISS_FROM) == "faiss"
    assert nb.chosen_backend("exact", 10**9) == "exact"
    assert nb.chosen_backend("faiss", 10) == "faiss"


def test_auto_without_faiss_warns_and_searches_exactly(monkeypatch):
    x, _ = data(n=40)
    monkeypatch.setattr(nb, "AUTO_FAISS_FROM", 30)
    monkeypatch.setattr(nb, "faiss_available", lambda: False)
    with pytest.warns(RuntimeWarning, match=r"n = 40 .* FAISS is not installed; using the exact search.*pip install"):
        found = nearest_neighbors(x, 3, "auto")
    assert torch.equal(found, sklearn_neighbors(x, 3))


def test_faiss_backend_without_faiss_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    x, y = data()
    with pytest.raises(
        ImportError, match=r"knn_backend='faiss' needs FAISS, which is not installed: pip install 'd2ace_ext\[faiss\]'"
    ):
        D2ACESelector(y, x, D2ACEConfig(knn_backend="faiss"))


# -- exact: unchanged -----------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["exact", "auto"])
def test_exact_and_auto_below_the_threshold_are_todays_scikit_learn_search(backend):
    x, _ = data(n=300, d=9)
    assert torch.equal(nearest_neighbors(x, 6, backend), sklearn_neighbors(x, 6))


@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_d2ace_selection_with_the_exact_backend_is_bit_identical(preset):
    x, y = data()
    config = D2ACEConfig.preset(preset, num_neighbors=3, **SMALL)
    given = epochs_seen(D2ACESampler(y, 16, config=config, neighbors=sklearn_neighbors(x, 3), seed=4), y, 4)
    for backend in ("exact", "auto"):
        built = epochs_seen(D2ACESampler(y, 16, x, config=config.replace(knn_backend=backend), seed=4), y, 4)
        same_run(given, built)


def test_hard_imb_with_the_exact_backend_is_bit_identical():
    x, y = data()
    for backend in ("exact", "auto"):
        selector = HardImbSelector(y, x, num_neighbors=5, knn_backend=backend)
        assert torch.equal(selector.imbalance, imbalance_weights(y, sklearn_neighbors(x, 5)))


# -- precomputed neighbours ----------------------------------------------------------------
@pytest.mark.parametrize("backend", ["exact", "faiss", "auto"])
def test_precomputed_neighbors_are_used_as_given_whatever_the_backend(backend, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # the search must not run at all
    x, y = data(n=30)
    given = torch.stack([(torch.arange(30) + s) % 30 for s in (1, 2, 3)], dim=1)
    selector = D2ACESelector(y, None, D2ACEConfig(num_neighbors=3, knn_backend=backend), neighbors=given)
    expected = local_label_appearance(y, given, include_self=False)
    assert torch.equal(selector.context.context.to_dense(), expected.to_dense())
    hard = HardImbSelector(y, None, num_neighbors=3, knn_backend=backend, neighbors=given)
    assert torch.equal(hard.imbalance, imbalance_weights(y, given))


def test_precomputed_neighbors_listing_an_instance_itself_or_twice_are_refused():
    """scikit-learn's kneighbors(X) and a FAISS search of its own points put each point
    first among its neighbours; the exact path leaves it out. Taken as given, Hard-Imb's
    local imbalance and D2ACE's Z (include_self=False) silently counted the instance
    itself; a repeated neighbour counted twice."""
    x, y = data(n=30)
    points = x.to(torch.float64).numpy()
    with_self = torch.from_numpy(NearestNeighbors(n_neighbors=3).fit(points).kneighbors(points, return_distance=False))
    repeated = sklearn_neighbors(x, 3)
    repeated[7, 2] = repeated[7, 0]
    for given, message in (
        (with_self, r"neighbors row 0 lists instance 0 itself: pass each instance's 3 nearest other"),
        (repeated, rf"neighbors row 7 lists instance {int(repeated[7, 0])} twice: pass each instance's 3 nearest"),
    ):
        with pytest.raises(ValueError, match=message):
            D2ACESelector(y, None, D2ACEConfig(num_neighbors=3), neighbors=given)
        with pytest.raises(ValueError, match=message):
            HardImbSelector(y, None, num_neighbors=3, neighbors=given)


# -- states saved before the option existed -------------------------------------------------
def test_d2ace_state_saved_before_knn_backend_loads():
    x, y = data()
    config = D2ACEConfig(num_neighbors=3, **SMALL)
    sampler = make_sampler("d2ace", y, 16, x, config=config)
    epochs_seen(sampler, y, 2)
    state = sampler.state_dict()
    del state["selector"]["config"]["knn_backend"]
    fresh = make_sampler("d2ace", y, 16, x, config=config)
    fresh.load_state_dict(state)
    same_run(epochs_seen(fresh, y, 4, start=2), epochs_seen(sampler, y, 4, start=2))
    other = make_sampler("d2ace", y, 16, x, config=config.replace(knn_backend="exact"))
    with pytest.raises(ValueError, match="different D2ACEConfig"):
        other.load_state_dict(state)


def test_hard_imb_state_saved_before_knn_backend_loads():
    x, y = data()
    sampler = make_sampler("hard_imb", y, 16, x, **SMALL_QUANTIZED)
    epochs_seen(sampler, y, 2)
    state = sampler.state_dict()
    del state["selector"]["config"]["knn_backend"]
    fresh = make_sampler("hard_imb", y, 16, x, **SMALL_QUANTIZED)
    fresh.load_state_dict(state)
    same_run(epochs_seen(fresh, y, 4, start=2), epochs_seen(sampler, y, 4, start=2))
    other = make_sampler("hard_imb", y, 16, x, knn_backend="exact", **SMALL_QUANTIZED)
    with pytest.raises(ValueError, match="different config"):
        other.load_state_dict(state)


SMALL_QUANTIZED = dict(num_epochs=5, warmup_epochs=1)


# -- FAISS ---------------------------------------------------------------------------------
def blobs(n=2000, d=16, centres=40, seed=0):
    """Clustered features, as real ones are (random uniform ones have no near neighbours)."""
    g = torch.Generator().manual_seed(seed)
    middle = torch.rand(centres, d, generator=g) * 10
    return middle[torch.randint(0, centres, (n,), generator=g)] + torch.randn(n, d, generator=g)


@needs_faiss
def test_faiss_scanning_every_cell_is_the_exact_search():
    x = torch.randn(400, 5, generator=torch.Generator().manual_seed(3))
    index = nb.IVFNeighbors(x)
    assert index.nlist == 10  # 400 // 39: at least 39 points per cell
    assert torch.equal(index.search(6, nprobe=index.nlist), sklearn_neighbors(x, 6))


@needs_faiss
def test_faiss_neighbours_leave_out_the_point_itself_even_among_duplicates():
    x = torch.cat([torch.zeros(8, 3), torch.rand(60, 3, generator=torch.Generator().manual_seed(0)) + 5])
    found = nb.approximate_neighbors(x, 4)
    assert found.shape == (68, 4) and found.dtype == torch.int64
    rows = torch.arange(68)[:, None]
    assert not bool((found == rows).any())
    assert bool(((found >= 0) & (found < 68)).all())
    assert all(len(set(r)) == 4 for r in found.tolist())
    assert bool((found[:8] < 8).all())  # a duplicate's neighbours are the other duplicates


@needs_faiss
def test_faiss_queries_whose_cells_are_too_small_fall_back_to_the_exact_search():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    index = nb.IVFNeighbors(x, nlist=50)  # about one point per cell: one probe finds < k + 1
    assert torch.equal(index.search(5, nprobe=1), sklearn_neighbors(x, 5))


@needs_faiss
def test_faiss_finds_the_neighbours_of_clustered_features():
    x = blobs()
    exact, approx = sklearn_neighbors(x, 6), nb.approximate_neighbors(x, 6)
    recall = (exact[:, :, None] == approx[:, None, :]).any(2).float().mean()
    assert float(recall) >= 0.97


@needs_faiss
def test_faiss_search_is_deterministic():
    x = blobs(n=1500, seed=2)
    assert torch.equal(nb.approximate_neighbors(x, 6), nb.approximate_neighbors(x, 6))


# Imported before torch, FAISS keeps an OpenMP runtime of its own, whose thread count
# torch.set_num_threads does not reach (imported after, the two share one): only a fresh
# process shows which thread count the build runs on.
THREADS_CHECK = """
import faiss, torch
from d2ace_ext import neighbors as nb

seen = []

class Spy(faiss.IndexIVFFlat):
    def train(self, x):
        seen.append(faiss.omp_get_max_threads())
        return super().train(x)

faiss.IndexIVFFlat = Spy
torch.set_num_threads(1)
faiss.omp_set_num_threads(3)
nb.approximate_neighbors(torch.rand(300, 4), 3)
print(seen, faiss.omp_get_max_threads())
"""


@needs_faiss
def test_faiss_builds_on_torchs_thread_count_and_restores_its_own():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", THREADS_CHECK], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[1] 3"


@needs_faiss
def test_faiss_rejects_bad_index_settings():
    x = torch.rand(100, 3)
    with pytest.raises(ValueError, match=r"nlist must be an integer in \[1, n\] = \[1, 100\], got 0"):
        nb.IVFNeighbors(x, nlist=0)
    with pytest.raises(ValueError, match="nprobe must be an integer >= 1, got 0"):
        nb.IVFNeighbors(x).search(3, nprobe=0)
    with pytest.raises(ValueError, match=r"num_neighbors must be in \[1, n - 1\]"):
        nb.approximate_neighbors(x, 100)
    with pytest.raises(ValueError, match=r"rows must be a 1-D array of row indices in \[0, 100\)"):
        nb.IVFNeighbors(x).search(3, rows=[5, 100])


@needs_faiss
def test_selectors_with_the_faiss_backend_use_its_neighbours():
    x = blobs(n=600, seed=4)
    _, y = data(n=600, q=9, seed=4)
    d2ace = D2ACESelector(y, x, D2ACEConfig(num_neighbors=6, knn_backend="faiss"))
    expected = local_label_appearance(y, nb.approximate_neighbors(x, 6), include_self=False)
    assert torch.equal(d2ace.context.context.to_dense(), expected.to_dense())
    hard = HardImbSelector(y, x, knn_backend="faiss")
    assert torch.equal(hard.imbalance, imbalance_weights(y, nb.approximate_neighbors(x, 5)))


@needs_faiss
def test_auto_from_the_threshold_runs_faiss(monkeypatch):
    x = blobs(n=500, seed=5)
    monkeypatch.setattr(nb, "AUTO_FAISS_FROM", 500)
    assert torch.equal(nearest_neighbors(x, 6, "auto"), nb.approximate_neighbors(x, 6))


@needs_faiss
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_faiss_on_cuda_features_finds_the_cpu_neighbours():
    import faiss

    if not hasattr(faiss, "StandardGpuResources"):
        pytest.skip("this FAISS build has no GPU support (install faiss-gpu)")
    x = torch.randn(400, 5, generator=torch.Generator().manual_seed(3))
    index = nb.IVFNeighbors(x.cuda())
    assert torch.equal(index.search(6, nprobe=index.nlist), sklearn_neighbors(x, 6))


@needs_faiss
def test_neighbors_benchmark_compares_both_backends(capsys, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import bench_neighbors

    out = tmp_path / "rows.json"
    bench_neighbors.main(
        [
            "--n",
            "400",
            "--nprobe",
            "1",
            "1000",
            "--queries",
            "50",
            "--full-exact-up-to",
            "0",
            "--full-faiss-up-to",
            "0",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "faiss nlist=10 nprobe=1000" in printed and "search scaled from 50 rows" in printed
    exact, one_cell, every_cell, drawn = json.loads(out.read_text())
    assert exact["backend"] == "exact" and exact["timed"] == "scaled from 50 rows"
    # Scanning every cell is the exact search: nothing changes.
    assert every_cell["recall"] == every_cell["distance_recall"] == 1.0
    assert every_cell["z_changed_of_entries"] == every_cell["rows_with_z_change"] == 0.0
    # One cell of ten misses neighbours (uniform features), and Z changes with them.
    assert one_cell["recall"] < 0.9 and one_cell["z_changed_of_nonzeros"] > 0.0
    assert drawn["backend"] == "random (reference)" and drawn["recall"] < one_cell["recall"]
