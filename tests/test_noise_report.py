"""The label-noise table pairs each selector with Random (and D2ACE with Hard-Imb) within one noise setting."""

import numpy as np
import pytest

from d2ace_ext.harness.noise_report import cell_values, effect_text, main, noise_table, setting_protocol

from support.records import run_key


def _record(selector, digest, fold, auc, dataset="scene", preset="-"):
    return {
        "key": run_key(selector, fold, digest, dataset=dataset, preset=preset),
        "metrics": {"macro_auc": auc},
    }


def _grid():
    clean = setting_protocol("clean", 10, 3).digest()
    noisy = setting_protocol("extra:1.0", 10, 3).digest()
    records = []
    for fold in range(3):
        records += [
            _record("random", clean, fold, 0.80),
            _record("hard_imb", clean, fold, 0.81),
            _record("d2ace", clean, fold, 0.80 + 0.01 * fold, preset="paper"),
            _record("d2ace", clean, fold, 0.10, preset="reference"),  # another preset: not paired
            _record("random", noisy, fold, 0.70),
            _record("hard_imb", noisy, fold, 0.68),
            _record("d2ace", noisy, fold, 0.72, preset="paper"),
        ]
    return records, clean, noisy


def test_each_setting_pairs_its_own_runs_and_reports_the_mean_difference():
    records, clean, noisy = _grid()
    assert clean != noisy
    assert cell_values(records, clean, "d2ace", ["scene"], "mlp", "paper", "macro_auc") == {
        ("scene", 0, f): pytest.approx(0.80 + 0.01 * f) for f in range(3)
    }
    table = noise_table(records, ["clean", "extra:1.0"], ["scene"], "mlp", "paper", "macro_auc", 10, 3).splitlines()
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in table[2:]}
    # clean: Hard-Imb +0.01 on every fold; D2ACE +0.00, +0.01, +0.02 -> mean +0.01; D2ACE - Hard-Imb mean 0
    assert "| +0.0100 [+0.0100, +0.0100] (3)" in rows[("clean", "scene")]
    assert rows[("clean", "all")].split("|")[5].strip().startswith("+0.0100 [+0.0000, +0.0200] (3)")
    # noisy: Hard-Imb -0.02, D2ACE +0.02 against Random, D2ACE +0.04 against Hard-Imb
    cells = [c.strip() for c in rows[("extra:1.0", "all")].split("|")[3:7]]
    assert cells[0].startswith("−0.0200 [") and cells[1] == "–" and cells[2].startswith("+0.0200 [")
    assert cells[3].startswith("+0.0400 [+0.0400, +0.0400] (3)")


def test_effect_text_needs_two_cells_and_gives_wilcoxon_p():
    assert effect_text(np.array([0.1])) == "–"
    assert effect_text(np.zeros(4)).endswith("(4), p 1")
    assert effect_text(np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])).endswith("(6), p 0.031")


def test_a_bad_setting_is_refused_naming_the_option(tmp_path):
    with pytest.raises(SystemExit):
        main(["--results-dir", str(tmp_path), "--datasets", "scene", "--settings", "noisy:0.3"])


