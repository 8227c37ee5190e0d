"""Selection by name: every registered selector drives the same sampler, reproducibly,
and describes itself, so the harness runs any registered selector without naming it."""

import dataclasses
import io
import types

import numpy as np
import pytest
import torch

from d2ace_ext import SELECTORS, SelectionBatchSampler, cli, make_sampler, make_selector
from d2ace_ext.factory import needs_features
from d2ace_ext.harness.experiment import DISPLAY_NAMES, Protocol, RunKey
from d2ace_ext.harness.fold_run import build_sampler
from d2ace_ext.harness.image_protocol import ImageProtocol, build_image_sampler
from d2ace_ext.harness.results import ResultsStore
from d2ace_ext.harness.series import SELECTOR_COLORS, selector_color, series_name, series_order
from d2ace_ext.harness.trace import static_label_weights
from d2ace_ext.selectors import PRUNED, SHUFFLE, WEIGHTED, BalanceSelector, Selector
from d2ace_ext.selectors.registry import (
    SELECTOR_CLASSES,
    check_metadata,
    default_config,
    has_presets,
    register_selector,
    unregister_selector,
)

from support.problems import drive, random_problem

NAMES = ["random", "active", "recent", "dihcl", "balance", "hard_imb", "ml_unc", "d2ace", "infobatch"]
SHORT = {
    "random": {},
    "balance": {},
    "d2ace": dict(num_epochs=6, warmup_epochs=2, t_start=2, t_end=5, num_neighbors=3),
    "infobatch": dict(num_epochs=6),
}


def build(name, seed=0, n=50, q=4, batch=8):
    x, y = random_problem(n, q, seed=1)
    options = SHORT.get(name, dict(num_epochs=6, warmup_epochs=2))
    return make_sampler(name, y, batch, x, seed=seed, **options), y


