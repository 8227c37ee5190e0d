"""The image path read against the released ML-GCN (Megvii-Nanjing/ML-GCN) and HST
(HCPLab-SYSU/HCP-MLR-PL) code: label order of label-row files, MS-COCO's image
count, VOC's difficult objects, HST's backbone map, graph, margins and loss, the two
released crops, ML-GCN's gradient clip, and the mAP users compare with. Every test runs
on fabricated on-disk sets, the digits-mosaic or random tensors, with tiny backbones."""

import pickle
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("torchvision", reason="the image path needs torchvision (make installs it; TORCHVISION_SPEC)")
from PIL import Image  # noqa: E402

import d2ace_ext.harness.image_run as image_run  # noqa: E402
from d2ace_ext.cli import main as cli_main  # noqa: E402
from d2ace_ext.datasets.images.files import HST_CROP_SCALES, ImageFiles, MultiScaleCrop, hst_crop, image_transforms  # noqa: E402
from d2ace_ext.datasets.images.registry import ImageData, data_rules, load_image_dataset  # noqa: E402
from d2ace_ext.datasets.images.voc import VOC_CLASSES  # noqa: E402
from d2ace_ext.harness.experiment import RunKey  # noqa: E402
from d2ace_ext.harness.image_protocol import ImageProtocol, mean_average_precision  # noqa: E402
from d2ace_ext.metrics import voc_interpolated_map  # noqa: E402
from d2ace_ext.models import make_model  # noqa: E402
from d2ace_ext.models.hst import conditional_cooccurrence  # noqa: E402
from d2ace_ext.models.mlgcn import mlgcn_adjacency  # noqa: E402

from support.image_files import jpeg, make_coco, make_voc  # noqa: E402

torch.set_num_threads(1)
#: MS-COCO category names in category-id order (ids 1, 2, 3, 5, 90), not alphabetical
COCO_NAMES = ["person", "bicycle", "car", "airplane", "toothbrush"]
HST_TINY = {"backbone": "resnet18", "image_dim": 16, "hidden": 8, "output_dim": 8, "prototypes": 2}
METRICS = ("map", "macro_auc", "macro_f1", "micro_f1", "ranking_loss", "one_error", "average_precision")


@pytest.fixture
def trained(monkeypatch):
    """Replaces training by a stub that records (key, data, protocol) of each run it is asked for."""
    calls = []

    def fake_run(key, data, protocol, **_):
        calls.append((key, data, protocol))
        return {
            "key": key.to_dict(),
            "metrics": {m: 0.5 for m in METRICS},
            "steps": 1,
            "loop_seconds": 0.0,
            "selection_seconds": 0.0,
            "seconds": 0.0,
            "inputs": protocol.inputs,
        }

    monkeypatch.setattr(image_run, "run_image", fake_run)
    return calls


def _mlgcn_files(folder, train_labels):
    """ML-GCN's two MS-COCO files, fabricated: GloVe-like vectors and co-occurrence counts
    as bare arrays in ML-GCN's order (names sorted), row of label n = 10 * (its sorted rank) + column."""
    alphabetical = sorted(COCO_NAMES)
    vectors = np.arange(len(alphabetical) * 6, dtype=np.float32).reshape(len(alphabetical), 6)
    y = train_labels.double()[:, [COCO_NAMES.index(n) for n in alphabetical]]
    counts = (y.T @ y).numpy().astype(np.int64)
    np.fill_diagonal(counts, 0)
    with open(folder / "coco_glove_word2vec.pkl", "wb") as handle:
        pickle.dump(vectors, handle)
    with open(folder / "coco_adj.pkl", "wb") as handle:
        pickle.dump({"adj": counts, "nums": y.sum(0).numpy().astype(np.int64)}, handle)
    return vectors, folder / "coco_glove_word2vec.pkl", folder / "coco_adj.pkl"


# -- label order -------------------------------------------------------------------------


