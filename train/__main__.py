"""`python -m train`: synth, prepare, pretrain, finetune, evaluate, experiment, export, recipe.

Run from a checkout: `python -m train --help`. Each command lives in the module of its stage;
this file only registers them, wrapped so expected errors print one line and exit non-zero.
"""

from __future__ import annotations

import typer

from rtau.errors import one_line_errors
from train import evaluate, experiment, export, finetune, prepare, pretrain, recipe
from train.data import synth

app = typer.Typer(
    name="python -m train",
    help="Train, evaluate and export rtau models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("synth")(one_line_errors(synth.synth_command))
app.command("prepare")(one_line_errors(prepare.prepare_command))
app.command("pretrain")(one_line_errors(pretrain.pretrain_command))
app.command("finetune")(one_line_errors(finetune.finetune_command))
app.command("evaluate")(one_line_errors(evaluate.evaluate_command))
app.command("experiment")(one_line_errors(experiment.experiment_command))
app.command("export")(one_line_errors(export.export_command))
app.command("recipe")(one_line_errors(recipe.recipe_command))

if __name__ == "__main__":
    app()
