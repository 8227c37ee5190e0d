"""Figures from a synthetic results folder (d2ace_ext.harness.plots)."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from d2ace_ext.harness import plots  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    from matplotlib.image import imread

    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_MAGIC
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > 0


def record(selector, preset, fold, auc, loss, trace=None, dataset="yeast"):
    epochs = list(range(len(auc)))
    return {
        "key": {
            "dataset": dataset,
            "model": "clif",
            "selector": selector,
            "preset": preset,
            "fold": fold,
            "protocol": "3f2a9c1b",
        },
        "metrics": {"macro_auc": 0.7, "macro_f1": 0.4, "ranking_loss": 0.2},
        "best_epoch": len(auc) - 1,
        "seconds": 1.0,
        "selection_seconds": 0.1,
        "history": {"epoch": epochs, "train_loss": loss, "val_macro_auc": auc, "lr": [1e-4] * len(auc)},
        "trace": trace,
    }


def write_trace(path, n=30, q=4, snapshots=(0, 4, 9), epochs=10, seed=0, v_u_nan=True):
    rng = np.random.default_rng(seed)
    E = len(snapshots)
    probabilities = rng.random((E, n))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    auc = np.clip(0.5 + 0.04 * np.arange(epochs)[:, None] * rng.random(q), 0, 1)
    if q > 1:
        auc[:, -1] = np.nan  # a label with a single class in validation
    v_h = rng.random((epochs, q))
    v_h[:2] = np.nan  # warm-up
    np.savez(
        path,
        epochs=np.asarray(snapshots, dtype=np.int64),
        probabilities=probabilities,
        instance_loss=rng.random((E, n)).astype(np.float32),
        outlier=rng.random(n) < 0.1,
        label_epochs=np.arange(epochs, dtype=np.int64),
        label_auc=auc,
        label_weights_u=np.full((epochs, q), np.nan) if v_u_nan else rng.random((epochs, q)),
        label_weights_h=v_h,
        label_weights=np.full((epochs, q), np.nan),
        label_names=np.asarray([f"L{j}" for j in range(q)]),
    )


def write_results(folder, lines):
    with open(folder / "results.jsonl", "w") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line)) + "\n")


def test_plot_results_writes_every_supported_figure(tmp_path):
    results = tmp_path / "results"
    (results / "traces").mkdir(parents=True)
    stem = "yeast__clif__d2ace__paper__f0"
    write_trace(results / "traces" / f"{stem}.npz")
    nan = float("nan")
    lines = [
        record("d2ace", "paper", 0, [0.5, 0.6, 0.2, 0.7], [0.9, 0.7, 0.6, 0.5], f"traces/{stem}.npz"),
        record("d2ace", "paper", 1, [0.5, nan, 0.65, 0.72], [0.9, 0.8, 0.6, nan]),
        record("hard_imb", "-", 0, [0.55, 0.66, 0.6, 0.58], [0.8, 0.6, 0.5, 0.4]),
        record("hard_imb", "-", 1, [0.52, 0.64, 0.61, 0.57], [0.8, 0.6, 0.5, 0.45]),
    ]
    write_results(results, lines)
    # json.dumps writes NaN as the bare token NaN, which the reader must accept.
    assert "NaN" in (results / "results.jsonl").read_text()

    out = tmp_path / "figures"
    written = plots.plot_results(results, out)

    # No Random run: nothing to time against, so no compute-saved figure.
    expected = [out / "convergence__yeast__clif.png", out / f"deciles__{stem}.png", out / f"label_weights__{stem}.png"]
    assert written == [str(p) for p in expected]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in expected)
    for path in expected:
        assert_png(path)


def test_missing_results_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.jsonl"):
        plots.plot_results(tmp_path, tmp_path / "figures")
    (tmp_path / "results.jsonl").write_text("\n")
    with pytest.raises(FileNotFoundError, match="results.jsonl"):
        plots.plot_results(tmp_path, tmp_path / "figures")


def test_load_records_last_line_wins_and_skips_a_torn_line(tmp_path):
    first = record("random", "-", 0, [0.5, 0.6], [1.0, 0.9])
    rerun = record("random", "-", 0, [0.55, 0.65], [1.0, 0.8])
    other = record("random", "-", 1, [0.5, 0.6], [1.0, 0.9])
    rerun["key"] = dict(reversed(list(rerun["key"].items())))  # same key, other field order
    write_results(tmp_path, [first, other, rerun, '{"key": {"dataset": "yea'])
    with pytest.warns(UserWarning, match="unreadable"):
        records = plots.load_records(tmp_path)
    assert [r["key"]["fold"] for r in records] == [0, 1]
    assert records[0]["history"]["val_macro_auc"] == [0.55, 0.65]


def test_decile_groups_hand_counted():
    # 20 instances, listed here by descending probability (rank 0 most likely);
    # 2 per decile. Outliers: ranks 0 and 19 (huge losses, which must not move
    # the tertile cuts). Non-outlier losses: ranks 1-6 high (101-106), ranks
    # 7-12 low (7-12), ranks 13-18 medium (63-68): tertiles of 18 -> 6 each.
    rank = np.arange(20)
    probability = (20 - rank) / 210.0
    outlier = np.isin(rank, [0, 19])
    loss = np.select([rank <= 6, rank <= 12, rank <= 18], [100.0 + rank, rank * 1.0, 50.0 + rank], 0.0)
    loss[0], loss[19] = 1000.0, 2000.0
    expected = np.array(
        [
            # outlier, high, medium, low
            [1, 1, 0, 0],  # ranks 0, 1
            [0, 2, 0, 0],  # 2, 3
            [0, 2, 0, 0],  # 4, 5
            [0, 1, 0, 1],  # 6, 7
            [0, 0, 0, 2],  # 8, 9
            [0, 0, 0, 2],  # 10, 11
            [0, 0, 1, 1],  # 12, 13
            [0, 0, 2, 0],  # 14, 15
            [0, 0, 2, 0],  # 16, 17
            [1, 0, 1, 0],  # 18, 19
        ]
    )
    # Store the instances in a shuffled order: the function must sort by probability.
    perm = np.random.default_rng(3).permutation(20)
    counts = plots.decile_groups(probability[perm], loss[perm], outlier[perm])
    assert counts.shape == (10, 4) and counts.dtype.kind == "i"
    np.testing.assert_array_equal(counts, expected)
    assert plots.GROUPS == ("outlier", "high loss", "medium loss", "low loss")


def test_decile_groups_small_and_tied():
    # n < 10: one instance in each of the first n deciles, the rest empty.
    # Descending probability: instance 1 (inlier, loss 2 -> high of {1, 2}),
    # instance 2 (outlier), instance 0 (inlier, loss 1 -> low).
    counts = plots.decile_groups([0.2, 0.5, 0.3], [1.0, 2.0, 3.0], [False, False, True])
    np.testing.assert_array_equal(counts[:3], [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    assert counts[3:].sum() == 0
    # Equal losses stay in one tier (low) rather than being split by rank.
    counts = plots.decile_groups(np.full(10, 0.1), np.ones(10), np.zeros(10, bool))
    np.testing.assert_array_equal(counts.sum(axis=0), [0, 0, 0, 10])
    with pytest.raises(ValueError):
        plots.decile_groups([0.5, 0.5], [1.0], [False, False])


def test_edge_cases_single_fold_one_label_tiny_trace(tmp_path):
    # One fold (no std band), an all-NaN validation history, q = 1, n < 10,
    # no D2ACE weights at all, one snapshot only.
    (tmp_path / "traces").mkdir()
    write_trace(tmp_path / "traces" / "t.npz", n=4, q=1, snapshots=(3,), epochs=5)
    nan = float("nan")
    write_results(
        tmp_path,
        [
            record("random", "-", 0, [nan, nan, nan], [1.0, 0.9, 0.8], "traces/t.npz"),
            record("random", "-", 0, [nan, nan, nan], [1.0, 0.9, 0.8], "traces/missing.npz", dataset="emotions"),
        ],
    )
    out = tmp_path / "figures"
    with pytest.warns(UserWarning, match="missing"):
        written = plots.plot_results(tmp_path, out)
    names = [p.rsplit("/", 1)[-1] for p in written]
    assert names == [
        "convergence__emotions__clif.png",
        "convergence__yeast__clif.png",
        "deciles__t.png",
        "label_weights__t.png",
    ]
    for path in written:
        assert_png(path)


def test_label_choice_and_explicit_labels(tmp_path):
    auc = np.array([[0.5, 0.6, np.nan], [0.9, 0.55, np.nan], [np.nan, 0.52, np.nan]])
    # Final AUC = last finite value: label 0 -> 0.9, label 1 -> 0.52, label 2 undefined.
    assert plots._default_labels(auc) == [0, 1]
    path = tmp_path / "t.npz"
    write_trace(path, q=3, v_u_nan=False)
    out = plots.plot_label_weights(path, tmp_path / "lw.png", labels=["L1", 0], title="two labels")
    assert_png(out)
    with pytest.raises(ValueError, match="unknown label"):
        plots.plot_label_weights(path, tmp_path / "bad.png", labels=["nope"])
    out = plots.plot_probability_deciles(path, tmp_path / "d.png", epochs=[5])  # nearest snapshot: 4
    assert_png(out)


def test_plot_convergence_keeps_baselines_in_each_preset_panel(tmp_path):
    records = [
        record("d2ace", "paper", 0, [0.5, 0.7], [1.0, 0.5]),
        record("d2ace", "fast", 0, [0.5, 0.6], [1.0, 0.6]),
        record("balance", "-", 0, [0.5, 0.65], [1.0, 0.7]),
    ]
    panels = plots.convergence_panels(records)
    assert [
        (title, sorted((r["key"]["selector"], r["key"]["preset"]) for r in chosen)) for title, chosen in panels
    ] == [
        ("2 epochs, D2ACE fast preset", [("balance", "-"), ("d2ace", "fast")]),
        ("2 epochs, D2ACE paper preset", [("balance", "-"), ("d2ace", "paper")]),
    ]
    out = plots.plot_convergence(records, "yeast", "clif", tmp_path / "c.png", preset="paper")
    assert_png(out)
    with pytest.raises(ValueError):
        plots.plot_convergence(records, "bibtex", "clif", tmp_path / "x.png")
    assert not math.isnan(plots._mean_std(np.array([[1.0, np.nan], [3.0, 2.0]]))[0][1])


def test_default_decile_panels_skip_the_uniform_warm_up_snapshots():
    from d2ace_ext.harness.plots import default_snapshot_epochs

    uniform = np.full(6, 1 / 6)
    chosen = np.array([0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    trace = {"epochs": np.array([0, 10, 20, 99]), "probabilities": np.stack([uniform, uniform, chosen, chosen])}
    assert default_snapshot_epochs(trace) == [20, 99]
    trace["probabilities"] = np.stack([uniform] * 4)  # Random: every snapshot uniform
    assert default_snapshot_epochs(trace) == [0, 99]


def _timed(selector, preset, fold, auc, protocol="3f2a9c1b", dataset="yeast"):
    out = record(selector, preset, fold, auc, [1.0] * len(auc), dataset=dataset)
    out["key"]["protocol"] = protocol
    out["shape"] = {"train": 100}
    del out["history"]["train_loss"]  # as in compact evidence records
    return out


def test_convergence_panels_one_per_protocol_labelled_by_what_differs(tmp_path):
    from d2ace_ext.harness.experiment import Protocol

    short, long_ = Protocol(epochs=3), Protocol(epochs=3, lr=1e-3)
    records = [
        _timed("random", "-", 0, [0.5, 0.6, 0.7], short.digest()),
        _timed("d2ace", "paper", 0, [0.5, 0.65, 0.7], short.digest()),
        _timed("random", "-", 0, [0.5, 0.7, 0.8], long_.digest()),
        _timed("hard_imb", "-", 0, [0.5, 0.75, 0.8], long_.digest()),
    ]
    panels = plots.convergence_panels(records, {p.digest(): p.to_dict() for p in (short, long_)})
    titles = sorted(title for title, _ in panels)
    assert titles == ["3 epochs, lr 0.0001, D2ACE paper preset", "3 epochs, lr 0.001"]
    # Without the settings the digest tells them apart (same epochs).
    assert sorted(t for t, _ in plots.convergence_panels(records)) == [
        f"3 epochs, protocol {long_.digest()}",
        f"3 epochs, protocol {short.digest()}, D2ACE paper preset",
    ]


def test_convergence_figure_has_no_empty_panel_and_one_colour_per_selector(tmp_path, monkeypatch):
    from matplotlib.colors import to_hex

    from d2ace_ext.harness import plot_convergence

    drawn = []
    monkeypatch.setattr(plot_convergence, "_save", lambda figure, path: drawn.append(figure) or str(path))
    records = [_timed("random", "-", f, [0.5, 0.6, 0.7 + 0.01 * f]) for f in range(2)]
    records += [_timed("d2ace", "paper", f, [0.5, 0.65, 0.72]) for f in range(2)]
    records += [_timed("hard_imb", "-", 0, [0.5, 0.66, 0.71])]
    plots.plot_convergence(records, "yeast", "clif", tmp_path / "c.png")
    visible = [ax for ax in drawn[0].axes if ax.get_visible()]
    assert len(visible) == 1  # no training loss in these records: no training-loss panel
    colours = {
        line.get_label().split(" (")[0]: to_hex(line.get_color())
        for line in visible[0].lines
        if not line.get_label().startswith("_")
    }
    assert colours == {
        "Random": plots.SELECTOR_COLORS["random"],
        "D2ACE": plots.SELECTOR_COLORS["d2ace"],
        "Hard-Imb": plots.SELECTOR_COLORS["hard_imb"],
    }
    assert len(set(plots.SELECTOR_COLORS.values())) == len(plots.SELECTOR_COLORS)  # no two selectors share one
    # Five panels wrap onto two rows of three; the unused place is hidden, not drawn empty.
    more = [dict(r, key={**r["key"], "protocol": f"p{i}"}) for i in range(5) for r in records]
    plots.plot_convergence(more, "yeast", "clif", tmp_path / "d.png")
    assert sum(ax.get_visible() for ax in drawn[1].axes) == 5 and len(drawn[1].axes) == 6
    # Raw records with a training loss beside compact ones without: the compact protocol's
    # loss panel is hidden, the raw one's drawn.
    raw = [dict(r, key={**r["key"], "protocol": "raw"}) for r in records]
    for r in raw:
        r["history"] = {**r["history"], "train_loss": [1.0, 0.8, 0.7]}
    plots.plot_convergence(records + raw, "yeast", "clif", tmp_path / "e.png")
    shown = [(ax.get_title(), ax.get_ylabel()) for ax in drawn[2].axes if ax.get_visible()]
    assert len(drawn[2].axes) == 4 and len(shown) == 3
    assert sum(ax.get_visible() and bool(ax.lines) for ax in drawn[2].axes) == 3  # nothing visible is empty


def test_compute_saved_figure_from_paired_runs(tmp_path):
    records = []
    for fold in range(3):
        records += [
            _timed("random", "-", fold, [0.5, 0.6, 0.7, 0.8]),
            _timed("d2ace", "paper", fold, [0.5, 0.8, 0.8, 0.8]),
            _timed("d2ace", "reference", fold, [0.5, 0.6, 0.6, 0.6]),  # never reaches: drawn at the floor
            _timed("hard_imb", "-", fold, [0.5, 0.6, 0.8, 0.8], dataset="emotions"),
        ]
    records += [_timed("random", "-", fold, [0.5, 0.6, 0.7, 0.8], dataset="emotions") for fold in range(3)]
    assert_png(plots.plot_compute_saved(records, tmp_path / "saved.png"))
    write_results(tmp_path, records)
    names = [p.rsplit("/", 1)[-1] for p in plots.plot_results(tmp_path, tmp_path / "figures")]
    assert names == ["convergence__emotions__clif.png", "convergence__yeast__clif.png", "compute_saved.png"]
    with pytest.raises(ValueError, match="Random run"):
        plots.plot_compute_saved([r for r in records if r["key"]["selector"] != "random"], tmp_path / "x.png")


def test_plot_joins_results_files_and_shows_chosen_protocols_with_their_partners(tmp_path):
    from d2ace_ext.harness.experiment import Protocol

    full, half, other = Protocol(epochs=4), Protocol(epochs=4, budget=0.5), Protocol(epochs=4, lr=1e-3)
    curve = [0.5, 0.6, 0.7, 0.8]
    full_runs = [
        _timed("random", "-", f, curve, full.digest(), dataset=d) for f in range(2) for d in ("yeast", "scene")
    ]
    full_runs += [_timed("hard_imb", "-", f, curve, full.digest()) for f in range(2)]
    half_runs = [_timed("d2ace", "paper", f, [0.5, 0.8, 0.8, 0.8], half.digest()) for f in range(2)]
    other_runs = [_timed("random", "-", f, curve, other.digest()) for f in range(2)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_results(tmp_path / "a", full_runs + other_runs)
    write_results(tmp_path / "b", half_runs)
    for folder, protocols in (("a", (full, other)), ("b", (half,))):
        (tmp_path / folder / "protocols.json").write_text(json.dumps({p.digest(): p.to_dict() for p in protocols}))
    both = [str(tmp_path / "a"), str(tmp_path / "b" / "results.jsonl")]

    merged = {}
    for folder in ("a", "b"):
        merged.update(json.loads((tmp_path / folder / "protocols.json").read_text()))
    chosen = plots.shown_protocols(plots.load_records(both[0]) + half_runs, [half.digest()], merged)
    # the budgeted runs and the full-budget Random on their data set only: not Hard-Imb,
    # not scene's Random, not the other protocol
    assert sorted((r["key"]["selector"], r["key"]["protocol"], r["key"]["dataset"]) for r in chosen) == sorted(
        [("d2ace", half.digest(), "yeast")] * 2 + [("random", full.digest(), "yeast")] * 2
    )
    names = [p.rsplit("/", 1)[-1] for p in plots.plot_results(both, tmp_path / "fig", protocols_shown=[half.digest()])]
    assert names == ["convergence__yeast__clif.png", "compute_saved.png"]
    # without the filter every protocol of both files is drawn, scene's Random included
    names = [p.rsplit("/", 1)[-1] for p in plots.plot_results(both, tmp_path / "all")]
    assert "convergence__scene__clif.png" in names and "compute_saved.png" in names
    with pytest.raises(ValueError, match="no record carries 0000beef"):
        plots.plot_results(both, tmp_path / "x", protocols_shown=["0000beef"])


def test_plot_refuses_a_bad_tolerance_or_protocols_file_instead_of_dropping_the_figure(tmp_path, capsys):
    from d2ace_ext import cli

    records = [
        _timed(s, p, f, c)
        for f in range(3)
        for s, p, c in (("random", "-", [0.5, 0.8]), ("d2ace", "paper", [0.8, 0.8]))
    ]
    write_results(tmp_path, records)
    with pytest.raises(ValueError, match="--target-tolerance must be in"):  # was: no compute_saved.png, no word
        plots.plot_results(tmp_path, tmp_path / "a", tolerance=2.0)
    (tmp_path / "protocols.json").write_text(json.dumps({"3f2a9c1b": {"epochs": 2}}))  # hashes to another digest
    with pytest.raises(ValueError, match="protocols.json entry 3f2a9c1b"):
        plots.plot_results(tmp_path, tmp_path / "b")
    (tmp_path / "protocols.json").unlink()
    # Records without any history or trace: nothing to draw, said in one line, exit code 1.
    write_results(tmp_path, [{k: v for k, v in r.items() if k != "history"} for r in records])
    assert cli.main(["plot", "--results-dir", str(tmp_path), "--out", str(tmp_path / "c")]) == 1
    assert "nothing to draw from" in capsys.readouterr().err
