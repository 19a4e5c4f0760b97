"""`python -m train finetune`: not provided by this version yet."""

from __future__ import annotations

from rtau.errors import NotAvailableYet


def finetune_command() -> None:
    """Not available in this version yet."""
    raise NotAvailableYet("`python -m train finetune` is not available in this version yet")
