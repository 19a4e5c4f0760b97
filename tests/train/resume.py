"""The resume check both training stages share: a run stopped by Ctrl-C (KeyboardInterrupt in
its on_step callback) and then run again must end exactly where an uninterrupted run ends."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from train.model import Checkpoint, load_checkpoint


def interrupted_then_resumed(run: Callable, whole, out: Path, stop_at: int
                             ) -> tuple[Checkpoint, Checkpoint, int]:
    """run(whole) to the end; run a copy at `out`, interrupted after step `stop_at`, then again.

    Asserts equal weights and loss history; returns (whole's checkpoint, the resumed one, the
    step the interrupted run had saved)."""
    run(whole)

    def interrupt(step: int, _loss: float) -> None:
        if step == stop_at:
            raise KeyboardInterrupt

    parts = dataclasses.replace(whole, out=out)
    with pytest.raises(KeyboardInterrupt):
        run(parts, on_step=interrupt)
    saved = load_checkpoint(out).step
    run(parts)
    a, b = load_checkpoint(whole.out), load_checkpoint(out)
    assert a.extra["history"] == b.extra["history"]
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    return a, b, saved
