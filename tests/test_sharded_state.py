"""Row-sharded selector state (``shard_state=True``): each rank holds its rows only, yet
with 2 and 4 gloo ranks every selector draws exactly the batches of today's replicated
run, with the same probabilities; each rank saves its own rows, which re-shard to any
number of ranks (or none) on load."""

import contextlib
import copy
import math
import os
import sys
import warnings

import pytest
import torch

from d2ace_ext import force_fallback, make_sampler, ops, record_payload
from d2ace_ext.row_shard import RowShard

from support import ddp_shard_worker as worker
from support.workers import run_worker

HERE = os.path.dirname(os.path.abspath(__file__))
WORLDS = (2, 4)
# every tensor of a selector state, by case: where the rows are (D2ACE: under "visits")
TENSOR_CASES = [case for case in worker.CASES if worker.CASES[case][0] not in ("random", "balance")]


def _run(out, world, resume=None):
    out.mkdir(exist_ok=True)
    run_worker("ddp_shard_worker", out, world, *(resume or ()), timeout=600)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{world: [rank 0's results, rank 1's, ...]}; the 4-rank run also resumes the 2-rank
    run's checkpoints."""
    base = tmp_path_factory.mktemp("sharded")
    two = _run(base / "world2", 2)
    four = _run(base / "world4", 4, resume=(base / "world2", 2))
    return {2: two, 4: four}


