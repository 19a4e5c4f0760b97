"""`python -m train evaluate`: the protocol: subject-exclusive folds, whole videos, ICC / PCC / MAE.

    python -m train evaluate --store stores/disfa --checkpoint runs/fold0.pt \
        --checkpoint runs/fold1.pt --checkpoint runs/fold2.pt --out results/disfa

Folds: the store's subjects, sorted, dealt round-robin into `num_folds` folds (subject i goes to
fold i mod num_folds); `fold_videos` gives the training and test videos of a fold. Each
checkpoint is evaluated on the fold it held out (recorded by `finetune`; `--fold` overrides, -1
means every video of the store); a checkpoint that trained on a test *identity* is refused,
whatever the fold (-1 included) and whichever store it was trained on: identities are people
(`video_identities`), so another video or another store of the same person is still a leak.
The model runs over each whole test video, frame by frame in chunks of `chunk_len` with the GRU
state carried across chunks (as the live app does), from a zero state at frame 0. Metrics are
taken over the frames with a label (and a face); per fold, and pooled over all folds' frames.
Writes OUT/evaluation.json and OUT/evaluation.md (one table per AU: ICC(3,1), PCC, MAE).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.console import Console

from rtau.contract import write_json_atomic
from train.data.geometry import GeometrySource, batch_inputs
from train.data.splits import split_video_ids
from train.data.store import ClipStore, StoreError, check_alignment, sequential_clips
from train.metrics import MetricsReport, au_metrics, markdown_table
from train.model import AUModel, load_checkpoint

ALL_VIDEOS = -1
DEFAULT_CHUNK = 256
SYNTH_MANIFEST = "synth.json"
IDENTITY_KEYS = ("identity", "base_face")  # per-subject fields of synth.json naming the person


def video_identities(store: ClipStore, video_ids: Sequence[str]) -> dict[str, str]:
    """video id -> the identity (person) it shows.

    Synthetic stores: the subject's `identity` (or `base_face`) recorded in the generator's
    synth.json under the store's source root, so SYN001 of two stores made from different
    people are different identities, and two subjects of one person are the same. Other stores
    (DISFA, BP4D, folders of videos): the subject id, qualified by the dataset name.
    """
    names: dict[str, str] = {}
    roots = [Path(store.source_root)] if store.source_root else []
    roots += [Path(v.source).parent.parent for v in store.videos[:1] if v.source]
    manifest = next((r / SYNTH_MANIFEST for r in roots if (r / SYNTH_MANIFEST).is_file()), None)
    if manifest is not None:
        try:
            subjects = json.loads(manifest.read_text()).get("subjects", [])
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"{manifest}: unreadable ({exc})") from None
        for record in subjects:
            person = next((record[k] for k in IDENTITY_KEYS if record.get(k)), None)
            if person is not None:
                names[str(record.get("id"))] = f"synth:{person}"
    return {
        v: names.get(store.entry(v).subject, f"{store.dataset}:{store.entry(v).subject}")
        for v in video_ids
    }


def subject_folds(store: ClipStore, num_folds: int) -> list[list[str]]:
    """Subjects of the store dealt round-robin (sorted order) into num_folds folds."""
    subjects = sorted({v.subject for v in store.videos})
    if not 1 <= num_folds <= len(subjects):
        raise ValueError(
            f"{store.root} has {len(subjects)} subjects: cannot make {num_folds} folds"
        )
    return [subjects[i::num_folds] for i in range(num_folds)]


def fold_videos(store: ClipStore, fold: int, num_folds: int) -> tuple[list[str], list[str]]:
    """(training video ids, test video ids) of a fold; fold -1: (all videos, all videos)."""
    if fold == ALL_VIDEOS:
        return store.video_ids, store.video_ids
    folds = subject_folds(store, num_folds)
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in 0..{num_folds - 1} (or -1), got {fold}")
    held_out = set(folds[fold])
    test = [v.id for v in store.videos if v.subject in held_out]
    train = [v.id for v in store.videos if v.subject not in held_out]
    return train, test


def check_no_leak(path: str | Path, extra: dict, test_identities: dict[str, str]) -> None:
    """StoreError if the checkpoint's training identities include a test identity.

    extra: the checkpoint's `extra` (finetune records `train_identities`; a stage 1 checkpoint
    given to `--init` passes its own on as `init_identities`). A checkpoint that records no
    identities (written before they were recorded) is refused: its training set is unknown.
    """
    trained = extra.get("train_identities")
    if trained is None:
        raise StoreError(
            f"{path} does not record the identities it was trained on: retrain it with this "
            "version to evaluate it"
        )
    seen = set(trained) | set(extra.get("init_identities") or [])
    leaked = sorted({p for p in test_identities.values() if p in seen})
    if leaked:
        raise StoreError(f"{path} was trained on test identities: {', '.join(leaked)}")


@torch.no_grad()
def predict_video(
    model: AUModel, store: ClipStore, video_id: str, chunk_len: int = DEFAULT_CHUNK,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """float32[N, K] AU intensities of a whole video, the state carried across chunks from the
    zero state at frame 0, as a live face's is (a geometry model's baseline included)."""
    model.eval()
    geometry = GeometrySource.for_model(store, model) if model.cfg.uses_geometry \
        else None
    state, outputs = None, []
    for clip in sequential_clips(store, video_id, chunk_len):
        inputs = batch_inputs(model.cfg, [clip], geometry, device, warm_start=False)
        aus, state = model.forward_sequence(inputs.images, state, inputs.geometry, inputs.present)
        outputs.append(aus[0].float().cpu().numpy())
    return np.concatenate(outputs)


def evaluate_videos(
    model: AUModel, store: ClipStore, video_ids: Sequence[str], chunk_len: int = DEFAULT_CHUNK,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predictions, labels, mask) of the videos, frames concatenated: [sum N, K] each."""
    if tuple(model.cfg.au_names) != tuple(store.au_names):
        raise ValueError(
            f"the model estimates {list(model.cfg.au_names)}, the store {store.root} is labeled "
            f"with {list(store.au_names)}"
        )
    model.to(device)
    preds, labels, masks = [], [], []
    for video_id in video_ids:
        preds.append(predict_video(model, store, video_id, chunk_len, device))
        labels.append(np.asarray(store.labels(video_id)))
        masks.append(np.asarray(store.label_mask(video_id)))
    return np.concatenate(preds), np.concatenate(labels), np.concatenate(masks)


