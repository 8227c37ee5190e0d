"""Under torch.distributed every rank draws the same global batches, takes its shard,
and ends with the same state as one process that saw every record."""
import os
import subprocess
import sys

import pytest
import torch

from d2ace_ext import D2ACESampler

import ddp_worker


def test_two_gloo_ranks_shard_the_single_process_batches(tmp_path):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_worker.py")
    run = subprocess.run([sys.executable, script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
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
