"""The published variants of CLIF, DELA and PACA (as iunanyou/D2ACE builds them): sizes
pinned for yeast's d = 103, q = 14, the loss scale, and the generic model contract."""

import math

import pytest
import torch
import torch.nn.functional as F

from d2ace_ext.harness.experiment import with_published_variants
from d2ace_ext.models import MultiLabelModel, make_model

D, Q = 103, 14
VARIANT_MODELS = ["clif", "dela", "paca"]

# Trainable parameters of each published variant at d = 103, q = 14: the same totals as the
# authors' modules built in a scratch environment (their frozen label matrices, graph and
# flow masks, held here as buffers, not counted).
PARAMETERS = {"clif": 1_874_454, "dela": 498_450, "paca": 1_430_441}

# name -> shape of every trainable parameter that has a weight-like name, in module order.
SHAPES = {
    "clif": [
        ("gin.0.mlp.0.weight", (7, 14)),
        ("gin.0.mlp.4.weight", (14, 7)),
        ("gin.1.mlp.0.weight", (7, 14)),
        ("gin.1.mlp.4.weight", (14, 7)),
        ("encoder.0.weight", (768, 103)),
        ("encoder.3.weight", (768, 768)),
        ("encoder.6.weight", (768, 768)),
        ("guide.weight", (768, 14)),
        ("specific.0.weight", (768, 768)),
        ("classifier.weight", (14, 768)),
    ],
    "dela": [
        ("encoder.0.weight", (256, 103)),
        ("encoder.3.weight", (512, 256)),
        ("encoder.6.weight", (256, 512)),
        ("mu.weight", (52, 256)),
        ("logvar.weight", (52, 256)),
        ("gate_map.weight", (52, 52)),
        ("decoder_in.weight", (256, 155)),
        ("decoder_out.0.weight", (512, 256)),
        ("classifier.weight", (14, 512)),
    ],
    "paca": [
        ("x_encoder.0.weight", (256, 103)),
        ("x_encoder.3.weight", (512, 256)),
        ("x_encoder.6.weight", (256, 512)),
        ("x_mu.weight", (52, 256)),
        ("x_logvar.weight", (52, 256)),
        ("y_encoder.0.weight", (512, 14)),
        ("y_encoder.3.weight", (256, 512)),
        ("y_mu.weight", (52, 256)),
        ("y_logvar.weight", (52, 256)),
        ("x_decoder.0.weight", (256, 52)),
        ("x_decoder.3.weight", (512, 256)),
        ("x_decoder.6.weight", (256, 512)),
        ("x_decoder.9.weight", (103, 256)),
        ("y_decoder.0.weight", (256, 52)),
        ("y_decoder.3.weight", (512, 256)),
        ("y_classifier.weight", (14, 512)),
        ("instance_map.0.weight", (256, 155)),
        ("instance_map.3.weight", (256, 256)),
        ("instance_map.6.weight", (52, 256)),
    ]
    + [
        (f"{side}.{part}", shape)
        for side in ("positive", "negative")
        for part, shape in [
            ("naf.inp.weight", (256, 52)),
            ("naf.out.weight", (624, 256)),
            ("naf.cond.weight", (256, 14)),
            ("naf.to_ds.weight", (48, 12)),
            ("affine.scale.l1.weight", (52, 14)),
            ("affine.scale.l2.weight", (52, 52)),
            ("affine.scale.l3.weight", (52, 14)),
            ("affine.shift.l1.weight", (52, 14)),
            ("affine.shift.l2.weight", (52, 52)),
            ("affine.shift.l3.weight", (52, 14)),
        ]
    ],
}


def published(name, d=D, q=Q, seed=55, **options):
    torch.manual_seed(seed)
    return make_model(name, d, q, variant="published", **options)


def problem(b, d, q, seed=1):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(b, q, generator=g) < 0.4).float()
    y[:, 0] = 1.0
    return torch.rand(b, d, generator=g), y


