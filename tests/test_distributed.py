"""Under torch.distributed every rank draws the same global batches, takes its shard,
and ends with the same state as one process that saw every record."""

import pytest
import torch

from d2ace_ext import D2ACESampler

from support import ddp_worker
from support.workers import run_worker


def test_two_gloo_ranks_shard_the_single_process_batches(tmp_path):
    run_worker("ddp_worker", tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert ranks[0]["replicas"] == ranks[1]["replicas"] == 2

    x, y = ddp_worker.problem()
    single = D2ACESampler(y, ddp_worker.BATCH, x, config=ddp_worker.CONFIG, seed=ddp_worker.SEED)
    expected = ddp_worker.drive(single, y)
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == len(expected)
    for step, global_batch in enumerate(expected):
        assert [ranks[r]["seen"][step] for r in range(2)] == [global_batch[0::2], global_batch[1::2]]
    states = [r["state"]["selector"]["visits"] for r in ranks]
    reference = single.state_dict()["selector"]["visits"]
    for name, tensor in reference.items():
        assert torch.equal(states[0][name], tensor) and torch.equal(states[1][name], tensor), name
    assert ranks[0]["state"]["plan"]["probabilities"] is not None
    assert torch.equal(ranks[0]["state"]["plan"]["probabilities"], ranks[1]["state"]["plan"]["probabilities"])


def test_a_last_batch_smaller_than_the_world_is_topped_up():
    x, y = ddp_worker.problem()
    x, y = x[:41], y[:41]  # 41 = 5 * 8 + 1
    for epoch in (0, 3):  # a shuffled and a weighted epoch
        shards = []
        for rank in range(3):
            sampler = D2ACESampler(y, 8, x, config=ddp_worker.CONFIG, seed=1, num_replicas=3, rank=rank)
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
        last = [shards[r][-1] for r in range(3)]
        assert all(len(s) == 1 for s in last)
        assert len({i for s in last for i in s}) == 3  # distinct instances
        assert all(len(b) >= 2 for r in range(3) for b in shards[r][:-1])


def test_rank_arguments_are_checked():
    x, y = ddp_worker.problem()
    with pytest.raises(ValueError, match="rank"):
        D2ACESampler(y, 8, x, config=ddp_worker.CONFIG, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        D2ACESampler(y, 8, x, config=ddp_worker.CONFIG, num_replicas=0)


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    """Every rank's results of support.ddp_small_world_worker (3 gloo ranks)."""
    out = tmp_path_factory.mktemp("small_world")
    run_worker("ddp_small_world_worker", out)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(3)]


def test_a_global_batch_smaller_than_the_world_and_a_bad_step_on_one_rank(small_world):
    ranks = small_world
    steps = len(ranks[0]["seen"])
    assert steps == 4 * 5 and all(len(r["seen"]) == steps for r in ranks)  # ceil(9 / 2) batches an epoch
    for step in range(steps):
        shards = [r["seen"][step] for r in ranks]
        assert all(len(s) >= 1 for s in shards)
        merged = [i for s in shards for i in s]
        assert len(merged) == len(set(merged)), (step, shards)  # no index twice in a global batch
    nan_errors, index_errors, none = zip(*[r["errors"] for r in ranks])
    assert len(set(nan_errors)) == 1 and nan_errors[0][0] == "ValueError" and "NaN" in nan_errors[0][1]
    assert len(set(index_errors)) == 1 and index_errors[0][0] == "IndexError"
    assert "rank 2" in index_errors[0][1] and "[0, 9)" in index_errors[0][1]
    assert none == (None, None, None)


@pytest.mark.parametrize("mode", ["replicated", "sharded"])
@pytest.mark.parametrize(
    "step, error",
    [
        ("sparse outputs", ("TypeError", "rank 0: outputs must be a dense tensor, got layout torch.sparse_coo")),
        (
            "mixed kind",
            ("ValueError", "update(kind=...) must be the same on every rank, got ['logits', 'logits', 'probs']"),
        ),
        ("unknown kind", ("ValueError", "rank 1: kind must be 'logits' or 'probs', got 'prob'")),
    ],
)
def test_a_fault_on_one_rank_is_refused_alike_on_every_rank_and_leaves_the_state(small_world, mode, step, error):
    """A rank's fault that PyTorch itself would have raised on (a sparse tensor) used to
    escape the agreement: that rank raised alone and the others' next collective broke
    (gloo: 'collective mismatch', SIGABRT). A kind that differs between ranks was
    applied by each rank to every record it received: no error, and the replicated
    ranks' states silently differed. The message arrives as raised: its closing quote
    was stripped ("got 'prob")."""
    seen = [rank["odd"][mode][step] for rank in small_world]
    for got, unchanged in seen:
        assert got is not None and got[0] == error[0] and got[1].startswith(error[1]), (mode, step, got)
        assert got == seen[0][0] and unchanged
    assert [rank["odd"]["after"] for rank in small_world] == [None, None, None]


def test_batches_smaller_than_the_world_never_repeat_an_index_without_a_process_group():
    x, y = ddp_worker.problem()
    x, y = x[:10], y[:10]
    for config in (ddp_worker.CONFIG, ddp_worker.CONFIG.replace(warmup_order="fixed")):
        for epoch in (0, 3):  # an ordered and a weighted epoch
            shards = []
            for rank in range(4):
                sampler = D2ACESampler(y, 3, x, config=config, seed=2, num_replicas=4, rank=rank)
                sampler.set_epoch(epoch)
                shards.append(list(sampler))
            for step in range(4):  # ceil(10 / 3)
                merged = [i for r in range(4) for i in shards[r][step]]
                assert all(len(shards[r][step]) >= 1 for r in range(4))
                assert len(merged) == len(set(merged)) == 4
    with pytest.raises(ValueError, match="every global batch gives each rank"):
        D2ACESampler(y, 3, x, config=ddp_worker.CONFIG, num_replicas=11, rank=0)
