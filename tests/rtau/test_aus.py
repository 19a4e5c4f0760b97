"""The AU catalogue: canonical names, dataset sets, loose parsing."""

from __future__ import annotations

import pytest

from rtau.aus import BP4D_AUS, CATALOGUE, DISFA_AUS, au_number, describe, parse_au


def test_dataset_sets():
    assert DISFA_AUS == ("AU01", "AU02", "AU04", "AU05", "AU06", "AU09", "AU12", "AU15", "AU17",
                         "AU20", "AU25", "AU26")
    assert BP4D_AUS == ("AU06", "AU10", "AU12", "AU14", "AU17")
    assert set(DISFA_AUS) | set(BP4D_AUS) <= set(CATALOGUE)


@pytest.mark.parametrize("text", [12, "12", "au12", "AU12", " Au012 "])
def test_parse_loose_forms(text):
    assert parse_au(text) == "AU12"
    assert au_number(text) == 12


@pytest.mark.parametrize("text", ["smile", "AU", "AU1x", "0", "AU100"])
def test_parse_rejects(text):
    with pytest.raises(ValueError):
        parse_au(text)


def test_describe():
    assert describe("AU12").facs_name == "Lip corner puller"
    with pytest.raises(KeyError, match="not in the rtau AU catalogue"):
        describe("AU99")
