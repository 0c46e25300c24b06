#!/usr/bin/env python3
"""Deterministic "unconstrained" pruning masks for hand-written .nnir examples.

Prints one mask list per request, in the canonical form that `nnirc fmt` writes (strictly
ascending, ascending runs of three or more as half-open ranges `a..b`), ready to paste after
`keep_in=` or `keep_out=`.

A mask is a mix of kept runs, dropped runs and scattered single channels, so that consumers of
one tensor keep *different* channel sets (the unconstrained case the optimizer is built for).
The result depends only on the request (consumer name, channel count, prune range, `--within`
set), never on the Python version: the generator uses its own SplitMix64 seeded from an FNV-1a
hash of the name, not the `random` module.

Usage:
    tools/gen_example_masks.py NAME CHANNELS [--prune LO HI] [--within MASK] [--max-items N]

    NAME        a label that seeds the mask, e.g. the consumer's value name `layer1.0.conv1`
    CHANNELS    the channel count C of the tensor the consumer reads (mask indices are < C)
    --prune     fraction of the channels to drop, inclusive bounds (default 0.3 0.5)
    --within    keep only channels of this mask (e.g. a consumer of a producer with keep_out
                drops at least what the producer drops); fractions are then relative to C
    --max-items longest accepted canonical list, in items (default 14)

Examples:
    tools/gen_example_masks.py layer1.0.conv1 64
    tools/gen_example_masks.py layer1.1.conv2 64 --within "[0..20, 23, 25..64]"
"""

import argparse
import sys

MASK64 = (1 << 64) - 1


def fnv1a(text: str) -> int:
    h = 0xCBF29CE484222325
    for b in text.encode():
        h ^= b
        h = (h * 0x100000001B3) & MASK64
    return h


class SplitMix64:
    def __init__(self, seed: int):
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        return self.next() % n

    def chance(self, p: float) -> bool:
        return (self.next() >> 11) / float(1 << 53) < p


def compress_runs(values):
    """`0, 1, 2, 3, 7, 9, 10` -> `0..4, 7, 9, 10` (the printer's rule)."""
    parts, i = [], 0
    while i < len(values):
        j = i + 1
        while j < len(values) and values[j] == values[j - 1] + 1:
            j += 1
        if j - i >= 3:
            parts.append(f"{values[i]}..{values[j - 1] + 1}")
        else:
            parts.extend(str(v) for v in values[i:j])
        i = j
    return parts


def parse_mask(text: str):
    out = []
    for item in text.strip().strip("[]").split(","):
        item = item.strip()
        if not item:
            continue
        if ".." in item:
            a, b = item.split("..")
            out.extend(range(int(a), int(b)))
        else:
            out.append(int(item))
    return out


def one_try(rng: SplitMix64, channels: int, allowed):
    """One candidate: segments of random length, each kept, dropped or scattered."""
    longest = max(2, channels // 6)
    keep = []
    i = 0
    prev = 99
    while i < channels:
        length = 1 + rng.below(longest)
        kind = rng.below(20)
        if kind < 9 and prev < 9:  # no two kept runs in a row: they would merge
            kind = 9 + rng.below(11)
        prev = kind
        for c in range(i, min(channels, i + length)):
            if kind < 9:  # a kept run
                keep.append(c)
            elif kind < 16:  # a dropped run
                pass
            elif rng.chance(0.5):  # scattered singles
                keep.append(c)
        i += length
    return [c for c in keep if c in allowed]


def generate(name: str, channels: int, prune_lo: float, prune_hi: float, within=None, max_items=14):
    allowed = set(within) if within is not None else set(range(channels))
    rng = SplitMix64(fnv1a(f"{name}/{channels}"))
    best = None
    for _ in range(20000):
        keep = one_try(rng, channels, allowed)
        if not keep:
            continue
        pruned = 1.0 - len(keep) / channels
        if not prune_lo <= pruned <= prune_hi:
            continue
        items = compress_runs(keep)
        singles = sum(1 for p in items if ".." not in p)
        runs = len(items) - singles
        # Prefer masks that mix runs and scattered channels and stay short.
        if channels >= 12 and (runs < 2 or singles < 1):
            continue
        if channels >= 32 and len(items) < 6:
            continue
        if len(items) <= max_items:
            return keep
        if best is None or len(items) < len(compress_runs(best)):
            best = keep
    if best is None:
        raise SystemExit(f"no mask found for {name} over {channels} channels")
    return best


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name")
    ap.add_argument("channels", type=int)
    ap.add_argument("--prune", nargs=2, type=float, default=(0.3, 0.5), metavar=("LO", "HI"))
    ap.add_argument("--within", default=None)
    ap.add_argument("--max-items", type=int, default=14)
    args = ap.parse_args(argv)
    within = parse_mask(args.within) if args.within else None
    keep = generate(args.name, args.channels, args.prune[0], args.prune[1], within, args.max_items)
    print("[" + ", ".join(compress_runs(keep)) + "]")


if __name__ == "__main__":
    main(sys.argv[1:])