def test_mlgcn_ordered_files_are_refused_unless_their_order_is_stated_then_matched_by_name(tmp_path):
    make_coco(str(tmp_path / "coco"), COCO_NAMES)
    data = load_image_dataset("coco2014", str(tmp_path / "coco"))
    assert data.label_names == COCO_NAMES  # category-id order, recorded
    vectors, glove, adj = _mlgcn_files(tmp_path, data.train_labels)
    build = dict(train_labels=data.train_labels, backbone="resnet18", hidden=8, label_names=data.label_names)
    with pytest.raises(ValueError, match="coco_glove_word2vec.pkl.*label_order=alphabetical"):
        make_model("mlgcn", 3, 5, embeddings=str(glove), **build)
    with pytest.raises(ValueError, match="coco_adj.pkl.*label_order=alphabetical"):
        make_model("mlgcn", 3, 5, graph=str(adj), **build)
    model = make_model("mlgcn", 3, 5, embeddings=str(glove), graph=str(adj), label_order="alphabetical", **build)
    person = COCO_NAMES.index("person")  # 0 here, row 3 of the sorted file
    assert torch.equal(model.label_inputs[person], torch.from_numpy(vectors[sorted(COCO_NAMES).index("person")]))
    assert torch.equal(model.adjacency, mlgcn_adjacency(data.train_labels))  # the file's counts, realigned
    taken_as_is = make_model("mlgcn", 3, 5, graph=str(adj), label_order="dataset", **build)
    assert not torch.equal(taken_as_is.adjacency, model.adjacency)


