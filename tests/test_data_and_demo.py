"""MULAN reading on the real sets, the synthetic default, metrics and the demo job."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from d2ace_ext import metrics
from d2ace_ext.datasets.mulan import load_mulan
from d2ace_ext.datasets.synthetic import make_multilabel
from d2ace_ext.demo import main as demo_main


@pytest.mark.parametrize(
    "name,shape",
    [("yeast", (2417, 103, 14)), ("emotions", (593, 72, 6)), ("enron", (1702, 1001, 53)), ("scene", (2407, 294, 6))],
)
def test_mulan_sets_have_the_documented_shapes(data_dir, name, shape):
    x, y = load_mulan(name, data_dir)
    assert (x.shape[0], x.shape[1], y.shape[1]) == shape
    assert set(np.unique(y).tolist()) <= {0, 1}


def test_missing_data_folder_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        load_mulan("nothere", str(tmp_path))


def test_synthetic_default_is_yeast_shaped_and_seeded():
    x, y = make_multilabel(seed=0)
    assert x.shape == (2400, 100) and y.shape == (2400, 14)
    assert 3.5 < float(y.sum(1).mean()) < 4.5
    assert bool((y.sum(0) > 0).all()) and float(x.min()) >= 0 and float(x.max()) <= 1
    x2, y2 = make_multilabel(seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_metrics_follow_scikit_learn():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(50, 4, generator=g) < 0.4).int()
    y[:, 3] = 0  # one class only: skipped and counted
    s = torch.rand(50, 4, generator=g)
    auc, skipped = metrics.macro_auc(y, s)
    assert skipped == 1
    assert auc == pytest.approx(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in range(3)]))
    assert metrics.ranking_loss(torch.ones(2, 2), torch.zeros(2, 2)) == 0.0
    tie = torch.tensor([[1, 0]]), torch.tensor([[0.5, 0.5]])
    assert metrics.ranking_loss(*tie) == 1.0  # ties count as errors


def test_demo_runs_end_to_end(capsys):
    assert demo_main(["--epochs", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Random" in out and "D2ACE" in out and "Macro-AUC" in out


def test_demo_on_a_real_set(data_dir, capsys):
    assert demo_main(["--dataset", "emotions", "--data-dir", data_dir, "--epochs", "3", "--no-progress"]) == 0
    assert "emotions" in capsys.readouterr().out