def test_registry_names():
    assert list(SELECTORS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_name_runs_warmup_and_weighted_epochs(name):
    sampler, y = build(name)
    assert isinstance(sampler, SelectionBatchSampler)
    modes = set()
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = []
        for batch in sampler:
            assert len(batch) == len(set(batch))
            index = torch.tensor(batch)
            logits = torch.randn(len(batch), 4)
            sampler.update(index, logits, y[index])
            if name == "balance":
                mask = sampler.selector.loss_mask(index, y[index])
                assert mask.shape == (len(batch), 4) and bool((mask >= 0).all())
            batches.append(batch)
        modes.add(sampler.selector.batch_mode(epoch))
        p = sampler.probabilities
        if name == "infobatch":  # a pruned epoch is shorter: its pruned instances have P = 0
            assert len(batches) == len(sampler) <= 7 and bool((p >= 0).all())
        else:
            assert len(batches) == len(sampler) == 7 and bool((p > 0).all())
        assert float(p.sum()) == pytest.approx(1.0)
    if name == "infobatch":
        assert PRUNED in modes
    elif name not in ("random", "balance"):
        assert WEIGHTED in modes


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_batches(name):
    runs = []
    for seed in (3, 3, 4):
        sampler, y = build(name, seed=seed)
        runs.append(drive(sampler, y, 4, seed=11))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_mid_run(name):
    original, y = build(name, seed=5)
    drive(original, y, 3, seed=7)
    original.set_epoch(3)
    iterator = iter(original)
    g = torch.Generator().manual_seed(8)
    for _ in range(3):
        batch = next(iterator)
        index = torch.tensor(batch)
        original.update(index, torch.randn(len(batch), 4, generator=g), y[index])
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    resumed, _ = build(name, seed=5)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    resumed.set_epoch(3)
    # Both continue with the same model outputs: identical batches, also in later epochs,
    # which are scored from the restored selector state.
    tail = []
    for sampler in (original, resumed):
        h = torch.Generator().manual_seed(9)
        seen = []
        for epoch in (3, 4, 5):
            sampler.set_epoch(epoch)
            for batch in sampler:
                index = torch.tensor(batch)
                sampler.update(index, torch.randn(len(batch), 4, generator=h), y[index])
                if name == "balance":
                    seen.append(sampler.selector.loss_mask(index, y[index]).tolist())
                seen.append(batch)
        tail.append(seen)
    assert tail[0] == tail[1]


def test_unknown_name_lists_valid_names():
    _, y = random_problem(10, 3)
    with pytest.raises(
        ValueError, match="valid names: random, active, recent, dihcl, balance, hard_imb, ml_unc, d2ace, infobatch"
    ):
        make_selector("mlunc", y)
    with pytest.raises(TypeError, match="no options"):
        make_selector("random", y, num_epochs=3)


def test_d2ace_by_name_accepts_preset_and_config():
    x, y = random_problem(30, 3)
    selector = make_selector("d2ace", y, x, preset="reference", num_neighbors=2)
    assert selector.config.window_unit == "visit" and selector.config.num_neighbors == 2
    with pytest.raises(ValueError, match="either config"):
        make_selector("d2ace", y, x, config=selector.config, num_neighbors=3)


def test_balance_seed_follows_the_sampler():
    sampler, _ = build("balance", seed=12)
    assert isinstance(sampler.selector, BalanceSelector) and sampler.selector.seed == 12


def test_update_rejects_bad_outputs_for_a_baseline():
    sampler, y = build("ml_unc")
    sampler.set_epoch(0)
    batch = next(iter(sampler))
    index = torch.tensor(batch)
    before = sampler.selector.state_dict()["window"].clone()
    with pytest.raises(ValueError, match="NaN"):
        sampler.update(index, torch.full((len(batch), 4), float("nan")), y[index])
    with pytest.raises(ValueError, match="shape"):
        sampler.update(index, torch.zeros(len(batch), 5), y[index])
    assert torch.equal(sampler.selector.state_dict()["window"], before)


# -- what each selector says about itself ----------------------------------------------------
# The facts the harness used to spell by selector name (factory.py's seeded names, the
# two _SCHEDULED sets, needs_features, trace.py, DISPLAY_NAMES, series.py's colours and
# order, the registry's _OPTIONS), now each selector's class attributes: pinned here.
METADATA = {  # name: (display name, takes seed, K-NN, schedule fields, rank)
    "random": ("Random", False, False, (), 0),
    "active": ("Active", False, False, ("num_epochs", "warmup_epochs"), 6),
    "recent": ("Recent", False, False, ("num_epochs", "warmup_epochs"), 7),
    "dihcl": ("DIHCL", True, False, ("num_epochs", "warmup_epochs"), 3),
    "balance": ("Balance", True, False, (), 5),
    "hard_imb": ("Hard-Imb", False, True, ("num_epochs", "warmup_epochs"), 2),
    "ml_unc": ("ML-Unc", False, False, ("num_epochs", "warmup_epochs"), 1),
    "d2ace": ("D2ACE", False, True, ("num_epochs", "warmup_epochs", "t_start", "t_end"), 8),
    "infobatch": ("InfoBatch", True, False, ("num_epochs",), 4),
}


@pytest.mark.parametrize("name", list(SELECTORS))  # every registered one, a selector added later included
def test_every_registered_selector_states_its_metadata(name):
    cls = SELECTOR_CLASSES[name]
    check_metadata(cls)  # raises TypeError naming what is missing or inconsistent
    assert DISPLAY_NAMES[name] == series_name(name) == cls.display_name
    if name in METADATA:  # the paper's selectors: the facts the harness used to spell, unchanged
        stated = (cls.display_name, cls.takes_seed, cls.uses_neighbors, cls.schedule_fields, cls.display_rank)
        assert stated == METADATA[name]
        assert selector_color(name) == cls.color and cls.color.startswith("#")
        assert has_presets(name) == (name == "d2ace")


def test_series_order_and_colours_come_from_the_selectors():
    by_rank = sorted(NAMES, key=series_order)
    assert by_rank == ["random", "ml_unc", "hard_imb", "dihcl", "infobatch", "balance", "active", "recent", "d2ace"]
    assert series_order("not_registered") > series_order("d2ace", "reference")  # unranked names go last
    colours = [SELECTOR_COLORS[name] for name in NAMES]
    assert len(set(colours)) == len(NAMES) and None not in colours  # no two of the paper's selectors share one


class _NoMetadata(Selector):
    """A selector that forgets to describe itself."""

    def __init__(self, labels, *, device=None) -> None:
        self.n, self.q = labels.shape
        self.device = torch.device("cpu")

    def batch_mode(self, epoch):
        return SHUFFLE


@dataclasses.dataclass(frozen=True)
class _EpochsConfig:
    num_epochs: int = 100
    warmup_epochs: int = 10


class _UnscheduledButCountsEpochs(_NoMetadata):
    """States everything, but its config counts epochs that its schedule leaves out:
    the silent 100-epoch schedule in a shorter run that the metadata check exists for."""

    display_name, config_class, takes_seed, uses_neighbors = "Unscheduled", _EpochsConfig, True, False
    schedule_fields = ()


def test_a_selector_without_its_metadata_is_refused():
    with pytest.raises(
        TypeError,
        match="_NoMetadata does not state its metadata display_name, config_class, "
        "takes_seed, uses_neighbors, schedule_fields",
    ):
        register_selector("no_metadata", _NoMetadata)
    with pytest.raises(TypeError) as refused:
        register_selector("unscheduled", _UnscheduledButCountsEpochs)
    message = str(refused.value)
    assert "counts epochs in ['num_epochs', 'warmup_epochs'] but schedule_fields leaves them out" in message
    assert "takes_seed is True but its constructor has no seed= parameter" in message
    assert "no_metadata" not in SELECTORS and "unscheduled" not in SELECTORS
    with pytest.raises(ValueError, match="already registered"):
        register_selector("ml_unc", _UnscheduledButCountsEpochs)


@pytest.mark.parametrize("name", list(SELECTORS))
def test_every_selector_schedule_follows_the_run_length(name):
    # Before the metadata, a selector missing from a harness's _SCHEDULED kept its
    # 100-epoch schedule in runs of another length (InfoBatch in image runs did).
    x, y = random_problem(30, 3, seed=2)
    protocol = Protocol(epochs=7)
    key = RunKey.make("toy", "mlp", name, "paper", 0, protocol)
    fold = types.SimpleNamespace(train_x=x, train_y=y)
    tabular = build_sampler(key, fold, protocol, 0, "cpu").selector
    image = build_image_sampler(name, y, x, ImageProtocol(epochs=7), 0).selector
    fields = SELECTOR_CLASSES[name].schedule_fields
    if not fields:
        return
    assert tabular.config.num_epochs == image.config.num_epochs == 7
    defaults = default_config(name)
    tabular_paper = {"warmup_epochs": 10}  # of 100 epochs; other counts: the selector's own (Appendix D)
    image_paper = {"warmup_epochs": 5, "t_start": 5, "t_end": 15}  # of 20 epochs
    for field in fields[1:]:
        own = getattr(defaults, field) * 100 / defaults.num_epochs  # the default at 100 epochs
        assert getattr(tabular.config, field) == round(tabular_paper.get(field, own) * 7 / 100)
        assert getattr(image.config, field) == round(
            image_paper[field] * 7 / 20 if field in image_paper else own * 7 / 100
        )
    if name == "d2ace":  # t_start / t_end of its paper preset, 30 and 70 of 100
        assert (tabular.config.t_start, tabular.config.t_end) == (round(30 * 7 / 100), round(70 * 7 / 100))


def test_needs_features_follows_the_k_nn_metadata():
    assert [n for n in NAMES if needs_features(n)] == ["hard_imb", "d2ace"]
    assert not needs_features("d2ace", options={"num_neighbors": 0})
    assert needs_features("d2ace", "reference", {"window_size": 3})


def test_static_label_weights_are_the_selectors_own():
    y = torch.tensor([[1, 0], [1, 1], [0, 0], [0, 0], [0, 0]], dtype=torch.float32)  # 2 and 1 positives of 5
    np.testing.assert_allclose(static_label_weights("balance", y), [5 / (2 * 2), 5 / (2 * 1)])  # n / 2 min(pos, neg)
    np.testing.assert_allclose(static_label_weights("hard_imb", y), [1.0, 2.0])  # IRLbl 2 on the minority label
    assert static_label_weights("random", y) is None and static_label_weights("not_registered", y) is None


# -- adding a selector: its own file and one registry line, nothing in the harness -----------
@dataclasses.dataclass(frozen=True)
class _LatestLossConfig:
    num_epochs: int = 100
    warmup_epochs: int = 10
    temperature: float = 1.0


class _LatestLossSelector(Selector):
    """A throwaway selector, written as a new selector file would be: P ∝ exp(ℓ_i / T),
    ℓ_i the mean BCE of instance i's latest visit (1 before it)."""

    display_name = "Latest-Loss"
    config_class = _LatestLossConfig
    takes_seed = True
    uses_neighbors = False
    schedule_fields = ("num_epochs", "warmup_epochs")

    def __init__(self, labels, config=None, *, seed=0, device=None, **options):
        self.config = config if config is not None else _LatestLossConfig(**options)
        self.seed = seed
        self.n, self.q = labels.shape
        self.device = torch.device(device if device is not None else "cpu")
        self.loss = torch.ones(self.n, dtype=torch.float64)

    def batch_mode(self, epoch):
        return SHUFFLE if epoch < self.config.warmup_epochs else WEIGHTED

    def record(self, indices, probs, losses, epoch):
        self.loss[indices.cpu()] = losses.mean(1).double().cpu()

    def probabilities(self, epoch):
        return torch.softmax(self.loss / self.config.temperature, 0)


@pytest.fixture
def latest_loss():
    register_selector("latest_loss", _LatestLossSelector)  # the one registry line
    yield "latest_loss"
    unregister_selector("latest_loss")


def test_a_new_selector_runs_through_the_tabular_harness_untouched(latest_loss, tmp_path, capsys):
    from support.mulan_files import write_toy_mulan

    out = tmp_path / "res"
    argv = [
        "run",
        "--dataset",
        "toy",
        "--model",
        "mlp",
        "--selector",
        "Latest-Loss",
        "--folds",
        "2",
        "--epochs",
        "2",
        "--min-positives",
        "5",
        "--no-progress",
        "--data-dir",
        write_toy_mulan(tmp_path / "data"),
        "--results-dir",
        str(out),
        "--trace",
        "first",
    ]
    assert cli.main(argv + ["--selector-opt", "temperature=0.5"]) == 0
    assert "toy · mlp · Latest-Loss · 2 folds · 2 epochs" in capsys.readouterr().out  # no preset: it has none
    records = ResultsStore(str(out)).records().values()
    assert len(records) == 2
    for record in records:
        assert record["key"]["selector"] == latest_loss and record["key"]["preset"] == "-"
        assert record["history"]["epoch"] == [0, 1]
    # Its schedule scaled to the 2-epoch run (warm-up 10 of 100 -> 0), its seed the run's, its option applied.
    protocol = Protocol(folds=2, epochs=2, selector_options={latest_loss: {"temperature": 0.5}})
    key = RunKey.make("toy", "mlp", latest_loss, "paper", 1, protocol)
    x, y = random_problem(30, 3)
    selector = build_sampler(key, types.SimpleNamespace(train_x=x, train_y=y), protocol, 56, "cpu").selector
    assert selector.config == _LatestLossConfig(num_epochs=2, warmup_epochs=0, temperature=0.5)
    assert selector.seed == 56
    assert cli.main(argv + ["--selector-opt", "nosuch=1"]) == 2
    assert (
        "latest_loss has no such option; it takes: num_epochs, warmup_epochs, temperature, seed"
        in capsys.readouterr().err
    )
