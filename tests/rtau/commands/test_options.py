"""rtau/commands/options.py: a command's frozen config built from its option values by name."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, field
from pathlib import Path

import pytest

from rtau.commands.options import config_from_options


@dataclass(frozen=True)
class _Settings:
    out: Path
    size: tuple[int, int] = (640, 480)
    workers: int = 0
    limits: dict = field(default_factory=dict)  # a field no flag sets


def _command(out: Path, size: str = "320x240", workers: int = 2) -> _Settings:
    return config_from_options(_Settings, locals(),
                               size=tuple(int(v) for v in size.split("x")))


def test_each_option_lands_in_its_field_and_parsed_values_replace_the_text():
    config = _command(Path("x"), "64x48", workers=3)
    assert config == _Settings(out=Path("x"), size=(64, 48), workers=3)
    assert config.limits == {}  # no flag: the field's default
    with pytest.raises(FrozenInstanceError):
        config.workers = 4  # type: ignore[misc]


def test_an_option_without_a_field_is_refused_not_ignored():
    with pytest.raises(TypeError, match=r"_Settings has no field for option\(s\) \['verbose'\]"):
        config_from_options(_Settings, {"out": Path("x"), "verbose": True})
