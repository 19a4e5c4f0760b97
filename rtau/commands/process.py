"""`rtau process`: not provided by this version yet."""

from __future__ import annotations

from rtau.errors import NotAvailableYet


def process() -> None:
    """Not available in this version yet."""
    raise NotAvailableYet("`rtau process` is not available in this version yet")
