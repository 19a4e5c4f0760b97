"""tests/train needs the training extra (torch and onnx: `pip install -e ".[train]"`).
Without it these modules are left out of collection, so that `pytest` on a runtime-only
install tests the runtime; tests/train/data (generator, stores) needs neither and always runs."""

from __future__ import annotations

import importlib.util

TRAINING_EXTRA = ("torch", "onnx")

collect_ignore_glob = ([] if all(importlib.util.find_spec(m) for m in TRAINING_EXTRA)
                       else ["test_*.py"])
