"""The image protocol end to end on tiny sets: records with mAP, checkpoint + resume to
the identical result, the d2ace command on fabricated VOC2007 files, mAP itself."""

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision", reason="the image path needs torchvision (make installs it; TORCHVISION_SPEC)")

from d2ace_ext.cli import main as cli_main  # noqa: E402
from d2ace_ext.datasets.images.registry import load_image_dataset  # noqa: E402
from d2ace_ext.harness.experiment import RunKey  # noqa: E402
from d2ace_ext.harness.image_protocol import ImageProtocol, mean_average_precision  # noqa: E402
from d2ace_ext.harness.image_run import checkpoint_path, run_image  # noqa: E402

torch.set_num_threads(1)
MOSAIC = {"train_size": 80, "test_size": 40, "grid": 2}
OPTIONS = {
    "mlgcn": {"backbone": "resnet18", "hidden": 16},
    "hst": {"backbone": "resnet18", "image_dim": 32, "hidden": 16, "output_dim": 16, "prototypes": 2},
}


def _setup(model="mlgcn", selector="d2ace", epochs=2):
    protocol = ImageProtocol(
        epochs=epochs,
        batch_size=16,
        lr=1e-3,
        image_size=16,
        scale_size=16,
        mosaic=MOSAIC,
        model_options={model: OPTIONS[model]},
        selector_options={"d2ace": {"num_neighbors": 3}},
    )
    data = load_image_dataset("digits-mosaic", image_size=16, mosaic=MOSAIC)
    return protocol, data, RunKey.make("digits-mosaic", model, selector, "paper", 0, protocol)


def test_mean_average_precision_matches_hand_values_and_ignores():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.1], [0.1, 0.9]])
    # label 0: ranking 1(+), 2(-), 3(+) -> AP = (1 + 2/3) / 2; label 1: 4(-), 2(+), 1(-), 3(+) -> (1/2 + 2/4) / 2
    assert mean_average_precision(y, s) == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    ignore = np.zeros_like(y, dtype=bool)
    ignore[1, 0] = True  # drop the negative ranked second for label 0 -> AP 1
    assert mean_average_precision(y, s, ignore) == pytest.approx((1 + 0.5) / 2)


def test_checkpoint_resume_gives_the_uninterrupted_result(tmp_path):
    protocol, data, key = _setup()
    whole = run_image(key, data, protocol, progress=False)
    assert whole["shape"]["train"] + whole["shape"]["val"] == 80 and whole["steps"] > 0
    assert 0 <= whole["metrics"]["map"] <= 1 and "macro_auc" in whole["metrics"]
    assert run_image(key, data, protocol, results_dir=str(tmp_path), progress=False, stop_after=1) is None
    saved = checkpoint_path(str(tmp_path), key, protocol.digest())
    assert saved == str(tmp_path / "checkpoints" / f"{key.stem()}__{protocol.digest()}.pt")
    assert os.path.exists(saved)
    resumed = run_image(key, data, protocol, results_dir=str(tmp_path), progress=False)
    assert resumed["metrics"] == whole["metrics"]
    assert resumed["history"]["train_loss"] == whole["history"]["train_loss"]
    assert not os.path.exists(saved)


def test_hst_through_the_protocol_with_prototype_epochs():
    protocol, data, key = _setup("hst", "random", epochs=3)
    protocol = ImageProtocol(
        **{
            **protocol.to_dict(),
            "model_options": {"hst": {**OPTIONS["hst"], "generate_label_epoch": 1, "prototype_every": 1}},
        }
    )
    record = run_image(key, data, protocol, progress=False)
    assert np.isfinite(record["metrics"]["map"]) and np.isfinite(record["history"]["train_loss"]).all()


@pytest.mark.filterwarnings("ignore:labels.*no positive instance")  # 3 images cannot cover 20 classes
def test_d2ace_command_on_fabricated_voc_files(tmp_path, capsys):
    from support.image_files import make_voc

    make_voc(str(tmp_path / "data"))
    argv = [
        "compare",
        "--datasets",
        "voc2007",
        "--models",
        "mlgcn",
        "--selectors",
        "random",
        "d2ace",
        "--data-dir",
        str(tmp_path / "data"),
        "--results-dir",
        str(tmp_path / "out"),
        "--backbone",
        "resnet18",
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--model-selection",
        "last",
        "--selector-opt",
        "d2ace.num_neighbors=1",
        "--model-opt",
        "hidden=8",
        "--workers",
        "0",
        "--no-progress",
    ]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "voc2007 | mlgcn" in out and "ms per training step" in out
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all("map" in json.loads(line)["metrics"] for line in lines)
    assert cli_main(argv) == 0  # everything already there: skipped, same table
    assert len((tmp_path / "out" / "results.jsonl").read_text().splitlines()) == 2
    assert cli_main(["run", "--dataset", "voc2007", "--data-dir", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_heads_on_a_precomputed_features_file(tmp_path, capsys):
    from d2ace_ext.harness.image_cli import wants_images

    g = torch.Generator().manual_seed(0)
    y = (torch.rand(60, 4, generator=g) < 0.4).float()
    x = torch.randn(60, 12, generator=g) + 2 * y @ torch.randn(4, 12, generator=g)
    torch.save(
        {"train_features": x[:40], "train_labels": y[:40], "test_features": x[40:], "test_labels": y[40:]},
        tmp_path / "feats.pt",
    )
    argv = [
        "run",
        "--dataset",
        str(tmp_path / "feats.pt"),
        "--model",
        "mlgcn",
        "--selector",
        "hard_imb",
        "--backbone",
        "none",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "1e-2",
        "--model-opt",
        "hidden=8",
        "--results-dir",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    assert wants_images(argv) and not wants_images(["run", "--dataset", "yeast", "--model", "mlgcn"])
    assert cli_main(argv) == 0
    assert "map" in capsys.readouterr().out
