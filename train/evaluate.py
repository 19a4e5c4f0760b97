"""`python -m train evaluate`: not provided by this version yet."""

from __future__ import annotations

from rtau.errors import NotAvailableYet


def evaluate_command() -> None:
    """Not available in this version yet."""
    raise NotAvailableYet("`python -m train evaluate` is not available in this version yet")
