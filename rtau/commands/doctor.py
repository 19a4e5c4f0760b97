"""`rtau doctor`: placeholder replaced below."""
def doctor() -> None:
    """Report the environment."""
