"""The tabular base models (MLP, CLIF, DELA, PACA), the CLIF label graph and the registry."""

import pytest
import torch

from d2ace_ext.datasets.synthetic import make_multilabel
from d2ace_ext.models import CLIF, MLP, MODELS, MultiLabelModel, label_cooccurrence_graph, make_model

NAMES = sorted(MODELS)


def build(name, d, q, labels=None, seed=0, **options):
    torch.manual_seed(seed)
    if labels is None:
        labels = (torch.rand(50, q) < 0.4).float()
    return make_model(name, d, q, train_labels=labels, **options)


def problem(b, d, q, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, d, generator=g), (torch.rand(b, q, generator=g) < 0.4).float()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("b,d,q", [(1, 3, 1), (7, 20, 5), (128, 103, 14), (2, 2000, 400)])
def test_shapes_and_finite_loss(name, b, d, q):
    x, y = problem(b, d, q)
    model = build(name, d, q, labels=y)
    assert isinstance(model, MultiLabelModel)
    logits, loss = model.objective(x, y)
    assert logits.shape == (b, q) and logits.dtype == torch.float32
    assert loss.dim() == 0 and torch.isfinite(loss) and bool(torch.isfinite(logits).all())
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (b, q)


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_every_trainable_parameter(name):
    x, y = problem(16, 20, 5)
    model = build(name, 20, 5, labels=y)
    model.objective(x, y)[1].backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, pname
            assert bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_eval_forward_is_deterministic_and_training_logits_are_sampled(name):
    x, y = problem(9, 20, 5)
    model = build(name, 20, 5, labels=y)
    torch.manual_seed(3)
    first = model.objective(x, y)[0].detach()
    torch.manual_seed(4)
    second = model.objective(x, y)[0].detach()
    if name != "clif":  # CLIF has no dropout by default: its training pass is deterministic
        assert not torch.equal(first, second)  # dropout / sampled perturbations
    model.eval()
    with torch.no_grad():
        torch.manual_seed(5)
        a = model(x)
        torch.manual_seed(6)
        assert torch.equal(a, model(x))
        assert torch.allclose(model(x[:4]), a[:4], atol=1e-5)  # rows do not interact


@pytest.mark.parametrize("name", NAMES)
def test_construction_and_objective_are_seed_deterministic(name):
    x, y = problem(8, 20, 5)
    one, two = build(name, 20, 5, labels=y, seed=7), build(name, 20, 5, labels=y, seed=7)
    for (k, a), (_, b) in zip(one.state_dict().items(), two.state_dict().items()):
        assert torch.equal(a, b), k
    torch.manual_seed(1)
    out_one = one.objective(x, y)
    torch.manual_seed(1)
    out_two = two.objective(x, y)
    assert torch.equal(out_one[0], out_two[0]) and torch.equal(out_one[1], out_two[1])
    other = build(name, 20, 5, labels=y, seed=8)
    assert any(not torch.equal(a, b) for a, b in zip(one.state_dict().values(), other.state_dict().values()))


# Narrower CLIF features and PACA flow conditioners keep the suite fast; same architecture.
FIT_OPTIONS = {"clif": {"feature_dim": 128}, "paca": {"flow_hidden": 64}}


@pytest.mark.parametrize("name", NAMES)
def test_a_short_fit_lowers_the_training_objective(name):
    x, y = make_multilabel(n=400, d=20, q=5, seed=0)
    model = build(name, 20, 5, labels=y, **FIT_OPTIONS.get(name, {}))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        index = torch.randint(0, 400, (32,), generator=g)
        loss = model.objective(x[index], y[index])[1]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)


def test_label_cooccurrence_graph_on_a_hand_computed_example():
    labels = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 1]])
    # n1 = 3, n2 = 3, n3 = 2; n12 = 2, n13 = 1, n23 = 2.
    a12 = (2 / 3 + 2 / 3) / 2
    a13 = (1 / 3 + 1 / 2) / 2
    a23 = (2 / 3 + 2 / 2) / 2
    expected = torch.tensor([[0, a12, a13], [a12, 0, a23], [a13, a23, 0]], dtype=torch.float32)
    graph = label_cooccurrence_graph(labels)
    assert graph.dtype == torch.float32 and torch.allclose(graph, expected)
    assert torch.allclose(label_cooccurrence_graph(labels.numpy()), expected)
    empty = label_cooccurrence_graph(torch.tensor([[1, 0], [1, 0]]))
    assert torch.equal(empty, torch.zeros(2, 2))  # a label with no positives: no edges
    with pytest.raises(ValueError):
        label_cooccurrence_graph(torch.tensor([[0.5, 1.0]]))


def test_clif_graph_variants():
    x, y = problem(12, 20, 5)
    original = build("clif", 20, 5, labels=y)
    assert torch.equal(original.adjacency, label_cooccurrence_graph(y))
    assert original.label_inputs.requires_grad
    published = build("clif", 20, 5, labels=None, graph="published")
    assert torch.equal(published.adjacency, torch.eye(5))
    assert not published.label_inputs.requires_grad
    published.objective(x, y)[1].backward()
    assert published.label_inputs.grad is None
    assert published.label_embeddings().shape == (5, 128)
    assert build("clif", 20, 5, labels=y, label_dim=64).label_embeddings().shape == (5, 64)


def test_registry_errors_and_the_mlp_import_path():
    with pytest.raises(ValueError, match="clif.*dela.*mlp.*paca"):
        make_model("resnet", 4, 2)
    with pytest.raises(TypeError, match="bogus"):
        make_model("dela", 4, 2, bogus=1)
    with pytest.raises(ValueError, match="train_labels"):
        make_model("clif", 4, 2)
    with pytest.raises(ValueError, match="train_labels"):
        CLIF(4, 2)
    with pytest.raises(ValueError, match="num_labels"):
        make_model("clif", 4, 3, train_labels=torch.ones(5, 2))
    mlp = make_model("mlp", 4, 2, train_labels=torch.ones(5, 2))  # labels ignored where unused
    assert isinstance(mlp, MLP) and mlp.net[0].out_features == 256 and mlp.net[2].p == 0.2
