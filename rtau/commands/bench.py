"""`rtau bench`: not provided by this version yet."""

from __future__ import annotations

from rtau.errors import NotAvailableYet


def bench() -> None:
    """Not available in this version yet."""
    raise NotAvailableYet("`rtau bench` is not available in this version yet")
