"""`python -m train`: synth, prepare, pretrain, finetune, evaluate, experiment, export.

Run from a checkout: `python -m train --help`. Each command lives in the module of its stage;
this file only registers them, wrapped so expected errors print one line and exit non-zero.
"""

from __future__ import annotations

from rtau.errors import command_app
from train import evaluate, experiment, export, finetune, prepare, pretrain
from train.data import synth

app = command_app("python -m train", "Train, evaluate and export rtau models.", {
    "synth": synth.synth_command, "prepare": prepare.prepare_command,
    "pretrain": pretrain.pretrain_command, "finetune": finetune.finetune_command,
    "evaluate": evaluate.evaluate_command, "experiment": experiment.experiment_command,
    "export": export.export_command,
})

if __name__ == "__main__":
    app()
