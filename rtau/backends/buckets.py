"""Batch buckets: which fixed batch size runs a batch of n faces, and in which pieces.

GPU backends capture one graph per fixed batch size ("bucket"). A batch of n rows runs in the
smallest bucket that holds it, padded with rows whose outputs are dropped; a batch larger than
the largest bucket runs in pieces. Pure Python, used by the torch and TensorRT backends and
tested without a GPU.
"""

from __future__ import annotations


def choose_bucket(n: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket >= n, or the largest bucket when n exceeds them all (sorted input)."""
    for b in buckets:
        if b >= n:
            return b
    return buckets[-1]


def chunks(n: int, buckets: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(start, stop, bucket) pieces that cover rows 0..n, each to be padded up to its bucket."""
    pieces, start = [], 0
    while start < n:
        bucket = choose_bucket(n - start, buckets)
        stop = min(n, start + bucket)
        pieces.append((start, stop, bucket))
        start = stop
    return pieces

