"""Image runs, tried adversarially: one test per way an image run could report
another run's numbers, lose finished work or start training on input it should refuse.
Each test is named after what it protects; every run in here is a few tiny epochs."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision", reason="the image path needs torchvision (make installs it; TORCHVISION_SPEC)")

import d2ace_ext.harness.image_run as image_run  # noqa: E402
from d2ace_ext.cli import main as cli_main  # noqa: E402
from d2ace_ext.datasets.images.files import ImageFiles, image_transforms  # noqa: E402
from d2ace_ext.datasets.images.registry import ImageData, load_image_dataset  # noqa: E402
from d2ace_ext.harness.experiment import RunKey  # noqa: E402
from d2ace_ext.harness.image_protocol import ImageProtocol  # noqa: E402

from support.image_files import jpeg, make_coco, make_voc  # noqa: E402

torch.set_num_threads(1)
EVIDENCE = os.path.join(os.path.dirname(__file__), "..", "docs", "evidence", "mosaic_dihcl_subset.jsonl")
METRICS = ("map", "macro_auc", "macro_f1", "micro_f1", "ranking_loss", "one_error", "average_precision")


def _features_file(path, seed):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(60, 4, generator=g) < 0.4).float()
    x = torch.randn(60, 12, generator=g) + 2 * y @ torch.randn(4, 12, generator=g)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"train_features": x[:40], "train_labels": y[:40], "test_features": x[40:], "test_labels": y[40:]}, path)
    return path


def _records(folder):
    path = os.path.join(folder, "results.jsonl")
    return [json.loads(line) for line in open(path, encoding="utf-8")] if os.path.exists(path) else []


@pytest.fixture
def trained(monkeypatch):
    """Replaces training by a stub that records each key it is asked to train."""
    keys = []

    def fake_run(key, data, protocol, **_):
        keys.append(key)
        return {
            "key": key.to_dict(),
            "metrics": {m: 0.5 for m in METRICS},
            "steps": 1,
            "loop_seconds": 0.0,
            "selection_seconds": 0.0,
            "seconds": 0.0,
            "inputs": getattr(protocol, "inputs", None),
        }

    monkeypatch.setattr(image_run, "run_image", fake_run)
    return keys


# -- stale image results -----------------------------------------------------------------


def test_a_rewritten_features_file_is_trained_again_not_answered_from_the_old_record(tmp_path, capsys):
    feats, out = str(tmp_path / "feats.pt"), str(tmp_path / "out")
    argv = [
        "run",
        "--dataset",
        "features",
        "--features",
        feats,
        "--model",
        "mlgcn",
        "--selector",
        "random",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "1e-2",
        "--model-opt",
        "hidden=8",
        "--results-dir",
        out,
        "--no-progress",
    ]
    _features_file(feats, seed=0)
    assert cli_main(argv) == 0
    _features_file(feats, seed=1)  # same path, other content
    capsys.readouterr()
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    first, second = _records(out)
    assert first["key"]["protocol"] != second["key"]["protocol"]
    assert first["inputs"]["features_sha256"] != second["inputs"]["features_sha256"]
    assert f"map                {second['metrics']['map']:.4f}" in printed  # the new run's number, not the old
    assert cli_main(argv) == 0  # nothing changed: skipped, and it says why
    printed = capsys.readouterr().out
    assert len(_records(out)) == 2
    assert f"skipped 1 of 1 run(s) of features already in {out}/results.jsonl" in printed
    assert second["key"]["protocol"] in printed and "same settings and inputs" in printed


def test_every_option_that_changes_the_data_changes_the_run_key(tmp_path, trained, capsys):
    make_voc(str(tmp_path / "voc"))
    shutil.copytree(tmp_path / "voc", tmp_path / "voc_copy")
    make_coco(str(tmp_path / "coco"))
    weights = tmp_path / "emb.npy"
    np.save(weights, np.eye(20, 4, dtype=np.float32))
    base = [
        "run",
        "--model",
        "mlgcn",
        "--selector",
        "random",
        "--backbone",
        "resnet18",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--results-dir",
        str(tmp_path / "out"),
        "--workers",
        "0",
        "--no-progress",
    ]
    calls = [
        ["--dataset", "voc2007", "--data-dir", str(tmp_path / "voc")],
        ["--dataset", "voc2007", "--data-dir", str(tmp_path / "voc"), "--difficult", "positive"],  # test labels differ
        ["--dataset", "voc2007", "--data-dir", str(tmp_path / "voc_copy")],  # another location
        ["--dataset", "voc2007", "--data-dir", str(tmp_path / "voc"), "--embeddings", str(weights)],
        ["--dataset", "coco2014", "--data-dir", str(tmp_path / "coco")],
        ["--dataset", "coco2014", "--data-dir", str(tmp_path / "coco"), "--drop-empty"],  # empty-image rule
        ["--dataset", "voc2007", "--data-dir", str(tmp_path / "voc"), "--transform", "hst"],  # HST's crops
    ]
    for call in calls:
        assert cli_main(base + call) == 0
    np.save(weights, 2 * np.eye(20, 4, dtype=np.float32))  # same path, new content
    assert cli_main(base + calls[3]) == 0
    assert len(trained) == len(calls) + 1 == len({k.protocol for k in trained})
    assert cli_main(base + calls[1]) == 0 and len(trained) == len(calls) + 1  # unchanged: skipped
    assert "already in" in capsys.readouterr().out


def test_the_committed_mosaic_evidence_keeps_its_protocol_digest():
    from d2ace_ext.harness.image_cli import build_parser, cpu_defaults, protocol_for, protocol_from

    recorded = {json.loads(line)["key"]["protocol"] for line in open(EVIDENCE, encoding="utf-8")}
    # the command of docs/images.md that wrote docs/evidence/mosaic_dihcl_subset.jsonl
    args = build_parser().parse_args(
        "compare --datasets digits-mosaic --models mlgcn --selectors random dihcl ml_unc d2ace --seeds 3 "
        "--backbone resnet18 --image-size 32 --epochs 8 --lr 1e-3 --weight-decay 1e-4 --mosaic-opt train_size=3000 "
        "--mosaic-opt test_size=1000 --mosaic-opt grid=2 --model-opt hidden=256 --threads 1".split()
    )
    cpu_defaults(args, ["digits-mosaic"])
    protocol = protocol_for(args, protocol_from(args, ["mlgcn"], ["dihcl"]), "digits-mosaic", {})
    assert recorded == {protocol.digest()} == {"6f926316"}
    assert protocol.inputs == {}


# -- image checkpoints -------------------------------------------------------------------


def test_image_checkpoints_live_in_the_results_folder_one_per_protocol(tmp_path):
    data_folder = tmp_path / "data"
    feats = _features_file(str(data_folder / "feats.pt"), seed=0)  # --dataset /abs/path.pt
    out = tmp_path / "out"
    data = load_image_dataset(feats)

    def protocol(epochs):
        return ImageProtocol(
            epochs=epochs, batch_size=8, lr=1e-2, model_options={"mlgcn": {"backbone": "none", "hidden": 8}}
        )

    long, short = protocol(4), protocol(2)
    long_key, short_key = (RunKey.make(feats, "mlgcn", "random", "paper", 0, p) for p in (long, short))
    assert image_run.run_image(long_key, data, long, results_dir=str(out), progress=False, stop_after=1) is None
    assert sorted(os.listdir(data_folder)) == ["feats.pt"]  # nothing written beside the data
    saved = os.listdir(out / "checkpoints")
    assert len(saved) == 1 and saved[0].endswith(f"__{long.digest()}.pt") and saved[0].startswith("feats.pt-")
    whole = image_run.run_image(short_key, data, short, results_dir=str(out), progress=False)
    assert whole is not None and os.listdir(out / "checkpoints") == saved  # the other protocol's stop survives
    resumed = image_run.run_image(long_key, data, long, results_dir=str(out), progress=False)
    assert resumed["history"]["epoch"] == [0, 1, 2, 3] and os.listdir(out / "checkpoints") == []


def test_a_run_stopped_before_checkpoints_carried_the_digest_still_resumes(tmp_path):
    feats, out = _features_file(str(tmp_path / "feats.pt"), seed=0), tmp_path / "out"
    data = load_image_dataset("features", features=feats)
    options = {"mlgcn": {"backbone": "none", "hidden": 8}}
    long, short = (ImageProtocol(epochs=e, batch_size=8, lr=1e-2, model_options=options) for e in (3, 2))
    long_key, short_key = (RunKey.make("features", "mlgcn", "random", "paper", 0, p) for p in (long, short))
    assert image_run.run_image(long_key, data, long, results_dir=str(out), progress=False, stop_after=1) is None
    legacy = out / "checkpoints" / (long_key.stem() + ".pt")  # the name used before the digest
    os.replace(image_run.checkpoint_path(str(out), long_key, long.digest()), legacy)
    saved_epoch0 = torch.load(legacy, weights_only=False)["history"]["loop_seconds"][0]
    image_run.run_image(short_key, data, short, results_dir=str(out), progress=False)
    assert legacy.exists()  # another protocol's: left alone
    resumed = image_run.run_image(long_key, data, long, results_dir=str(out), progress=False)
    assert resumed["history"]["loop_seconds"][0] == saved_epoch0  # epoch 0 came from the old file
    assert resumed["history"]["epoch"] == [0, 1, 2] and os.listdir(out / "checkpoints") == []


# -- exact resume with DataLoader workers ------------------------------------------------


def _image_folder(root, n=24, q=3):
    """n small JPEGs with random labels, under the paper's augmentation (random crops, flips)."""
    paths = [str(root / f"{i:03d}.jpg") for i in range(n)]
    for i, path in enumerate(paths):
        jpeg(path, i, size=(24, 24))
    labels = (torch.rand(n, q, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    labels[torch.arange(n), torch.arange(n) % q] = 1.0
    train_tf, test_tf = image_transforms(16, 20)
    return ImageData(
        "tiny",
        ImageFiles(paths, labels, train_tf),
        ImageFiles(paths[:12], labels[:12], test_tf),
        labels,
        labels[:12],
        [str(j) for j in range(q)],
        train_eval=ImageFiles(paths, labels, test_tf),
    )


def test_a_resume_with_dataloader_workers_gives_the_uninterrupted_result(tmp_path):
    data = _image_folder(tmp_path / "images")
    protocol = ImageProtocol(
        epochs=2,
        batch_size=8,
        lr=1e-3,
        image_size=16,
        scale_size=20,
        model_selection="last",
        model_options={"mlgcn": {"backbone": "resnet18", "hidden": 8}},
    )
    key = RunKey.make("tiny", "mlgcn", "random", "paper", 0, protocol)
    whole = image_run.run_image(key, data, protocol, workers=2, progress=False)
    whole_rng = torch.get_rng_state()
    assert (
        image_run.run_image(
            key, data, protocol, results_dir=str(tmp_path / "out"), workers=2, progress=False, stop_after=1
        )
        is None
    )
    resumed = image_run.run_image(key, data, protocol, results_dir=str(tmp_path / "out"), workers=2, progress=False)
    assert resumed["history"]["train_loss"] == whole["history"]["train_loss"]
    assert resumed["metrics"] == whole["metrics"]
    # the global generator (HST's pair sampling, dropout) ends where it would have: new workers drew nothing from it
    assert torch.equal(torch.get_rng_state(), whole_rng)
    # each image's crop and flip are seeded by (seed, epoch, position), so the worker count does not matter
    in_process = image_run.run_image(key, data, protocol, workers=0, progress=False)
    assert in_process["history"]["train_loss"] == whole["history"]["train_loss"]
    assert torch.equal(torch.get_rng_state(), whole_rng)  # in-process seeding is undone after each image


# -- image CLI: a seed count below one, a negative worker count --------------------------


@pytest.mark.parametrize("option, value", [("--seeds", "0"), ("--seeds", "-2"), ("--workers", "-1")])
def test_the_image_cli_refuses_counts_below_their_minimum_before_training(tmp_path, trained, capsys, option, value):
    argv = ["run", "--dataset", "digits-mosaic", "--results-dir", str(tmp_path / "out"), option, value]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option in err and value in err
    assert trained == [] and not (tmp_path / "out").exists()


# -- image CLI: an unwritable results or checkpoint folder -------------------------------


@pytest.mark.parametrize("blocked", ["results", "checkpoints"])
def test_the_image_cli_refuses_an_unwritable_results_folder_before_training(tmp_path, trained, capsys, blocked):
    out = tmp_path / "out"
    if blocked == "results":
        out.write_text("a file where the folder should be")
    else:
        out.mkdir()
        (out / "checkpoints").write_text("a file where the folder should be")
    argv = [
        "run",
        "--dataset",
        "digits-mosaic",
        "--mosaic-opt",
        "train_size=40",
        "--mosaic-opt",
        "test_size=20",
        "--results-dir",
        str(out),
        "--epochs",
        "1",
        "--no-progress",
    ]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "--results-dir" in err
    assert trained == []


# -- image CLI: a model or selector option that cannot build -----------------------------


@pytest.mark.parametrize(
    "option, value, named",
    [
        ("--model-opt", "mlgcn.nosuchopt=1", "nosuchopt"),
        ("--selector-opt", "d2ace.nosuchopt=1", "nosuchopt"),
        ("--selector-opt", "d2ace.window_size=0", "window_size"),
    ],
)
def test_the_image_cli_refuses_bad_model_and_selector_options_before_training(
    tmp_path, trained, capsys, option, value, named
):
    argv = [
        "run",
        "--dataset",
        "digits-mosaic",
        "--mosaic-opt",
        "train_size=40",
        "--mosaic-opt",
        "test_size=20",
        "--model",
        "mlgcn",
        "--selector",
        "d2ace",
        "--results-dir",
        str(tmp_path / "out"),
        "--epochs",
        "1",
        "--no-progress",
        option,
        value,
    ]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option in err and named in err
    assert trained == []


# The image loop trains with the loss weights a selector asks for -------------------------


@pytest.mark.parametrize("selector, expected", [("infobatch", 2.0), ("balance", 0.0)])
def test_the_image_loop_applies_the_selector_s_loss_weights(tmp_path, monkeypatch, selector, expected):
    """InfoBatch's 1 / (1 − r) on its kept low-loss instances and Balance's 0/1 label mask
    reach the image loop's loss, as they reach the tabular one (one shared objective)."""
    import d2ace_ext.harness.selection_loss as selection_loss

    seen = []
    original = selection_loss.loss_weights

    def recording(*args, **kwargs):
        weights = original(*args, **kwargs)
        seen.append(None if weights is None else weights.detach().clone())
        return weights

    monkeypatch.setattr(selection_loss, "loss_weights", recording)
    data = load_image_dataset("features", features=_features_file(str(tmp_path / "feats.pt"), seed=0))
    protocol = ImageProtocol(
        epochs=4,
        batch_size=8,
        lr=1e-2,
        model_options={"mlgcn": {"backbone": "none", "hidden": 8}},
        selector_options={"infobatch": {"num_epochs": 4}} if selector == "infobatch" else {},
    )
    key = RunKey.make("features", "mlgcn", selector, "paper", 0, protocol)
    image_run.run_image(key, data, protocol, progress=False)
    weighted = [w for w in seen if w is not None]
    assert weighted, "the selector's loss weights never reached the image loop"
    assert any(bool((w == expected).any()) for w in weighted)


def test_a_record_that_cannot_be_stored_keeps_the_run_s_checkpoint(tmp_path, monkeypatch):
    """The checkpoint goes only once the record is in results.jsonl: a full disk at the
    append used to find the checkpoint already removed, and every epoch trained again."""
    from d2ace_ext.harness.results import ResultsStore

    feats = _features_file(str(tmp_path / "feats.pt"), seed=0)
    argv = ["run", "--dataset", "features", "--features", feats, "--model", "mlgcn", "--selector", "random"]
    argv += ["--epochs", "2", "--batch-size", "8", "--lr", "1e-2", "--model-opt", "hidden=8", "--no-progress"]
    assert cli_main([*argv, "--results-dir", str(tmp_path / "whole")]) == 0
    out = tmp_path / "out"
    real_append = ResultsStore.append

    def full_disk(store, record):
        raise OSError(28, "No space left on device", store.path)

    monkeypatch.setattr(ResultsStore, "append", full_disk)
    with pytest.raises(OSError, match="No space left"):
        cli_main([*argv, "--results-dir", str(out)])
    assert len(os.listdir(out / "checkpoints")) == 1  # the trained run survives the failed append
    monkeypatch.setattr(ResultsStore, "append", real_append)
    trained = []
    real_epoch = image_run._train_epoch
    monkeypatch.setattr(image_run, "_train_epoch", lambda *a: trained.append(1) or real_epoch(*a))
    assert cli_main([*argv, "--results-dir", str(out)]) == 0
    assert trained == []  # no epoch trained again: the record came from the final checkpoint
    (whole,), (resumed,) = _records(tmp_path / "whole"), _records(out)
    assert resumed["metrics"] == whole["metrics"] and resumed["history"]["epoch"] == [0, 1]
    assert os.listdir(out / "checkpoints") == []


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_checkpoint_is_a_one_line_error_naming_the_file(tmp_path, damage):
    """A checkpoint cut short (a power loss before the file reached the disk) used to stop
    the image command with torch's 'failed finding central directory' or 'Ran out of input'."""
    feats, out = _features_file(str(tmp_path / "feats.pt"), seed=0), str(tmp_path / "out")
    data = load_image_dataset("features", features=feats)
    protocol = ImageProtocol(
        epochs=3, batch_size=8, lr=1e-2, model_options={"mlgcn": {"backbone": "none", "hidden": 8}}
    )
    key = RunKey.make("features", "mlgcn", "random", "paper", 0, protocol)
    assert image_run.run_image(key, data, protocol, results_dir=out, progress=False, stop_after=1) is None
    path = image_run.checkpoint_path(out, key, protocol.digest())
    saved = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(b"" if damage == "empty" else saved[: len(saved) // 2])
    with pytest.raises(ValueError, match=f"checkpoint {path} .*delete it"):
        image_run.run_image(key, data, protocol, results_dir=out, progress=False)


def test_an_image_checkpoint_reaches_the_disk_before_it_replaces_the_last_one(tmp_path, monkeypatch):
    """os.replace without a sync first can leave an empty checkpoint after a power loss."""
    from d2ace_ext.harness import image_checkpoint

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd)
    )
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(a))) or real_replace(a, b))
    path = str(tmp_path / "checkpoints" / "run.pt")
    image_checkpoint._save(path, {"epoch": 0})
    assert events[:2] == [("fsync", path + ".tmp"), ("replace", path + ".tmp")]
    assert torch.load(path, weights_only=True) == {"epoch": 0}


def test_a_checkpoint_left_beside_a_stored_record_is_removed_when_the_run_is_skipped(tmp_path, trained):
    """A kill between the append and the removal left the checkpoint (a model and its
    optimiser state) in checkpoints/ for good: every later call skipped the run."""
    feats, out = _features_file(str(tmp_path / "feats.pt"), seed=0), str(tmp_path / "out")
    argv = ["run", "--dataset", "features", "--features", feats, "--model", "mlgcn", "--selector", "random"]
    argv += ["--epochs", "2", "--model-opt", "hidden=8", "--results-dir", out, "--no-progress"]
    assert cli_main(argv) == 0
    (key,) = trained
    left = image_run.checkpoint_path(out, key, key.protocol)
    os.makedirs(os.path.dirname(left), exist_ok=True)
    torch.save({"protocol": key.protocol}, left)
    assert cli_main(argv) == 0 and len(trained) == 1  # skipped
    assert not os.path.exists(left)
