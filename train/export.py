def export_command() -> None:
    raise NotImplementedError