def test_a_file_that_names_its_rows_is_reordered_and_other_names_are_refused(tmp_path):
    y = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 0, 1.0]])
    shuffled = ["toothbrush", "car", "person", "bicycle", "airplane"]
    vectors = torch.randn(5, 4)
    torch.save({"embeddings": vectors, "label_names": shuffled}, tmp_path / "named.pt")
    hst = make_model(
        "hst", 3, 5, train_labels=y, embeddings=str(tmp_path / "named.pt"), label_names=COCO_NAMES, **HST_TINY
    )
    assert torch.equal(hst.words, vectors[[shuffled.index(n) for n in COCO_NAMES]])
    torch.save({"embeddings": vectors, "label_names": [*shuffled[:4], "zebra"]}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other.pt names other labels.*missing \['airplane'\].*\['zebra'\]"):
        make_model(
            "hst", 3, 5, train_labels=y, embeddings=str(tmp_path / "other.pt"), label_names=COCO_NAMES, **HST_TINY
        )
    # VOC2007's classes are alphabetical: ML-GCN's bare VOC files line up without a stated order
    np.save(tmp_path / "voc.npy", np.eye(20, 3, dtype=np.float32))
    voc = make_model(
        "mlgcn",
        3,
        20,
        train_labels=torch.eye(20),
        embeddings=str(tmp_path / "voc.npy"),
        label_names=list(VOC_CLASSES),
        backbone="resnet18",
        hidden=8,
    )
    assert torch.equal(voc.label_inputs, torch.eye(20, 3))


@pytest.mark.filterwarnings("ignore:.*no positive")
def test_the_image_command_refuses_a_misaligned_embedding_file_and_records_the_label_order(tmp_path, capsys):
    make_coco(str(tmp_path / "coco"), COCO_NAMES)
    labels = load_image_dataset("coco2014", str(tmp_path / "coco")).train_labels
    _, glove, _ = _mlgcn_files(tmp_path, labels)
    argv = [
        "run",
        "--dataset",
        "coco2014",
        "--data-dir",
        str(tmp_path / "coco"),
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
        "--model-selection",
        "last",
        "--model-opt",
        "hidden=8",
        "--embeddings",
        str(glove),
        "--workers",
        "0",
        "--results-dir",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    assert cli_main(argv) == 2
    assert "label_order=alphabetical" in capsys.readouterr().err
    assert cli_main(argv + ["--model-opt", "label_order=alphabetical"]) == 0
    record = __import__("json").loads((tmp_path / "out" / "results.jsonl").read_text().splitlines()[-1])
    assert record["label_names"] == COCO_NAMES


# -- MS-COCO image count -----------------------------------------------------------------


def test_coco_keeps_images_without_objects_by_default_and_the_header_says_so(tmp_path, trained, capsys):
    make_coco(str(tmp_path / "coco"))
    base = [
        "run",
        "--dataset",
        "coco2014",
        "--data-dir",
        str(tmp_path / "coco"),
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
        "--no-progress",
    ]
    assert cli_main(base) == 0
    out = capsys.readouterr().out
    assert "coco2014: 3 training and 2 test images" in out
    assert "images without objects kept as all-zero rows (the paper's count): 1 training, 1 test" in out
    assert cli_main(base + ["--drop-empty"]) == 0
    out = capsys.readouterr().out
    assert "coco2014: 2 training and 1 test images" in out and "dropped (--drop-empty, as ML-GCN)" in out
    (kept, data_kept, p_kept), (dropped, data_dropped, p_dropped) = trained
    assert data_kept.train_labels.shape == (3, 5) and data_dropped.train_labels.shape == (2, 5)
    assert p_kept.inputs["keep_empty"] is True and p_dropped.inputs["keep_empty"] is False
    assert kept.protocol != dropped.protocol
    assert cli_main(base + ["--drop-empty", "--keep-empty"]) == 2
    assert "--drop-empty" in capsys.readouterr().err


# -- VOC difficult objects ---------------------------------------------------------------


def test_voc_difficult_only_classes_under_the_mlgcn_and_the_hst_rule(tmp_path):
    make_voc(str(tmp_path))  # trainval 000009: person only difficult; test 000002: train only difficult
    person, train = VOC_CLASSES.index("person"), VOC_CLASSES.index("train")
    mlgcn = load_image_dataset("voc2007", str(tmp_path), difficult="mlgcn")
    assert mlgcn.train_labels[2, person] == 1  # positive for training
    assert mlgcn.test_labels[1, train] == 1 and mlgcn.test_ignore.nonzero().tolist() == [[1, train]]
    hst = load_image_dataset("voc2007", str(tmp_path), difficult="hst")
    assert hst.train_labels[2, person] == 0  # dropped: a negative
    assert hst.test_labels[1, train] == 0 and not hst.test_ignore.any()  # a negative, and scored
    assert torch.equal(
        load_image_dataset("voc2007", str(tmp_path), difficult="ignore").test_ignore, mlgcn.test_ignore
    )  # the rule's older name
    with pytest.raises(ValueError, match="difficult must be one of mlgcn, hst"):
        load_image_dataset("voc2007", str(tmp_path), difficult="drop")


def test_each_base_model_reads_image_folders_by_its_own_rules_unless_told(tmp_path, trained):
    make_voc(str(tmp_path / "voc"))
    base = [
        "compare",
        "--datasets",
        "voc2007",
        "digits-mosaic",
        "--data-dir",
        str(tmp_path / "voc"),
        "--models",
        "mlgcn",
        "hst",
        "--selectors",
        "random",
        "--backbone",
        "resnet18",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--mosaic-opt",
        "train_size=40",
        "--mosaic-opt",
        "test_size=20",
        "--results-dir",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    assert cli_main(base) == 0
    inputs = {(k.dataset, k.model): p.inputs for k, _, p in trained}
    assert {k: v.get("difficult") for k, v in inputs.items() if k[0] == "voc2007"} == {
        ("voc2007", "mlgcn"): "mlgcn",
        ("voc2007", "hst"): "hst",
    }
    assert {k: v.get("transform") for k, v in inputs.items() if k[0] == "voc2007"} == {
        ("voc2007", "mlgcn"): "mlgcn",
        ("voc2007", "hst"): "hst",
    }
    assert inputs[("digits-mosaic", "mlgcn")] == inputs[("digits-mosaic", "hst")] == {}  # no folder, no rules
    data = {(k.dataset, k.model): d for k, d, _ in trained}
    person = VOC_CLASSES.index("person")
    assert (
        data[("voc2007", "mlgcn")].train_labels[2, person] == 1
        and data[("voc2007", "hst")].train_labels[2, person] == 0
    )
    assert data_rules("hst", difficult="positive", transform="mlgcn") == {"difficult": "positive", "transform": "mlgcn"}
    assert data_rules(None) == {"difficult": "mlgcn", "transform": "hst"}


# Items 4-6 and 8: HST as released --------------------------------------------------------


def test_hst_averages_the_resnet_map_over_2x2_windows_as_its_release():
    y = (torch.rand(8, 4, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    x = torch.randn(2, 3, 128, 128)
    hst = make_model("hst", 3, 4, train_labels=y, **HST_TINY)
    mlgcn = make_model("mlgcn", 3, 4, train_labels=y, backbone="resnet18", hidden=8)
    hst.eval(), mlgcn.eval()
    assert hst.backbone(x).shape[-2:] == (2, 2) and mlgcn.backbone(x).shape[-2:] == (4, 4)
    assert torch.allclose(hst.backbone(x), F.avg_pool2d(mlgcn_like_map(hst, x), 2, 2))
    assert make_model("hst", 3, 4, train_labels=y, map_pool=1, **HST_TINY).backbone(x).shape[-2:] == (4, 4)
    assert hst.backbone(torch.randn(2, 3, 32, 32)).shape[-2:] == (1, 1)  # a 1 x 1 map is left as it is


def mlgcn_like_map(model, x):
    """The layer4 map of ``model``'s backbone before any pooling."""
    return model.backbone.layer4(model.backbone.body(x))


def test_hst_graph_keeps_self_loops_of_weight_one():
    y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0.0]])
    expected = torch.tensor([[1, 0.5, 0], [1, 1, 0], [0, 0, 0]])  # label 2 has no positives: a zero row
    assert torch.equal(conditional_cooccurrence(y), expected)
    assert torch.equal(make_model("hst", 3, 3, train_labels=y, **HST_TINY).gnn.adjacency, expected)


def _mosaic_batch(n=32):
    data = load_image_dataset("digits-mosaic", image_size=32, mosaic={"train_size": 64, "test_size": 16, "grid": 2})
    x, y = data.train.get_batch(torch.arange(n))
    assert bool((y.sum(1) == 1).any())  # images with one label score it exactly 1
    return x, y


def test_hst_margins_learn_on_the_mosaic_through_the_clamp():
    x, y = _mosaic_batch()
    torch.manual_seed(0)
    model = make_model("hst", 3, 10, train_labels=y, generate_label_epoch=0, **HST_TINY)
    assert model.intra_margin.requires_grad and float(model.intra_margin.detach()) == 1.0
    model.start_epoch(0, 4, lambda: [(x, y)])
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=0.0)  # no decay: the loss moves it
    for step in range(3):
        _, loss = model.objective(x, y)
        optimiser.zero_grad()
        loss.backward()
        if step == 0:
            assert float(model.intra_margin.grad) > 0  # the release's clamp passes it at its bound
        optimiser.step()
    assert float(model.intra_margin.detach()) < 1.0 - 1e-3
    fixed = make_model("hst", 3, 10, train_labels=y, learn_margins=False, **HST_TINY)
    assert not fixed.intra_margin.requires_grad and not fixed.inter_margin.requires_grad


def test_the_pseudo_label_clamp_passes_the_gradient_at_its_bounds_as_the_release_torch():
    from d2ace_ext.models.hst import clamp_keeping_bounds

    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    out = clamp_keeping_bounds(x)
    assert torch.equal(out, x.detach().clamp(0, 1))
    out.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_hst_sums_the_three_bce_terms_from_the_pseudo_label_epoch_as_released():
    x, y = _mosaic_batch(8)
    torch.manual_seed(0)
    model = make_model(
        "hst",
        3,
        10,
        train_labels=y,
        generate_label_epoch=1,
        intra_weight=0.0,
        inter_weight=0.0,
        pseudo_bce_weight=0.0,
        **HST_TINY,
    )
    model.eval()
    logits, loss = model.objective(x, y)
    bce = F.binary_cross_entropy_with_logits(logits, y)
    assert model.bce_weight == 1.0 and torch.allclose(loss, bce)
    model.start_epoch(1, 1, lambda: [])
    logits, loss = model.objective(x, y)
    assert model.bce_weight == 3.0 and torch.allclose(loss, 3 * bce)  # not divided by 3


def test_hst_prototype_loss_paper_and_release_signs():
    x, y = _mosaic_batch(8)
    torch.manual_seed(0)
    model = make_model(
        "hst", 3, 10, train_labels=y, generate_label_epoch=1, intra_weight=0.0, pseudo_bce_weight=0.0, **HST_TINY
    )
    model.eval()
    model.start_epoch(1, 1, lambda: [(x, y)])
    s = model._prototype_similarity(model.semantic(x).float())
    pull = y * (1 - s) + (1 - y) * (1 + s)  # positives towards their prototypes, negatives away
    torch.manual_seed(1)
    paper = model.objective(x, y)[1]
    model.prototype_loss = "release"  # the released s * t + 1, t = +-1: the opposite on both sides
    torch.manual_seed(1)
    release = model.objective(x, y)[1]
    assert torch.allclose(paper - release, pull.mean() - (2 - pull).mean(), atol=1e-6)


def test_hst_prototypes_cluster_every_positive_with_ten_kmeans_restarts(monkeypatch):
    import sklearn.cluster

    seen = []

    class Recording(sklearn.cluster.KMeans):
        def fit(self, X, *args, **kwargs):
            seen.append((self.n_init, X.shape[0]))
            return super().fit(X, *args, **kwargs)

    monkeypatch.setattr(sklearn.cluster, "KMeans", Recording)
    x, y = _mosaic_batch(16)
    model = make_model("hst", 3, 10, train_labels=y, **HST_TINY)
    model.compute_prototypes([(x[:8], y[:8]), (x[8:], y[8:])])
    positives = [int(n) for n in y.sum(0) if n > 0]
    assert seen == [(10, n) for n in positives]


def _tiny_folder(root, n=12, q=3):
    paths = [str(root / f"{i:03d}.jpg") for i in range(n)]
    for i, path in enumerate(paths):
        jpeg(path, i, size=(24, 24))
    labels = (torch.rand(n, q, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    labels[torch.arange(n), torch.arange(n) % q] = 1.0
    train_tf, test_tf = image_transforms(16, 20, "hst")
    return ImageData(
        "tiny",
        ImageFiles(paths, labels, train_tf),
        ImageFiles(paths, labels, test_tf),
        labels,
        labels,
        [str(j) for j in range(q)],
        train_eval=ImageFiles(paths, labels, test_tf),
    )


def test_hst_prototypes_are_taken_from_augmented_training_images_reproducibly(tmp_path, monkeypatch):
    from d2ace_ext.models.hst import HST

    data = _tiny_folder(tmp_path)
    passes = []
    original = HST.compute_prototypes

    def spy(self, batches, seed=0):
        batches = list(batches)
        passes.append(torch.cat([x for x, _ in batches]))
        return original(self, batches, seed)

    monkeypatch.setattr(HST, "compute_prototypes", spy)
    options = {**HST_TINY, "generate_label_epoch": 1, "prototype_every": 1}
    protocol = ImageProtocol(
        epochs=2,
        batch_size=6,
        lr=1e-3,
        image_size=16,
        scale_size=20,
        model_selection="last",
        model_options={"hst": options},
    )
    key = RunKey.make("tiny", "hst", "random", "paper", 0, protocol)
    for _ in range(2):
        image_run.run_image(key, data, protocol, progress=False)
    test_view = torch.stack([data.train_eval[i][0] for i in range(12)])
    assert len(passes) == 2 and passes[0].shape == test_view.shape
    assert not torch.allclose(passes[0], test_view)  # random crops and flips, not the test transform
    assert torch.equal(passes[0], passes[1])  # seeded: the same images in a rerun


# -- the released crops ------------------------------------------------------------------


def test_hst_crops_a_random_square_of_the_released_sides():
    image = Image.new("RGB", (64, 64))
    crop = hst_crop(64)
    sides = set()
    for seed in range(200):
        random.seed(seed)
        torch.manual_seed(seed)
        w, h = crop(image).size
        assert w == h
        sides.add(w)
    assert sides == {round(64 * s) for s in HST_CROP_SCALES} == {64, 56, 48, 40, 32}


def test_mlgcn_crops_at_its_13_fixed_offsets_with_distortion_up_to_two_steps():
    crop = MultiScaleCrop(448)
    sizes = crop.sizes(500, 375)  # sides int(375 * s) for s in 1, .875, .75, .66, .5: 375 328 281 247 187
    assert (375, 281) in sizes and (281, 375) in sizes and (375, 247) not in sizes and len(sizes) == 19
    drawn = set()
    for seed in range(400):
        random.seed(seed)
        left, top, w, h = crop.sample(500, 375)
        assert (w, h) in sizes and (left, top) in crop.offsets(500, 375, w, h)
        drawn.add((w != h))
    assert drawn == {True, False}  # not only squares
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (375, 500, 3), dtype=np.uint8))
    random.seed(3)
    out = MultiScaleCrop(56)(image)
    random.seed(3)
    left, top, w, h = MultiScaleCrop(56).sample(500, 375)
    assert np.array_equal(
        np.asarray(out), np.asarray(image.crop((left, top, left + w, top + h)).resize((56, 56), Image.BILINEAR))
    )


def test_each_transform_resizes_test_images_with_its_own_interpolation():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    for kind, resample in (("hst", Image.BICUBIC), ("mlgcn", Image.BILINEAR)):
        _, test = image_transforms(16, 20, kind)
        expected = np.asarray(image.resize((16, 16), resample), dtype=np.float32) / 255
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        assert np.allclose(test(image).permute(1, 2, 0).numpy(), (expected - mean) / std, atol=1e-5)
    with pytest.raises(ValueError, match="valid: hst, mlgcn"):
        image_transforms(16, 20, "random")


# -- ML-GCN's gradient clip --------------------------------------------------------------


def test_mlgcn_grad_clip_is_applied_every_step_when_asked(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(40, 4, generator=g) < 0.4).float()
    torch.save(
        {
            "train_features": torch.randn(30, 12, generator=g),
            "train_labels": y[:30],
            "test_features": torch.randn(10, 12, generator=g),
            "test_labels": y[30:],
        },
        tmp_path / "f.pt",
    )
    data = load_image_dataset(str(tmp_path / "f.pt"))
    clips = []
    original = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, c, *a, **k: clips.append(c) or original(p, c))
    for options in ({}, {"grad_clip": 10.0}):
        protocol = ImageProtocol(
            epochs=2,
            batch_size=10,
            lr=1e-2,
            model_selection="last",
            model_options={"mlgcn": {"backbone": "none", "hidden": 8, **options}},
        )
        record = image_run.run_image(
            RunKey.make("f", "mlgcn", "random", "paper", 0, protocol), data, protocol, progress=False
        )
        assert 0 <= record["metrics"]["map_voc_interpolated"] <= 1
    assert clips == [10.0] * record["steps"]  # none without the option, every step with it