@dataclass(frozen=True)
class EvaluateConfig:
    """Settings of an evaluation; CLI flags map 1:1 to fields."""

    store: Path
    checkpoint: tuple[Path, ...]
    out: Path
    fold: int | None = None  # None: each checkpoint's own held-out fold
    num_folds: int | None = None
    chunk_len: int = DEFAULT_CHUNK
    device: str = "cpu"
    split: str = "all"  # train | test | all: videos of one split of synthetic data


def evaluate(config: EvaluateConfig, console: Console | None = None) -> dict:
    """Evaluate every checkpoint on its fold; write and return the results (JSON-able dict)."""
    console = console or Console(stderr=True)
    if not config.checkpoint:
        raise ValueError("give at least one --checkpoint")
    store = ClipStore(config.store)
    in_split = split_video_ids(store, config.split)
    folds, pooled = [], ([], [], [])
    for path in config.checkpoint:
        ckpt = load_checkpoint(path)
        check_alignment(path, ckpt.extra, store)
        fold = ckpt.extra.get("fold", ALL_VIDEOS) if config.fold is None else config.fold
        num_folds = config.num_folds or int(ckpt.extra.get("num_folds", 3))
        _, test_ids = fold_videos(store, fold, num_folds)
        if in_split is not None:
            test_ids = [v for v in test_ids if v in in_split]
            if not test_ids:
                raise StoreError(f"{store.root}: no test video of fold {fold} in {config.split}")
        check_no_leak(path, ckpt.extra, video_identities(store, test_ids))
        pred, truth, mask = evaluate_videos(
            ckpt.model, store, test_ids, config.chunk_len, config.device
        )
        report = au_metrics(pred, truth, mask, store.au_names)
        for bucket, array in zip(pooled, (pred, truth, mask), strict=True):
            bucket.append(array)
        folds.append(
            {"checkpoint": str(path), "fold": fold, "videos": test_ids, **report.to_json()}
        )
        console.print(f"{path}: fold {fold}, mean ICC {report.mean['icc']:.3f}")
    total = au_metrics(*(np.concatenate(b) for b in pooled), store.au_names)
    result = {"store": str(config.store), "folds": folds, "pooled": total.to_json()}
    write_results(Path(config.out), result, total, folds)
    return result


def write_results(out: Path, result: dict, pooled: MetricsReport, folds: list[dict]) -> None:
    """OUT/evaluation.json and OUT/evaluation.md, atomically."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "evaluation.json", result)
    parts = [f"# Evaluation on {result['store']}\n"]
    parts.append(markdown_table(pooled, f"All folds pooled ({len(folds)} checkpoints)"))
    for f in folds:
        report = MetricsReport(f["per_au"], f["mean"])
        parts.append(markdown_table(report, f"Fold {f['fold']}: {f['checkpoint']}"))
    tmp = out / ".evaluation.md.tmp"
    tmp.write_text("\n".join(parts))
    tmp.replace(out / "evaluation.md")


def evaluate_command(
    store: Annotated[Path, typer.Option(help="labeled clip store")],
    checkpoint: Annotated[list[Path], typer.Option(help="finetuned checkpoint (repeatable)")],
    out: Annotated[Path, typer.Option(help="folder for evaluation.json / evaluation.md")],
    fold: Annotated[
        int | None, typer.Option(help="test fold (-1: all videos); default: the checkpoint's")
    ] = None,
    num_folds: Annotated[
        int | None, typer.Option(help="folds; default: the checkpoint's")
    ] = None,
    chunk_len: Annotated[int, typer.Option(help="frames per forward pass")] = DEFAULT_CHUNK,
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    split: Annotated[str, typer.Option(help="train | test | all (synthetic data)")] = "all",
) -> None:
    """Evaluate checkpoints on their held-out subjects: ICC(3,1), PCC, MAE per AU."""
    config = EvaluateConfig(
        store, tuple(checkpoint), out, fold, num_folds, chunk_len, device, split
    )
    evaluate(config, Console(stderr=True))
    print((Path(out) / "evaluation.md").read_text(), flush=True)
