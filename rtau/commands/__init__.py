"""One module per CLI command; `rtau.cli` registers their functions on the typer app.

Modules here import only light things at the top (typer, pathlib): heavy imports (MediaPipe,
ONNX Runtime, TensorRT) happen inside the command function so `rtau --help` stays fast.
"""
