"""ML-GCN and HST on a ResNet backbone: shapes, the objective contract, the label graph,
checkpoints, and every selector driving them through the sampler."""

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("torchvision", reason="the image path needs torchvision (make installs it; TORCHVISION_SPEC)")

from d2ace_ext import make_sampler  # noqa: E402
from d2ace_ext.models import make_model  # noqa: E402
from d2ace_ext.models.mlgcn import mlgcn_adjacency  # noqa: E402

torch.set_num_threads(1)


def _problem(n=12, q=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    y = (torch.rand(n, q, generator=g) < 0.4).float()
    y[0] = 1
    return x, y


def test_mlgcn_adjacency_follows_the_paper_equation():
    y = torch.tensor([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1.0]])
    # P(L1|L0) = 2/3 >= 0.4, P(L0|L1) = 1, label 2 alone.
    adj = mlgcn_adjacency(y, tau=0.4, p=0.2)
    raw = torch.tensor([[0.8, 0.2, 0], [0.2, 0.8, 0], [0, 0, 1.0]])
    d = raw.sum(1).pow(-0.5)
    assert torch.allclose(adj, d[:, None] * raw.T * d[None, :])


@pytest.mark.parametrize("name", ["mlgcn", "hst"])
def test_image_models_objective_contract_and_backward(name):
    x, y = _problem()
    torch.manual_seed(0)
    model = make_model(
        name,
        3,
        4,
        train_labels=y,
        backbone="resnet18",
        **({"image_dim": 64, "hidden": 32, "output_dim": 32, "prototypes": 3} if name == "hst" else {"hidden": 32}),
    )
    model.train()
    logits, loss = model.objective(x, y)
    assert logits.shape == (12, 4) and loss.dim() == 0 and torch.isfinite(loss)
    assert loss >= F.binary_cross_entropy_with_logits(logits, y) - 1e-6  # BCE with weight 1 plus >= 0 terms
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    assert torch.equal(model(x[:3]), model(x[:3]))


def test_hst_prototypes_and_epoch_schedule():
    x, y = _problem(q=3)
    torch.manual_seed(0)
    model = make_model(
        "hst",
        3,
        3,
        train_labels=y,
        backbone="resnet18",
        image_dim=32,
        hidden=16,
        output_dim=16,
        prototypes=2,
        generate_label_epoch=1,
        prototype_every=1,
    )
    passes = []
    batches = lambda: passes.append(1) or [(x[:6], y[:6]), (x[6:], y[6:])]  # noqa: E731
    model.start_epoch(0, 2, batches)
    assert not passes and not bool(model.has_prototypes)
    model.train()
    assert model.objective(x, y)[1].requires_grad
    model.start_epoch(1, 2, batches)
    assert passes == [1] and bool(model.has_prototypes) and model.training
    assert model.prototype_bank.shape == (3, 2, 32) and model.prototype_bank.abs().sum() > 0
    logits, loss = model.objective(x, y)
    assert torch.isfinite(loss)
    # state (prototypes included) loads into a fresh model
    fresh = make_model(
        "hst", 3, 3, train_labels=y, backbone="resnet18", image_dim=32, hidden=16, output_dim=16, prototypes=2
    )
    fresh.load_state_dict(model.state_dict())
    assert bool(fresh.has_prototypes)


def test_backbone_none_takes_precomputed_features_and_layer4_freezing():
    y = (torch.rand(10, 5) < 0.5).float()
    model = make_model("mlgcn", 16, 5, train_labels=y, backbone="none", hidden=8)
    assert model(torch.randn(10, 16)).shape == (10, 5)
    with pytest.raises(ValueError, match=r"\(b, 16\)"):
        model(torch.randn(10, 7))
    hst = make_model(
        "hst", 3, 5, train_labels=y, backbone="resnet18", image_dim=16, hidden=8, output_dim=8, trainable="layer4"
    )  # HST's default when a checkpoint is given
    frozen = [p.requires_grad for p in hst.backbone.body.parameters()]
    assert not any(frozen) and all(p.requires_grad for p in hst.backbone.layer4.parameters())
    hst.train()
    assert not hst.backbone.body.training and hst.backbone.layer4.training


def test_checkpoint_loading_and_errors(tmp_path):
    import torchvision

    y = (torch.rand(6, 3) < 0.5).float()
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in reference.state_dict().items()}}, path)
    model = make_model("mlgcn", 3, 3, train_labels=y, backbone="resnet18", checkpoint=str(path), hidden=8)
    assert torch.equal(model.backbone.layer4[0].conv1.weight, reference.layer4[0].conv1.weight)
    with pytest.raises(FileNotFoundError, match="never downloaded.*checkpoint=PATH"):
        make_model("mlgcn", 3, 3, train_labels=y, backbone="resnet18", checkpoint=str(tmp_path / "none.pth"))
    with pytest.raises(ValueError, match="train_labels"):
        make_model("hst", 3, 3, backbone="resnet18")
    with pytest.raises(ValueError, match="unknown backbone"):
        make_model("mlgcn", 3, 3, train_labels=y, backbone="vgg16")
    emb = tmp_path / "glove.pt"
    torch.save(torch.randn(3, 7), emb)
    model = make_model("mlgcn", 3, 3, train_labels=y, backbone="resnet18", embeddings=str(emb), hidden=8)
    assert model.label_inputs.shape == (3, 7)
    with pytest.raises(ValueError, match=r"\(4, d\)"):
        make_model("mlgcn", 3, 4, train_labels=torch.ones(2, 4), backbone="resnet18", embeddings=str(emb))


@pytest.mark.parametrize("selector", ["random", "dihcl", "ml_unc", "hard_imb", "d2ace"])
def test_every_selector_drives_an_image_model(selector):
    # HST's head on (b, 8, 2, 2) feature maps: the image model minus the ResNet, which the
    # protocol tests drive; here the point is the sampler loop around objective().
    _, y = _problem(n=16, q=4)
    x = torch.randn(16, 8, 2, 2)
    torch.manual_seed(0)
    model = make_model("hst", 8, 4, train_labels=y, backbone="none", image_dim=8, hidden=8, output_dim=8)
    options = {"num_epochs": 3, "warmup_epochs": 1} if selector in ("dihcl", "ml_unc", "hard_imb") else {}
    if selector == "d2ace":
        options = {"num_epochs": 3, "warmup_epochs": 1, "t_start": 1, "t_end": 2, "num_neighbors": 3}
    sampler = make_sampler(selector, y, 8, x.flatten(1), seed=0, **options)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            index = torch.tensor(batch)
            logits, loss = model.objective(x[index], y[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            sampler.update(index, logits.detach(), y[index])