# -- the mAP users compare with ----------------------------------------------------------


def test_voc_interpolated_map_against_hand_values():
    y = np.array([[0, 1], [1, 0], [1, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.8, 0.7], [0.7, 0.1], [0.1, 0.9]])
    # label 0 ranks -, +, +: precisions 1/2, 2/3 at recalls 1/2, 1 -> interpolated (2/3 + 2/3) / 2,
    #   non-interpolated (1/2 + 2/3) / 2; label 1 ranks -, -, +, +: 1/3, 2/4 -> (1/2 + 1/2) / 2 and (1/3 + 1/2) / 2
    assert voc_interpolated_map(y, s) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert mean_average_precision(y, s) == pytest.approx(((1 / 2 + 2 / 3) / 2 + (1 / 3 + 1 / 2) / 2) / 2)
    ignore = np.zeros_like(y, dtype=bool)
    ignore[0, 0] = True  # label 0 without its top negative: AP 1
    assert voc_interpolated_map(y, s, ignore) == pytest.approx((1 + 1 / 2) / 2)
    tied = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])  # one threshold: precision 2/4 and 2/4
    assert voc_interpolated_map(y, tied) == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["mlgcn", "hst"])
def test_logits_are_computed_in_float32_under_bf16_autocast(name):
    y = (torch.rand(8, 4, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    options = HST_TINY if name == "hst" else {"backbone": "resnet18", "hidden": 8}
    model = make_model(name, 3, 4, train_labels=y, **options).eval()
    seen = {}
    watched = model.classifier if name == "hst" else model.backbone  # what feeds the last product
    watched.register_forward_hook(lambda module, args, out: seen.update(inputs=args[0], out=out))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(4, 3, 32, 32))
    with torch.no_grad():  # the same product in float32
        if name == "hst":
            expected = model.classifier(seen["inputs"].float())
        else:
            expected = torch.amax(seen["out"], dim=(2, 3)).float() @ model.classifiers().float().T
    assert logits.dtype == torch.float32 and torch.equal(logits, expected)
