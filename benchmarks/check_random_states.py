"""Native kernels vs the pure-PyTorch path over seeded random adversarial small states.

    python benchmarks/check_random_states.py --count 10000

Prints how many quantisation indices were compared, how many differ by one step where
the float64 weight lies within float32 rounding of a quantisation boundary (explained),
and every other difference (a defect: exit status 1). See d2ace_ext/equivalence.py.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from tqdm import tqdm

from d2ace_ext.equivalence import compare_case


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="random states (seeds start..start+count-1)")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small states: threads only add wake-up cost
    started = time.perf_counter()
    compared = explained = 0
    unexplained = []
    for seed in tqdm(range(args.start, args.start + args.count), unit="state"):
        result = compare_case(seed)
        compared += result.compared
        explained += result.explained
        unexplained += [(seed, *item) for item in result.unexplained]
    print(
        f"states {args.count} (seeds {args.start}..{args.start + args.count - 1}), "
        f"indices compared {compared}, explained one-step differences {explained}, "
        f"unexplained {len(unexplained)}, {time.perf_counter() - started:.0f} s"
    )
    for item in unexplained[:20]:
        print("UNEXPLAINED seed {} metric {} instance {}: Q native {} vs fallback {}; weights {}".format(*item))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
