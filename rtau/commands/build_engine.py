"""`rtau build-engine`: not provided by this version yet."""

from __future__ import annotations

from rtau.errors import NotAvailableYet


def build_engine() -> None:
    """Not available in this version yet."""
    raise NotAvailableYet("`rtau build-engine` is not available in this version yet")
