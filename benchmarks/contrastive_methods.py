"""Which stage 1 objective? Every method measured by the linear probe on unseen identities.

Run (after `python -m train experiment --preset cpu-image-geometry --out runs/cpu-crop`, whose
stores it reuses; the crop model's stage 1, image inputs):

    PYTHONPATH=. python benchmarks/contrastive_methods.py --experiment runs/cpu-crop \
        [--methods none,dynamics,frame,cpc,simclr,moco] [--steps 300] [--seeds 0] \
        [--threads 2] [--out benchmarks/results]

For each method and seed: the experiment preset's stage 1 run (data, tiny model, batch, clip
length, lr; --steps), timed per step, on the training videos; then the linear probe
(train/probe.py: ridge regression on the frozen CNN features and GRU states, fitted on the
training identities' labeled frames, scored as mean ICC(3,1) on the test identities). "none" is
the untrained model (random init), the floor every objective must beat. Writes
`contrastive_methods-<machine>.json` and `.md` under --out and prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.results_io import markdown_table, write_results
from train.data.store import ClipStore
from train.experiment import PRESETS, machine
from train.model import AUModel, load_checkpoint
from train.pretrain import PretrainConfig, pretrain
from train.probe import linear_probe

METHODS = ("none", "dynamics", "frame", "cpc", "simclr", "moco")
UNTRAINED = "none"
PRESET = "cpu-image-geometry"  # the experiment preset whose crop-model stage 1 this measures
EARLIER_PRESET = "cpu"  # results that name no preset: the same settings under its earlier name
FRAME_KEY, CNN_KEY = "frame", "cnn"
MOCO_QUEUE = 1024  # a few batches of keys per video at this data size; 4096 would be stale


def stage1(method: str, seed: int, steps: int, stores: dict[str, Path], work: Path) -> dict:
    """One stage 1 run (or the untrained model) and its probe scores."""
    preset = PRESETS[PRESET]
    config = PretrainConfig(
        store=(stores["train"],), out=work / f"pre_{method}_s{seed}.pt", steps=max(1, steps),
        batch_size=preset.pretrain_batch, clip_len=preset.clip_len,
        clips_per_video=preset.clips_per_video, lr=preset.lr,
        method="dynamics" if method == UNTRAINED else method, queue_size=MOCO_QUEUE,
        warmup_steps=max(1, steps // 20), tiny=preset.tiny, norm=preset.norm, seed=seed,
        checkpoint_every=max(1, steps), device="cpu", quiet=True,
    )
    row: dict = {"method": method, "seed": seed, "steps": 0 if method == UNTRAINED else steps}
    if method == UNTRAINED:
        torch.manual_seed(seed)
        model = AUModel(config.model_config(ClipStore(stores["train"]).crop_size))
    else:
        stamps: list[float] = []
        pretrain(config, on_step=lambda _s, _v: stamps.append(time.perf_counter()))
        ckpt = load_checkpoint(config.out)
        model, history = ckpt.model, ckpt.extra["history"]
        row["s_per_step"] = float(np.median(np.diff(stamps))) if len(stamps) > 1 else None
        row["loss_first"] = history[0][1]
        row["loss_last"] = float(np.mean([v for _, v in history[-10:]]))
    scores = linear_probe(model, ClipStore(stores["train"]), ClipStore(stores["test"]))
    for name, values in scores.items():
        # an image model's frame features are its CNN's (the name the results carry)
        key = CNN_KEY if name == FRAME_KEY else name
        row.update({f"{key}_{k}": v for k, v in values.items()})
    return row


def markdown(result: dict) -> str:
    table = []
    for method in result["methods"]:
        runs = [r for r in result["runs"] if r["method"] == method]

        def spread(key: str, runs=runs) -> str:
            values = [r[key] for r in runs]
            return f"{np.mean(values):.3f} +- {np.std(values):.3f}"

        speed = [r["s_per_step"] for r in runs if r.get("s_per_step")]
        loss = [r["loss_last"] for r in runs if "loss_last" in r]
        table.append([method, f"{np.mean(speed) if speed else 0:.2f}",
                      f"{np.mean(loss) if loss else float('nan'):.2f}", spread("cnn_icc"),
                      spread("gru_icc")])
    header = ["method", "s / step", "final loss", "probe ICC, CNN features",
              "probe ICC, GRU state"]
    return "\n".join([
        "# Stage 1 objective: linear probe on unseen identities",
        "",
        f"Machine: {result['machine']['description']} (load average at the end "
        f"{result['machine']['load_average'][0]:.1f}: shared with other jobs). Preset "
        f"`{result.get('preset', EARLIER_PRESET)}` of `python -m train experiment` (tiny model, "
        "64 px crops), "
        f"{result['steps']} stage 1 steps, seeds {result['seeds']}. Probe: ridge regression on "
        "frozen features fitted on the training identities, mean ICC(3,1) on the test "
        "identities (mean +- std over seeds).",
        "",
        *markdown_table(header, table, numeric_from=1),
        "", "Losses are not comparable across methods (different candidate sets).", "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, default=Path("runs/cpu"))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=PRESETS[PRESET].pretrain_steps)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    stores = {name: args.experiment / "stores" / name for name in ("train", "test")}
    for path in stores.values():
        if not path.is_dir():
            raise SystemExit(f"{path}: missing; run `python -m train experiment --preset cpu`")
    seeds = [int(s) for s in args.seeds.split(",")]
    work = args.experiment / "contrastive_methods"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in methods:
        for seed in seeds:
            rows.append(stage1(method, seed, args.steps, stores, work))
            print(json.dumps(rows[-1]), flush=True)
    info = machine("cpu")
    result = {"machine": info, "preset": PRESET, "steps": args.steps, "seeds": seeds,
              "methods": methods, "runs": rows}
    text = markdown(result)
    write_results(args.out, f"contrastive_methods-{info['tag']}", result, text)
    print(text)


if __name__ == "__main__":
    main()
