"""`rtau live`: not provided by this version yet."""

from __future__ import annotations

from rtau.errors import NotAvailableYet


def live() -> None:
    """Not available in this version yet."""
    raise NotAvailableYet("`rtau live` is not available in this version yet")
