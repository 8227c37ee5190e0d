"""Argument rules that used to be missing: config field types, label formats,
precomputed neighbours, seeds, and targets that are not the sampler's labels."""

import math
import warnings

import numpy as np
import pytest
import torch

from d2ace_ext import D2ACEConfig, D2ACESampler, force_fallback
from d2ace_ext.factory import make_sampler
from d2ace_ext.selectors.d2ace import D2ACESelector

from support.problems import random_problem


@pytest.mark.parametrize(
    "field, value",
    [
        ("window_size", 2.5),
        ("window_size", True),
        ("num_neighbors", 2.5),
        ("num_neighbors", True),
        ("num_epochs", 10.5),
        ("warmup_epochs", 1.0),
        ("t_start", 30.0),
        ("quant_index_min", True),
        ("initial_pressure", math.inf),
        ("initial_pressure", math.nan),
        ("lambda1", math.nan),
        ("lambda2", "0.7"),
        ("flip_threshold", True),
        ("norm_eps", math.inf),
        ("p_beta_start", None),
        ("include_self", 1),
        ("row_normalize_correlation", "yes"),
        ("label_weights_in_phi", None),
        ("window_unit", ["epoch"]),
    ],
)
def test_every_config_field_is_checked_at_construction(field, value):
    with pytest.raises(ValueError, match=f"D2ACEConfig.{field} must be"):
        D2ACEConfig(**{field: value})


def test_config_accepts_ints_for_real_fields():
    config = D2ACEConfig(initial_pressure=50, lambda2=1, norm_eps=0)
    assert config.initial_pressure == 50


def test_complex_labels_are_rejected_by_name():
    x, y = random_problem(n=12, q=3)
    with pytest.raises(TypeError, match="labels must be real"):
        D2ACESampler(y.to(torch.complex64), 4, x)
    with pytest.raises(TypeError, match="labels must be real"):
        make_sampler("ml_unc", y.to(torch.complex64), 4)


@pytest.mark.parametrize(
    "name, path", [("d2ace", "native"), ("d2ace", "fallback"), ("ml_unc", "native"), ("infobatch", "native")]
)
def test_complex_targets_are_rejected_by_name_and_leave_the_state(name, path):
    # Complex labels and outputs were refused, complex targets recorded: 1+0j passed the
    # 0/1 check and the cast to float32 dropped the imaginary part.
    x, y = random_problem(n=24, q=4, density=0.5, seed=4)
    options = {"num_neighbors": 3} if name == "d2ace" else {}
    context = force_fallback() if path == "fallback" else torch.no_grad()
    with context:
        sampler = make_sampler(name, y, 6, x, **options)
        batch = torch.tensor(next(iter(sampler)))
        before = sampler.state_dict()["selector"]
        with pytest.raises(TypeError, match="targets must be real 0/1 labels"):
            sampler.update(batch, torch.randn(6, 4), y[batch].to(torch.complex64))
        after = sampler.state_dict()["selector"]
        tensors = {**before, **before.get("visits", {})}
        after = {**after, **after.get("visits", {})}
        assert all(torch.equal(tensors[k], after[k]) for k in tensors if isinstance(tensors[k], torch.Tensor))


def test_balance_loss_mask_rejects_complex_targets_by_name():
    x, y = random_problem(n=24, q=4, density=0.5, seed=4)
    sampler = make_sampler("balance", y, 6)
    with pytest.raises(TypeError, match="targets must be real 0/1 labels"):
        sampler.selector.loss_mask([0, 1, 2], y[:3].to(torch.complex64))


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support:UserWarning")
def test_sparse_labels_are_converted():
    x, y = random_problem(n=12, q=3, seed=1)
    for sparse in (y.to_sparse(), y.to_sparse_csr()):  # CSR support is beta in torch: it warns
        dense_sampler = D2ACESampler(y, 4, x, config=D2ACEConfig(num_neighbors=2), seed=3)
        sparse_sampler = D2ACESampler(sparse, 4, x, config=D2ACEConfig(num_neighbors=2), seed=3)
        assert torch.equal(sparse_sampler.selector.labels, y != 0)
        assert list(sparse_sampler) == list(dense_sampler)
        make_sampler("dihcl", sparse, 4)  # the baselines read labels through the same check