def test_a_lower_is_better_metric_keeps_positive_meaning_did_better(tmp_path, capsys):
    # The command line once read every metric as higher-is-better, so --metric
    # ranking_loss printed a selector with the lower loss as worse than Random.
    import json

    clean = setting_protocol("clean", 10, 3).digest()
    records = []
    for fold in range(3):
        for selector, loss in (("random", 0.20), ("hard_imb", 0.15)):
            record = _record(selector, clean, fold, 0.8)
            record["metrics"]["ranking_loss"] = loss + 0.01 * fold * (selector == "random")
            records.append(record)
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["--results-dir", str(tmp_path), "--datasets", "scene", "--epochs", "10", "--folds", "3"]
    assert main(argv + ["--metric", "ranking_loss"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| clean | all |")][0]
    assert row.split("|")[3].strip().startswith("+0.0600 [")  # Random's loss exceeds Hard-Imb's by 0.05-0.07
    with pytest.raises(SystemExit):
        main(argv + ["--metric", "auc"])


def test_model_options_select_the_runs_of_that_model_variant(tmp_path, capsys):
    # The published CLIF's runs carry model_options in their protocol; without --model-opt the
    # report looked for the plain protocol and printed an empty table for every CLIF setting.
    import json

    published = setting_protocol("clean", 10, 3, {"clif": {"variant": "published"}}).digest()
    assert published != setting_protocol("clean", 10, 3).digest()
    records = []
    for fold in range(3):
        for selector, auc in (("random", 0.80), ("hard_imb", 0.82)):
            record = _record(selector, published, fold, auc)
            record["key"]["model"] = "clif"
            records.append(record)
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["--results-dir", str(tmp_path), "--datasets", "scene", "--model", "clif", "--epochs", "10", "--folds", "3"]

    def all_row():
        out = capsys.readouterr().out.splitlines()
        return [line for line in out if line.startswith("| clean | all |")][0].split("|")[3].strip()

    with pytest.raises(SystemExit):  # the plain protocol: no run of any setting
        main(argv)
    capsys.readouterr()
    assert main(argv + ["--model-opt", "variant=published"]) == 0
    assert all_row().startswith("+0.0200 [+0.0200, +0.0200] (3)")
    with pytest.raises(SystemExit):
        main(argv + ["--model-opt", "clip.variant=published"])


def test_a_folder_without_runs_of_the_settings_is_an_error_not_an_empty_table(tmp_path, capsys):
    import json

    argv = ["--results-dir", str(tmp_path), "--datasets", "scene", "--folds", "3"]
    with pytest.raises(SystemExit):  # no results.jsonl at all
        main(argv + ["--epochs", "10"])
    assert f"no {tmp_path / 'results.jsonl'}" in capsys.readouterr().err
    records, clean, noisy = _grid()
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(SystemExit):  # runs at 10 epochs, asked for 100: no setting has any
        main(argv + ["--epochs", "100", "--settings", "clean", "extra:1.0"])
    assert "under the protocol of any setting at --epochs 100" in capsys.readouterr().err
    assert main(argv + ["--epochs", "10", "--settings", "clean", "missing:0.4"]) == 0
    out, err = capsys.readouterr()
    missing = setting_protocol("missing:0.4", 10, 3).digest()
    assert f"no mlp run of setting missing:0.4 (protocol {missing})" in err and "| clean | all |" in out


def test_committed_evidence_gives_the_published_extra_labels_row():
    # docs/results.md, "Label noise": the "extra:1.0 | all" row, from docs/evidence/noise_mlp.jsonl;
    # its D2ACE − Hard-Imb cell recomputed here by hand (pairs by (data set, repeat, fold)).
    import json
    import pathlib

    from scipy.stats import wilcoxon

    path = pathlib.Path(__file__).parents[1] / "docs" / "evidence" / "noise_mlp.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    sets = ["scene", "enron", "yeast"]
    table = noise_table(records, ["extra:1.0"], sets, "mlp", "paper", "macro_auc", 1000, 5)
    assert (
        "| extra:1.0 | all | +0.0027 [+0.0005, +0.0053] (30), p 0.047 | −0.0016 [−0.0043, +0.0011] (30), p 0.54 "
        "| −0.0044 [−0.0084, −0.0007] (30), p 0.058 | −0.0072 [−0.0105, −0.0040] (30), p 0.00017 |"
    ) in table
    digest = setting_protocol("extra:1.0", 1000, 5).digest()

    def runs(selector):
        return {
            (r["key"]["dataset"], r["key"]["repeat"], r["key"]["fold"]): r["metrics"]["macro_auc"]
            for r in records
            if r["key"]["protocol"] == digest
            and r["key"]["selector"] == selector
            and r["key"]["dataset"] in sets
            and r["key"]["preset"] in ("paper", "-")
        }

    d2ace, hard = runs("d2ace"), runs("hard_imb")
    diffs = np.array([d2ace[c] - hard[c] for c in sorted(d2ace)])
    assert len(diffs) == 30 and f"{diffs.mean():+.4f}" == "-0.0072" and f"{wilcoxon(diffs).pvalue:.2g}" == "0.00017"