def _selector_rows(state: dict, case: str) -> dict:
    selector = state["selector"]
    tensors = selector["visits"] if "visits" in selector else selector
    return {k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", list(worker.CASES))
def test_sharded_ranks_draw_the_replicated_batches_with_the_same_probabilities(runs, world, case):
    ranks = runs[world]
    for rank in range(world):
        replicated, sharded = ranks[rank][case]["replicated"], ranks[rank][case]["sharded"]
        assert sharded["sharded"] == (case in TENSOR_CASES) and not replicated["sharded"]  # Random, Balance: no rows
        assert len(sharded["seen"]) == len(replicated["seen"]) >= worker.EPOCHS * 2
        assert sharded["seen"] == replicated["seen"], (case, rank)
        for mine, theirs in zip(sharded["probabilities"], replicated["probabilities"]):
            assert mine.dtype == theirs.dtype == torch.float64
            assert bool(((mine - theirs).abs() <= 2.0**-23 * theirs).all())  # float32 rounding at most


@pytest.mark.parametrize("world", WORLDS)
def test_each_rank_saves_its_rows_with_world_rank_and_layout(runs, world):
    for rank in range(world):
        state = runs[world][rank]["d2ace_paper"]["sharded"]["state"]
        assert state["selector"]["shard"] == {"n": worker.N, "world": world, "rank": rank, "layout": "strided"}
        rows = len(range(rank, worker.N, world))
        assert state["selector"]["visits"]["window"].shape == (rows, 5, worker.Q)
        assert runs[world][rank]["infobatch"]["sharded"]["state"]["selector"]["score"].shape == (rows,)
        assert "shard" not in runs[world][rank]["d2ace_paper"]["replicated"]["state"]["selector"]


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", TENSOR_CASES)
def test_the_ranks_rows_make_up_the_replicated_state(runs, world, case):
    """Every rank's saved rows, loaded together into one unsharded sampler, are the
    replicated run's state: each record reached the rank owning it. Bit for bit where
    the native kernel records (D2ACE, float32); PyTorch's vectorised sigmoid rounds an
    element by its place in the batch, so the pure-PyTorch records agree to an ulp."""
    ranks = runs[world]
    whole, _ = worker.build(case, False)
    whole.load_state_dict([ranks[r][case]["sharded"]["state"] for r in range(world)])
    expected = _selector_rows(ranks[0][case]["replicated"]["state"], case)
    got = _selector_rows(whole.state_dict(), case)
    assert got.keys() == expected.keys() and expected
    native = whole.selector.__class__.__name__ == "D2ACESelector" and ops.native_for(whole.selector.visits.window)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype
        if native or not tensor.is_floating_point():
            assert torch.equal(got[name], tensor), (case, name)
        else:
            torch.testing.assert_close(got[name], tensor, rtol=4 * 2.0**-23, atol=2.0**-24, msg=(case, name))


@pytest.mark.parametrize("case", list(worker.CASES))
def test_a_run_resumed_under_another_number_of_ranks_re_shards(runs, case):
    """The 2-rank run's mid-epoch checkpoints, every rank's given to each of 4 ranks,
    resume a sharded and a replicated 4-rank sampler to the same batches."""
    for rank in range(4):
        result = runs[4][rank][case]
        assert len(result["resumed_sharded"]) >= 3
        assert result["resumed_sharded"] == result["resumed_replicated"], (case, rank)


@pytest.mark.parametrize("world", WORLDS)
def test_a_bad_step_on_one_rank_raises_the_same_error_on_every_rank(runs, world):
    errors = [runs[world][rank]["d2ace_paper"]["errors"] for rank in range(world)]
    assert all(e == errors[0] for e in errors)
    nan, targets, repeated, none = errors[0]
    assert nan == ("ValueError", "rank 1: outputs contain NaN (logits); the sampler state was not changed")
    # instance 1 was sent by rank 0 with wrong targets and checked by its owner, rank 1
    assert (
        targets[0] == "ValueError"
        and targets[1].startswith("rank 1: targets differ")
        and "instance(s) 1:" in targets[1]
    )
    assert repeated == (
        "ValueError",
        "rank 1: indices (gathered from all ranks) must not repeat an instance within one batch",
    )
    assert none is None


def test_a_single_shard_of_another_world_is_refused_clearly(runs):
    checkpoint = runs[2][0]["d2ace_paper"]["sharded"]["checkpoint"]
    sampler, _ = worker.build("d2ace_paper", True, num_replicas=4, rank=1)  # no process group: loading is local
    before = copy.deepcopy(sampler.state_dict())
    with pytest.raises(
        ValueError,
        match=r"holds rank 0's rows of 2 ranks .*this one holds rank 1's rows of 4 ranks"
        r".*pass every rank's saved state to load_state_dict, as a list",
    ):
        sampler.load_state_dict(checkpoint)
    with pytest.raises(ValueError, match=r"must be every rank's of one run .*got rank 0 of 2 .*rank 0 of 2"):
        sampler.load_state_dict([checkpoint, checkpoint])
    other = runs[2][1]["d2ace_paper"]["sharded"]["checkpoint"]
    moved = copy.deepcopy(other)
    moved["position"] += 1
    with pytest.raises(ValueError, match="same step of one run"):
        sampler.load_state_dict([checkpoint, moved])
    after = sampler.state_dict()
    for name, tensor in before["selector"]["visits"].items():
        assert torch.equal(after["selector"]["visits"][name], tensor)


def test_a_list_of_every_ranks_rows_re_shards_without_collectives(runs):
    """Loading is local: rank r of 3 takes rows r, r + 3, ... of the 2-rank checkpoint."""
    states = [runs[2][r]["dihcl"]["sharded"]["checkpoint"] for r in range(2)]
    whole, _ = worker.build("dihcl", False)
    whole.load_state_dict(states)
    for rank in range(3):
        part, _ = worker.build("dihcl", True, num_replicas=3, rank=rank)
        part.load_state_dict(states)
        for name in ("previous", "seen", "hardness"):
            assert torch.equal(getattr(part.selector, name), getattr(whole.selector, name)[rank::3])
        assert part.state_dict()["selector"]["shard"] == {"n": worker.N, "world": 3, "rank": rank, "layout": "strided"}


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_one_rank_sharded_d2ace_scores_as_the_fused_op(preset, native):
    """With one rank the sharded path still scores in row passes (row_scoring) instead
    of the fused op (or, on the pure-PyTorch path, of scoring.score_epoch): the same
    batches, probabilities equal to float64 rounding."""
    with contextlib.nullcontext() if native else force_fallback():
        _one_rank_against_unsharded(preset)


def _one_rank_against_unsharded(preset):
    x, y = worker.problem()
    options = dict(preset=preset, **worker.D2ACE)
    fused = make_sampler("d2ace", y, 8, x, seed=1, **options)
    rows = make_sampler("d2ace", y, 8, x, seed=1, shard_state=True, **options)
    assert rows.shard_state and not fused.shard_state
    for epoch in range(worker.EPOCHS):
        for sampler in (fused, rows):
            sampler.set_epoch(epoch)
        for a, b in zip(fused, rows):
            assert a == b
            index = torch.tensor(a)
            for sampler in (fused, rows):
                sampler.update(index, worker.logits_for(index, epoch), y[index])
        torch.testing.assert_close(rows.probabilities, fused.probabilities, rtol=1e-12, atol=0)
    report_rows, report_fused = rows.selector.last_report, fused.selector.last_report
    torch.testing.assert_close(
        report_rows.uncertainty.correlation, report_fused.uncertainty.correlation, rtol=1e-9, atol=1e-12
    )
    torch.testing.assert_close(report_rows.hardness.delta, report_fused.hardness.delta, rtol=1e-9, atol=0)


def test_shard_arguments_are_checked():
    x, y = worker.problem()
    with pytest.raises(ValueError, match="num_replicas"):
        make_sampler("d2ace", y, 8, x, shard_state=True, num_replicas=35, rank=0, **worker.D2ACE)
    from d2ace_ext import D2ACEConfig, D2ACESelector, SelectionBatchSampler

    selector = D2ACESelector(y, x, D2ACEConfig(**worker.D2ACE), shard=RowShard(worker.N, 2, 1))
    with pytest.raises(ValueError, match="rank 1's rows of 2 ranks.*this sampler is rank 0 of 2"):
        SelectionBatchSampler(selector, 8, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="n = 30"):
        D2ACESelector(y, x, D2ACEConfig(**worker.D2ACE), shard=RowShard(30, 2, 1))
    with pytest.raises(TypeError, match="RowShard"):
        D2ACESelector(y, x, D2ACEConfig(**worker.D2ACE), shard=(2, 1))
    with pytest.raises(ValueError, match="rank"):
        RowShard(10, 2, 2)


def test_row_shard_layout():
    shard = RowShard(10, 4, 1)
    assert shard.rows().tolist() == [1, 5, 9] and shard.size == 3 and shard.padded_size == 3
    assert RowShard(10, 4, 3).rows().tolist() == [3, 7] and RowShard(10, 4, 3).size == 2
    index = torch.tensor([9, 4, 1, 6])
    assert shard.owner(index).tolist() == [1, 0, 1, 2] and shard.local(index).tolist() == [2, 1, 0, 1]
    assert RowShard.from_saved(shard.to_dict(), "x") == shard and RowShard.from_saved(None, "x") is None
    with pytest.raises(ValueError, match="saved 'shard'"):
        RowShard.from_saved({"n": 10, "world": 4}, "saved 'shard'")


def test_packed_records_keep_every_bit():
    index = torch.tensor([0, 2**40 + 3, 7])
    outputs = torch.tensor([[math.nan, -math.inf, 1e-45], [math.inf, -0.0, 3.25], [0.5, -7.0, 2**-126]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    payload = record_payload.pack(index, outputs, targets, torch.device("cpu"))
    assert payload.dtype == torch.uint8 and payload.shape == (3, record_payload.row_bytes(3)) == (3, 23)
    got_index, got_outputs, got_targets = record_payload.unpack(payload, 3)
    assert torch.equal(got_index, index) and torch.equal(got_targets, targets)
    assert torch.equal(got_outputs.view(torch.int32), outputs.view(torch.int32))  # bit for bit, NaN included
    single = record_payload.unpack(payload[1:2], 3)  # one row: a slice whose stride is the payload's
    assert single[0].tolist() == [2**40 + 3]


def test_the_nccl_check_skips_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: gpu_check.sh nccl runs the check itself")
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks"))
    import nccl_check

    assert nccl_check.main(["--backend", "nccl"]) == 77


def test_one_checked_loader_raises_one_error_per_fault():
    """The visit state and the baselines load through tensor_state.load_rows: the same
    fault raises the same error type and wording in both (they used to differ)."""
    from d2ace_ext.selectors import ActiveSelector
    from d2ace_ext.visits import VisitState

    _, y = worker.problem()
    visits, active = VisitState(worker.N, worker.Q, 5), ActiveSelector(y)
    cases = [
        (visits, visits.state_dict(), "visit state", "window"),
        (active, active.state_dict(), "ActiveSelector state", "mean"),
    ]
    for owner, good, what, name in cases:
        with pytest.raises(TypeError, match=f"^{what} must be a dict"):
            owner.load_state_dict(5)
        missing = dict(good)
        del missing[name]
        with pytest.raises(KeyError, match=f"{what} is missing '{name}'"):
            owner.load_state_dict(missing)
        short = {**good, name: good[name][:-1]}
        with pytest.raises(
            ValueError, match=rf"^{what} '{name}' has shape \({worker.N - 1}, .* expected \({worker.N}, "
        ):
            owner.load_state_dict(short)
        corrupt = {**good, name: good[name].clone().fill_(math.nan)}
        with pytest.raises(ValueError, match=rf"^{what} '{name}' must hold .*; the saved state is corrupt"):
            owner.load_state_dict(corrupt)


def test_lightning_warns_that_it_saves_only_rank_zeros_shard():
    pytest.importorskip("lightning")
    from d2ace_ext.integrations.lightning import SelectionCallback

    sampler, _ = worker.build("d2ace_paper", True, num_replicas=2, rank=1)  # no process group needed to start
    with pytest.warns(RuntimeWarning, match="sharded over 2 ranks .*rank 0 only"):
        SelectionCallback(sampler).on_train_start(None, None)
    replicated, _ = worker.build("d2ace_paper", False, num_replicas=2, rank=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SelectionCallback(replicated).on_train_start(None, None)


def test_loop_checkpoint_under_accelerate_warns_that_save_state_keeps_rank_zeros_shard():
    """accelerator.save_state writes registered objects (the documented
    register_for_checkpointing(tracker)) from the main process only: the other ranks'
    rows were lost silently, found only when the resume failed."""
    pytest.importorskip("accelerate")
    import accelerate  # noqa: F401  (what the tracker looks for: the Accelerate path is in use)

    from d2ace_ext.integrations.resume import LoopCheckpoint

    sampler, _ = worker.build("d2ace_paper", True, num_replicas=2, rank=1)
    with pytest.warns(RuntimeWarning, match=r"sharded over 2 ranks .*save_state writes .* main process only"):
        LoopCheckpoint(sampler)
    replicated, _ = worker.build("d2ace_paper", False, num_replicas=2, rank=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LoopCheckpoint(replicated)
