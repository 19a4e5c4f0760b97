"""`python -m train synth`: not provided by this version yet."""

from __future__ import annotations

from rtau.errors import NotAvailableYet


def synth_command() -> None:
    """Not available in this version yet."""
    raise NotAvailableYet("`python -m train synth` is not available in this version yet")