def test_neighbors_must_be_integer_indices_with_num_neighbors_columns():
    x, y = random_problem(n=12, q=3)
    neighbors = torch.stack([(torch.arange(12) + s) % 12 for s in (1, 2, 3)], dim=1)
    config = D2ACEConfig(num_neighbors=3)
    D2ACESelector(y, config=config, neighbors=neighbors)
    with pytest.raises(TypeError, match="neighbors must hold integer indices"):
        D2ACESelector(y, config=config, neighbors=neighbors > 4)
    with pytest.raises(ValueError, match="2 columns but num_neighbors = 3"):
        D2ACESelector(y, config=config, neighbors=neighbors[:, :2])
    with pytest.raises(ValueError, match="num_neighbors = 0"):
        D2ACESelector(y, config=D2ACEConfig(num_neighbors=0), neighbors=neighbors)


@pytest.mark.parametrize("name", ["random", "balance", "dihcl", "ml_unc", "d2ace"])
def test_one_seed_rule_for_every_selector(name):
    x, y = random_problem(n=20, q=3)
    options = {"num_neighbors": 2} if name == "d2ace" else {}
    for seed in (0, 2**63, 2**64, 2**200 + 7):
        sampler = make_sampler(name, y, 5, x, seed=seed, **options)
        assert len(list(sampler)) == 4
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="seed"):
            make_sampler(name, y, 5, x, seed=bad, **options)


def test_large_seeds_keep_their_high_bits():
    x, y = random_problem(n=40, q=3)
    batches = {seed: list(make_sampler("random", y, 8, seed=seed)) for seed in (5, 2**64 + 5, 2**128 + 5)}
    assert len({str(b) for b in batches.values()}) == 3


@pytest.mark.parametrize("path", ["native", "fallback"])
def test_targets_that_are_not_the_samplers_labels_are_rejected(path):
    x, y = random_problem(n=24, q=4, density=0.5, seed=2)
    context = force_fallback() if path == "fallback" else torch.no_grad()
    with context:
        for name in ("d2ace", "ml_unc", "hard_imb"):
            options = {} if name == "ml_unc" else {"num_neighbors": 3}
            sampler = make_sampler(name, y, 6, x, **options)
            batch = torch.tensor(next(iter(sampler)))
            before = sampler.state_dict()["selector"]
            shuffled = y[torch.roll(batch, 1)]  # the rows of other instances: an unwrapped dataset
            if torch.equal(shuffled, y[batch]):
                continue
            with pytest.raises(ValueError, match="IndexedDataset"):
                sampler.update(batch, torch.randn(6, 4), shuffled)
            after = sampler.state_dict()["selector"]
            assert all(torch.equal(before[k], after[k]) for k in before if isinstance(before[k], torch.Tensor))
            sampler.update(batch, torch.randn(6, 4), y[batch])


BAD_INDICES = [
    ([0, 5, 24], IndexError, r"indices must lie in \[0, 24\), got values from 0 to 24"),
    ([0, -1, 5], IndexError, r"indices must lie in \[0, 24\), got values from -1 to 5"),
    ([3, 5, 3], ValueError, "indices must not repeat an instance within one batch"),
]


