"""`python -m train experiment`: not provided by this version yet."""

from __future__ import annotations

from rtau.errors import NotAvailableYet


def experiment_command() -> None:
    """Not available in this version yet."""
    raise NotAvailableYet("`python -m train experiment` is not available in this version yet")
