"""rtau training: data preparation, contrastive pretraining, sparse-label fine-tuning, export.

Run from a checkout: `python -m train --help`. Imports torch; the runtime package `rtau` never
imports this package.
"""
