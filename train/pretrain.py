"""`python -m train pretrain`: not provided by this version yet."""

from __future__ import annotations

from rtau.errors import NotAvailableYet


def pretrain_command() -> None:
    """Not available in this version yet."""
    raise NotAvailableYet("`python -m train pretrain` is not available in this version yet")
