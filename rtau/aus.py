"""The action unit catalogue: FACS names, descriptions and the AU sets of the datasets.

AU names are written `AU01`, `AU12`, ... (two digits) everywhere in rtau: in model metadata, in
CSV/JSONL column headers and in label files produced by the synthetic generator. `parse_au`
accepts the loose forms people type (`12`, `au12`, `AU12`) and returns the canonical name.
"""

from __future__ import annotations

from dataclasses import dataclass

INTENSITY_MIN = 0.0
INTENSITY_MAX = 5.0


def au_name(number: int) -> str:
    """Canonical name of AU `number`, e.g. 12 -> 'AU12'."""
    if not 0 < number < 100:
        raise ValueError(f"AU number must be between 1 and 99, got {number}")
    return f"AU{number:02d}"


@dataclass(frozen=True)
class ActionUnit:
    """One FACS action unit: number, canonical name, FACS label and what moves."""

    number: int
    facs_name: str
    description: str

    @property
    def name(self) -> str:
        return au_name(self.number)


_CATALOGUE: tuple[ActionUnit, ...] = (
    ActionUnit(1, "Inner brow raiser", "inner ends of the brows pulled up (frontalis, medial)"),
    ActionUnit(2, "Outer brow raiser", "outer ends of the brows pulled up (frontalis, lateral)"),
    ActionUnit(4, "Brow lowerer", "brows pulled down and together (corrugator, procerus)"),
    ActionUnit(5, "Upper lid raiser", "upper eyelids raised, more of the eye white shows"),
    ActionUnit(6, "Cheek raiser", "cheeks lifted, lower lids pushed up, crow's feet"),
    ActionUnit(7, "Lid tightener", "lower lids tightened and raised"),
    ActionUnit(9, "Nose wrinkler", "nose wings and upper lip pulled up, nose skin wrinkles"),
    ActionUnit(10, "Upper lip raiser", "upper lip raised (levator labii superioris)"),
    ActionUnit(12, "Lip corner puller", "lip corners pulled up and out: the smile"),
    ActionUnit(14, "Dimpler", "lip corners tightened inwards, dimples form"),
    ActionUnit(15, "Lip corner depressor", "lip corners pulled down"),
    ActionUnit(17, "Chin raiser", "chin boss and lower lip pushed up"),
    ActionUnit(20, "Lip stretcher", "lip corners pulled sideways, lips flattened"),
    ActionUnit(23, "Lip tightener", "lips tightened and narrowed"),
    ActionUnit(25, "Lips part", "lips part, the mouth opens slightly"),
    ActionUnit(26, "Jaw drop", "jaw lowered, mouth opens by the jaw"),
    ActionUnit(45, "Blink", "eyelids closed"),
)

CATALOGUE: dict[str, ActionUnit] = {au.name: au for au in _CATALOGUE}

DISFA_AUS: tuple[str, ...] = tuple(
    f"AU{n:02d}" for n in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
)
"""The 12 AUs with intensity labels in DISFA, in DISFA's order."""

BP4D_AUS: tuple[str, ...] = tuple(f"AU{n:02d}" for n in (6, 10, 12, 14, 17))
"""The 5 AUs with intensity labels in BP4D (FERA 2015 intensity subset)."""


def au_number(name: str) -> int:
    """Number of a canonical or loose AU name, e.g. 'AU12' -> 12."""
    return int(parse_au(name)[2:])


def parse_au(text: str | int) -> str:
    """Canonical AU name from `12`, `'12'`, `'au12'`, `'AU12'`, `'AU012'`; else ValueError."""
    if isinstance(text, int):
        return au_name(text)
    cleaned = text.strip().upper()
    if cleaned.startswith("AU"):
        cleaned = cleaned[2:]
    if not cleaned.isdigit():
        raise ValueError(f"not an action unit name: {text!r} (expected e.g. 'AU12' or '12')")
    return au_name(int(cleaned))


def describe(name: str) -> ActionUnit:
    """Catalogue entry of an AU; KeyError with the known names if rtau does not know it."""
    canonical = parse_au(name)
    try:
        return CATALOGUE[canonical]
    except KeyError:
        known = ", ".join(CATALOGUE)
        raise KeyError(f"{canonical} is not in the rtau AU catalogue (known: {known})") from None
