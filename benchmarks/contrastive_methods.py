"""Stage 1 objective: SimCLR (in-batch negatives) or MoCo (momentum encoder + queue)?

Run (after `python -m train experiment --preset cpu --out runs/cpu`, whose stores it reuses):

    PYTHONPATH=. python benchmarks/contrastive_methods.py --experiment runs/cpu \
        [--steps 400] [--seeds 0,1] [--threads 2] [--out benchmarks/results]

For each method and seed, the same stage 1 run as the experiment's preset (data, tiny model,
batch, clip length, lr, steps), timed per step; then what the representation is worth where it
matters: the frozen-feature linear probe (stage 2 `--mode linear`) and the full fine-tune from
it, both at 2% labels, evaluated (ICC(3,1), PCC, MAE) on the experiment's held-out test subjects.
Writes `contrastive_methods-<machine>.json` and `.md` under --out and prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rtau.contract import write_json_atomic
from train.data.store import ClipStore
from train.evaluate import evaluate_videos
from train.experiment import PRESETS, PRETRAINED_CNN_LR_SCALE, machine
from train.finetune import FinetuneConfig, finetune
from train.metrics import au_metrics
from train.model import load_checkpoint
from train.pretrain import PretrainConfig, pretrain

METHODS = ("simclr", "moco")
PRESET = "cpu"
LABEL_FRACTION = 0.02
MOCO_QUEUE = 1024  # a few batches of keys per video at this data size; 4096 would be stale


def stage2(stores: dict[str, Path], pre: Path, out: Path, mode: str, seed: int) -> dict:
    preset = PRESETS[PRESET]
    config = FinetuneConfig(
        store=stores["train"], out=out, init=str(pre), label_fraction=LABEL_FRACTION,
        label_seed=seed, mode=mode, steps=preset.finetune_steps,
        batch_size=preset.finetune_batch, seq_len=preset.seq_len, lr=preset.lr,
        cnn_lr_scale=PRETRAINED_CNN_LR_SCALE, warmup_steps=max(1, preset.finetune_steps // 20),
        seed=seed, checkpoint_every=preset.finetune_steps, device="cpu", quiet=True,
    )
    finetune(config)
    test = ClipStore(stores["test"])
    pred, truth, mask = evaluate_videos(load_checkpoint(out).model, test, test.video_ids)
    return au_metrics(pred, truth, mask, test.au_names).mean


def run(experiment: Path, steps: int, seeds: list[int], work: Path) -> list[dict]:
    preset = PRESETS[PRESET]
    stores = {name: experiment / "stores" / name for name in ("train", "test", "real")}
    for path in stores.values():
        if not path.is_dir():
            raise SystemExit(f"{path}: missing; run `python -m train experiment --preset cpu`")
    rows = []
    for method in METHODS:
        for seed in seeds:
            out = work / f"pre_{method}_s{seed}.pt"
            stamps: list[float] = []
            base = PretrainConfig(
                store=(stores["train"], stores["real"]), out=out, steps=steps,
                batch_size=preset.pretrain_batch, clip_len=preset.clip_len,
                max_offset=preset.max_offset, lr=preset.lr,
                warmup_steps=max(1, steps // 20), tiny=preset.tiny, seed=seed,
                checkpoint_every=steps, device="cpu", quiet=True,
            )
            config = replace(base, method=method, queue_size=MOCO_QUEUE)
            pretrain(config, on_step=lambda _s, _v, stamps=stamps: stamps.append(
                time.perf_counter()))
            history = load_checkpoint(out).extra["history"]
            row = {
                "method": method, "seed": seed, "steps": steps,
                "s_per_step": float(np.median(np.diff(stamps))) if len(stamps) > 1 else None,
                "loss_first": history[0][1], "loss_last": float(np.mean(
                    [v for _, v in history[-10:]])),
            }
            for mode in ("linear", "full"):
                mean = stage2(stores, out, work / f"ft_{method}_{mode}_s{seed}.pt", mode, seed)
                row[f"{mode}_icc"], row[f"{mode}_mae"] = mean["icc"], mean["mae"]
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def markdown(result: dict) -> str:
    lines = [
        "# Stage 1 objective: SimCLR vs MoCo",
        "",
        f"Machine: {result['machine']['description']}. Preset `{PRESET}` of `python -m train "
        f"experiment` (tiny model, 64 px crops), {result['steps']} stage 1 steps, seeds "
        f"{result['seeds']}; stage 2 at {100 * LABEL_FRACTION:g}% labels, evaluated on the "
        "held-out test subjects. Mean +- std over seeds (one seed: no spread).",
        "",
        "| method | s / step | final loss | linear probe ICC | fine-tuned ICC | fine-tuned MAE |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method in METHODS:
        rows = [r for r in result["runs"] if r["method"] == method]

        def cell(key: str, rows=rows) -> str:
            values = [r[key] for r in rows]
            return f"{np.mean(values):.3f} +- {np.std(values):.3f}"

        lines.append(f"| {method} | {np.mean([r['s_per_step'] for r in rows]):.2f} | "
                     f"{np.mean([r['loss_last'] for r in rows]):.2f} | {cell('linear_icc')} | "
                     f"{cell('full_icc')} | {cell('full_mae')} |")
    lines += ["", "Losses are not comparable across methods (2B - 2 in-batch negatives vs "
              f"{MOCO_QUEUE} queued keys).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, default=Path("runs/cpu"))
    parser.add_argument("--steps", type=int, default=PRESETS[PRESET].pretrain_steps)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = args.experiment / "contrastive_methods"
    work.mkdir(parents=True, exist_ok=True)
    rows = run(args.experiment, args.steps, seeds, work)
    info = machine("cpu")
    result = {"machine": info, "steps": args.steps, "seeds": seeds, "runs": rows}
    name = f"contrastive_methods-cpu{info['cpu_cores']}"
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / f"{name}.json", result)
    text = markdown(result)
    (args.out / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