@pytest.mark.parametrize("name", VARIANT_MODELS)
def test_parameter_count_and_layer_shapes_for_yeast(name):
    model = published(name)
    trainable = {k: tuple(p.shape) for k, p in model.named_parameters() if p.requires_grad}
    assert sum(math.prod(s) for s in trainable.values()) == PARAMETERS[name]
    assert [(k, s) for k, s in trainable.items() if k.endswith("weight") and len(s) == 2] == SHAPES[name]


def test_published_clif_frozen_inputs_identity_graph_and_init_order():
    model = published("clif")
    assert not any("label_inputs" in k or "adjacency" in k for k, _ in model.named_parameters())
    assert torch.equal(model.adjacency, torch.eye(Q))
    torch.manual_seed(55)
    assert torch.equal(model.label_inputs, torch.randn(Q, Q))  # the authors' first draw after reseeding
    assert model.bce_weight == 1.0


@pytest.mark.parametrize("name", VARIANT_MODELS)
def test_construction_draws_the_same_whatever_was_built_before(name):
    """Only the authors' init draws are taken from the RNG: the state after construction,
    and the weights, are those of seeding and drawing in their order."""
    one = published(name)
    after_one = torch.rand(4)
    torch.manual_seed(55)
    two = make_model(name, D, Q, variant="published")
    assert torch.equal(after_one, torch.rand(4))
    for (k, a), (_, b) in zip(one.state_dict().items(), two.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("name,weight", [("clif", 1.0), ("dela", float(Q)), ("paca", 2.0 * Q)])
def test_bce_weight_is_the_scale_of_the_bce_in_the_loss(name, weight):
    model = published(name)
    assert model.bce_weight == weight
    if name == "paca":
        return  # its other terms (reconstruction, KL) cannot be switched off by one option
    model = published(name, lam=0.0)
    x, y = problem(16, D, Q)
    logits, loss = model.objective(x, y)
    assert loss.item() == pytest.approx(weight * F.binary_cross_entropy_with_logits(logits, y).item(), rel=1e-5)


@pytest.mark.parametrize("name", VARIANT_MODELS)
@pytest.mark.parametrize("b,d,q", [(1, 3, 1), (7, 20, 5), (16, 600, 3)])
def test_shapes_backward_and_deterministic_eval(name, b, d, q):
    x, y = problem(b, d, q)
    model = published(name, d, q)
    assert isinstance(model, MultiLabelModel)
    if b > 1:  # BatchNorm over label nodes and batch statistics need more than one row
        logits, loss = model.objective(x, y)
        assert logits.shape == (b, q) and torch.isfinite(loss)
        loss.backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None and bool(torch.isfinite(p.grad).all()), pname
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        first = model(x)
        torch.manual_seed(2)
        assert first.shape == (b, q) and torch.equal(first, model(x))


def test_unknown_variant_and_reference_preset_options():
    with pytest.raises(ValueError, match="no variant 'nope'"):
        make_model("clif", D, Q, variant="nope")
    with pytest.raises(ValueError, match="valid variants: paper$"):
        make_model("mlp", D, Q, variant="published")
    options = with_published_variants(["mlp", "clif", "dela"], {"dela": {"variant": "paper", "lam": 0.1}})
    assert options == {"clif": {"variant": "published"}, "dela": {"variant": "paper", "lam": 0.1}}


def test_reference_preset_on_the_command_line_builds_published_models():
    from d2ace_ext import cli

    args = cli.build_parser().parse_args(
        [
            "run",
            "--dataset",
            "yeast",
            "--model",
            "clif",
            "--preset",
            "reference",
            "--folds-from",
            "published",
            "--epochs",
            "7",
        ]
    )
    args.epochs = args.epochs[0]
    protocol = cli._protocol(args, ["clif"], ["d2ace"])
    assert protocol.model_options == {"clif": {"variant": "published"}} and protocol.folds_from == "published"
    args = cli.build_parser().parse_args(
        ["run", "--dataset", "yeast", "--model", "clif", "--preset", "reference", "--model-opt", "variant=paper"]
    )
    args.epochs = args.epochs[0]
    assert cli._protocol(args, ["clif"], ["d2ace"]).model_options == {"clif": {"variant": "paper"}}