@pytest.mark.parametrize("indices, error, message", BAD_INDICES)
@pytest.mark.parametrize(
    "name, path",
    [
        ("d2ace", "native"),  # the CPU kernel checks them
        ("d2ace", "float64"),  # the record op's PyTorch checks, before the cast
        ("d2ace", "fallback"),
        ("d2ace", "bfloat16"),  # a compact state records by the pure-PyTorch definition
        ("hard_imb", "native"),  # no fused record path: the sampler checks them
    ],
)
def test_bad_indices_are_rejected_on_every_record_path_and_leave_the_state(name, path, indices, error, message):
    # D2ACE's record path owns the index check (Selector.checks_indices), so the sampler
    # checks only their form: each path must still refuse with the same message.
    x, y = random_problem(n=24, q=4, density=0.5, seed=3)
    options = {"num_neighbors": 3} | ({"state_dtype": "bfloat16"} if path == "bfloat16" else {})
    dtype = torch.float64 if path == "float64" else torch.float32
    context = force_fallback() if path == "fallback" else torch.no_grad()
    with context:
        sampler = make_sampler(name, y, 3, x, **options)
        before = sampler.state_dict()["selector"]
        index = torch.tensor(indices)
        targets = y[index.clamp(0, 23)]
        with pytest.raises(error, match=message):
            sampler.update(index, torch.randn(3, 4, dtype=dtype), targets)
        after = sampler.state_dict()["selector"]
        assert all(torch.equal(before[k], after[k]) for k in before if isinstance(before[k], torch.Tensor))


@pytest.mark.parametrize("empty", [[], (), np.array([]), torch.tensor([])])
@pytest.mark.parametrize("name", ["d2ace", "ml_unc"])
def test_empty_indices_are_named_as_empty_not_as_a_wrong_dtype(name, empty):
    # torch.as_tensor([]) is float32: an empty batch used to be "indices must hold
    # integers, got dtype torch.float32", which sends the user after the wrong fault.
    x, y = random_problem(n=24, q=4, density=0.5, seed=3)
    sampler = make_sampler(name, y, 3, x, **({"num_neighbors": 3} if name == "d2ace" else {}))
    with pytest.raises(ValueError, match="indices must not be empty"):
        sampler.update(empty, torch.randn(0, 4), y[:0])
    with pytest.raises(ValueError, match="indices must not be empty"):
        sampler.importance_weights(empty)


def test_a_selector_without_records_pays_nothing_per_step():
    x, y = random_problem(n=24, q=4)
    sampler = make_sampler("random", y, 6)
    sampler.update([0, 0, 99], torch.full((3, 4), math.nan), y[:3])  # not even read
    assert sampler.overhead_seconds == 0.0


@pytest.mark.parametrize("argument", ["indices", "outputs", "targets"])
@pytest.mark.parametrize("form", ["sparse", "nested"])
@pytest.mark.parametrize("name", ["d2ace", "active"])
def test_sparse_and_nested_step_tensors_are_refused_by_name_and_leave_the_state(name, form, argument):
    # They used to reach PyTorch ops that have no sparse/nested kernel (NotImplementedError,
    # "NestedTensorImpl doesn't support sizes"), not naming the argument; under DDP that
    # error was raised on one rank only and broke the other ranks' next collective.
    x, y = random_problem(n=24, q=4, density=0.5, seed=3)
    sampler = make_sampler(name, y, 3, x, **({"num_neighbors": 3} if name == "d2ace" else {}))
    index = torch.tensor([0, 5, 9])
    step = {"indices": index, "outputs": torch.randn(3, 4), "targets": y[index]}
    dense = step[argument]
    step[argument] = dense.to_sparse() if form == "sparse" else torch.nested.nested_tensor(list(dense))
    before = sampler.state_dict()["selector"]
    got = "layout torch.sparse_coo" if form == "sparse" else "a nested tensor"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the nested tensor's prototype warning
        with pytest.raises(TypeError, match=f"^{argument} must be a dense tensor, got {got}"):
            sampler.update(step["indices"], step["outputs"], step["targets"])
    after = sampler.state_dict()["selector"]
    before, after = {**before, **before.get("visits", {})}, {**after, **after.get("visits", {})}
    assert all(torch.equal(before[k], after[k]) for k in before if isinstance(before[k], torch.Tensor))
