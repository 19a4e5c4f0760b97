"""`python -m train prepare`: not provided by this version yet."""

from __future__ import annotations

from rtau.errors import NotAvailableYet


def prepare_command() -> None:
    """Not available in this version yet."""
    raise NotAvailableYet("`python -m train prepare` is not available in this version yet")
