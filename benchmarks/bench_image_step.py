"""D2ACE's selection overhead against an image training step at the MS-COCO shape.

Synthetic labels shaped like MS-COCO's training split (n = 82,081, q = 80, cardinality
about 2.9, long-tailed label frequencies) and one fixed batch of random 448 × 448 images
on the device; ML-GCN on a ResNet trunk, Adam, bf16 autocast on CUDA, channels-last.
Per (arch, batch): the D2ACE sampler is driven through the paper's 5 warm-up epochs
with random logits (so its windows are full), then at the first selection epoch Random
and D2ACE batches train the same model in alternating timed windows. Printed per
selector: ms per step (wall, synchronised), the sampler's own ms per step (its updates
and draws plus the epoch's scoring spread over the epoch's ⌈n/b⌉ steps), and the
overhead in % of Random's step, both as measured wall difference and as accounted time.

    python benchmarks/bench_image_step.py                       # CUDA: ResNet-101 @ 128, ResNet-50 @ 64
    python benchmarks/bench_image_step.py --device cpu --quick  # tiny sizes: checks the logic on a CPU

The trunk is torchvision's ResNet when torchvision is installed, else the compact
bottleneck ResNet below (same layer counts and widths), so the script also runs where
only torch is present.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, __file__.rsplit("/benchmarks/", 1)[0])
from d2ace_ext import make_sampler  # noqa: E402
from d2ace_ext.config import D2ACEConfig  # noqa: E402
from d2ace_ext.models.base import MultiLabelModel  # noqa: E402
from d2ace_ext.models.mlgcn import MLGCN  # noqa: E402
from d2ace_ext.neighbors import random_neighbors  # noqa: E402

LAYERS = {"resnet18": (2, 2, 2, 2), "resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


class _Bottleneck(nn.Module):
    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = 4 * width
        self.convs = nn.Sequential(
            nn.Conv2d(c_in, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x):
        return torch.relu(self.convs(x) + self.skip(x))


def trunk(arch: str) -> tuple[nn.Module, int]:
    """(images -> last feature map, its channels)."""
    try:
        import torchvision

        net = getattr(torchvision.models, arch)(weights=None)
        body = nn.Sequential(*list(net.children())[:-2])
        return body, net.fc.in_features
    except ImportError:
        layers, c, blocks = LAYERS[arch], 64, []
        for stage, count in enumerate(layers):  # bottlenecks everywhere: ResNet-18 here only checks logic
            for i in range(count):
                blocks.append(_Bottleneck(c, 64 * 2**stage, 2 if i == 0 and stage > 0 else 1))
                c = 4 * 64 * 2**stage
        stem = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        return nn.Sequential(*stem, *blocks), c


class Net(MultiLabelModel):
    """ResNet trunk + ML-GCN head (the head on the trunk's map, as MLGCN(backbone='none'))."""

    def __init__(self, arch: str, labels: torch.Tensor) -> None:
        super().__init__()
        self.trunk, channels = trunk(arch)
        self.head = MLGCN(channels, labels.shape[1], labels, backbone="none")

    def forward(self, x):
        return self.head(self.trunk(x))


def coco_like_labels(n: int, q: int, cardinality: float = 2.9, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    prior = 1.0 / torch.arange(1, q + 1).double() ** 0.8
    prior = (prior * cardinality / prior.sum()).clamp(max=0.9)[torch.randperm(q, generator=g)]
    y = (torch.rand(n, q, generator=g, dtype=torch.float64) < prior).float()
    empty = y.sum(1) == 0
    y[empty, torch.randint(q, (int(empty.sum()),), generator=g)] = 1  # every image has an object
    return y


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def case(arch: str, batch: int, args, device) -> None:
    torch.manual_seed(0)
    labels = coco_like_labels(args.n, args.q).to(device)
    model = Net(arch, labels.cpu()).to(device).to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=5e-4)
    images = torch.randn(batch, 3, args.image_size, args.image_size, device=device).to(
        memory_format=torch.channels_last
    )
    config = D2ACEConfig.preset("paper").replace(
        num_epochs=20, warmup_epochs=args.warm_epochs, t_start=args.warm_epochs, t_end=args.warm_epochs + 10
    )
    neighbors = random_neighbors(args.n, config.num_neighbors)  # which neighbours does not change the cost
    samplers = {
        "random": make_sampler("random", labels, batch, seed=0, device=device),
        "d2ace": make_sampler("d2ace", labels, batch, seed=0, device=device, config=config, neighbors=neighbors),
    }
    g = torch.Generator(device=device).manual_seed(1)
    for epoch in range(args.warm_epochs):  # fill D2ACE's windows (no model needed)
        for name, sampler in samplers.items():
            sampler.set_epoch(epoch)
            for chunk in sampler:
                index = torch.as_tensor(chunk)
                sampler.update(
                    index, torch.randn(len(chunk), args.q, device=device, generator=g), labels[index.to(device)]
                )
    steps_per_epoch = -(-args.n // batch)
    iters, scoring = {}, {}
    for name, sampler in samplers.items():
        before = sampler.overhead_seconds
        sampler.set_epoch(args.warm_epochs)  # the first selection epoch
        sampler.probabilities  # noqa: B018  (prepares the epoch: D2ACE scores here)
        sync(device)
        iters[name] = iter(sampler)
        scoring[name] = sampler.overhead_seconds - before
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )

    def window(name: str, steps: int) -> tuple[float, float]:
        sampler = samplers[name]
        sync(device)
        start, before = time.perf_counter(), sampler.overhead_seconds
        for _ in range(steps):
            index = torch.as_tensor(next(iters[name]))
            y = labels[index.to(device)]
            with amp:
                logits, loss = model.objective(images[: index.numel()], y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            sampler.update(index, logits.detach().float(), y)
        sync(device)
        return (time.perf_counter() - start) / steps, (sampler.overhead_seconds - before) / steps

    for name in samplers:
        window(name, args.warm_steps)  # cudnn autotuning, allocator, first launches
    wall = {name: [] for name in samplers}
    own = {name: [] for name in samplers}
    for _ in range(args.rounds):  # alternate so clocks and heat hit both alike
        for name in samplers:
            w, o = window(name, args.steps)
            wall[name].append(w)
            own[name].append(o)
    base = statistics.median(wall["random"])
    print(
        f"\n{arch} · batch {batch} · {args.image_size}x{args.image_size} · n = {args.n:,}, q = {args.q} · "
        f"{device.type} · {args.rounds} x {args.steps} timed steps per selector"
    )
    print(f"{'selector':<8} {'ms/step':>9} {'own ms/step':>12} {'scoring ms/epoch':>17} {'wall +%':>8} {'own %':>7}")
    for name in samplers:
        step = statistics.median(wall[name])
        mine = statistics.median(own[name]) + scoring[name] / steps_per_epoch
        print(
            f"{name:<8} {1000 * step:>9.2f} {1000 * mine:>12.3f} {1000 * scoring[name]:>17.1f} "
            f"{100 * (step - base) / base:>7.2f}% {100 * mine / base:>6.3f}%"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["resnet101:128", "resnet50:64"], help="arch:batch")
    parser.add_argument("--n", type=int, default=82081)
    parser.add_argument("--q", type=int, default=80)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--warm-epochs", type=int, default=5)
    parser.add_argument("--warm-steps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a CPU logic check")
    args = parser.parse_args(argv)
    if args.quick:
        args.cases, args.n, args.image_size = ["resnet18:4"], 600, 64
        args.warm_epochs, args.warm_steps, args.steps, args.rounds = 1, 1, 2, 1
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(torch.cuda.get_device_name(), "torch", torch.__version__)
    for spec in args.cases:
        arch, batch = spec.split(":")
        case(arch, int(batch), args, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
