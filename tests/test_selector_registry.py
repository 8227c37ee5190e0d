"""Selection by name: every registered selector drives the same sampler, reproducibly."""
import io

import pytest
import torch

from d2ace_ext import SELECTORS, SelectionBatchSampler, make_sampler, make_selector
from d2ace_ext.selectors import PRUNED, WEIGHTED, BalanceSelector

from conftest import drive, random_problem

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
    with pytest.raises(ValueError, match="valid names: random, active, recent, dihcl, balance, hard_imb, ml_unc, d2ace, infobatch"):
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
