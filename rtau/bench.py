"""Measuring rtau: the backend step, batch scaling, the sliding-window alternative, parity.

Run: `from rtau.bench import Variant, bench_variants; results, skipped =
bench_variants([Variant("onnxruntime", "onnxruntime")], model_path, batches=(1, 8))`.
This is what `rtau bench` and the scripts in `benchmarks/` call; the whole-pipeline stage
breakdown lives in `rtau.bench_pipeline`. `face_crops` (the real-looking crops) and
`unrolled_parity` (two steps unrolled side by side) also serve the export's parity gate and
the backend tests. Every timing goes through the backend's public
`step` (the call `AUEstimator` makes), on the inputs the model's contract lists: real-looking
face crops uint8[B, S, S, 3] (never zeros) and/or geometry float32[B, G] (`face_geometry`; a
geometry-only model gets no crops), with the recurrent state float32[B, H] fed back as in use,
after untimed warm-up steps. `step` returns host arrays,
so a GPU backend's time includes its copies and synchronisation: what a caller waits for.
Latencies are milliseconds; p50/p99 are percentiles of per-call samples; faces per second is
`batch * 1000 / p50_ms`.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtau.backends import Backend, BackendError, create_backend
from rtau.contract import INPUT_GEOMETRY, INPUT_IMAGE
from rtau.errors import RtauError, one_line

DEFAULT_BATCHES = (1, 8, 32)
DEFAULT_STEPS = 200
DEFAULT_WARMUP = 20
DEFAULT_WINDOWS = (8, 16, 32)
MIN_TIMED_STEPS = 50
"""Fewest timed calls a time budget may cut a measurement to (p99 needs samples)."""
DEFAULT_WINDOW_FRAMES = 20
"""Output frames timed per window length (each costs W steps)."""
CROP_POOL = 16
"""Distinct crops cycled through, so consecutive steps see different images, as in video."""
LIBRARIES = (
    "rtau", "numpy", "onnxruntime", "onnxruntime-gpu", "opencv-contrib-python",
    "opencv-python-headless", "mediapipe", "torch", "tensorrt", "tensorrt-rtx", "cuda-python",
)
NVIDIA_SMI_QUERY = "name,driver_version,compute_cap,memory.total"
LOAD_FAILURES = (BackendError, RtauError, ImportError, OSError, RuntimeError, ValueError,
                 TypeError)
"""What a backend that cannot load or run here raises; a sweep reports these and goes on."""


class BenchError(RtauError):
    """A benchmark that cannot run as asked (bad batch list, no backend loads)."""


@dataclass(frozen=True)
class Variant:
    """One thing to time: a display name, a registered backend name and its keyword options."""

    name: str
    backend: str
    kwargs: Mapping[str, object] = field(default_factory=dict)
    model: str | None = None
    """A model file of its own (an engine); None: the suite's model."""
    batches: tuple[int, ...] | None = None
    """Batch sizes of its own (CPU variants stop earlier than GPU ones); None: the suite's."""
    compare: bool = True
    """Also run the sliding-window comparison and parity on it (False for slow variants)."""


@dataclass(frozen=True)
class StepResult:
    """Timing of one variant at one batch size (milliseconds per `step` call)."""

    variant: str
    backend: str
    batch: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    steps: int
    warmup: int
    description: str

    @property
    def faces_per_s(self) -> float:
        return self.batch * 1000.0 / self.p50_ms if self.p50_ms > 0 else 0.0

    @property
    def p50_ms_per_face(self) -> float:
        return self.p50_ms / self.batch

    def to_json(self) -> dict:
        return {"backend": self.backend, "batch": self.batch, "p50_ms": self.p50_ms,
                "p99_ms": self.p99_ms, "faces_per_s": self.faces_per_s,
                "variant": self.variant, "p50_ms_per_face": self.p50_ms_per_face,
                "p99_ms_per_face": self.p99_ms / self.batch, "mean_ms": self.mean_ms,
                "steps": self.steps, "warmup": self.warmup, "description": self.description}


@dataclass(frozen=True)
class Skipped:
    """A variant (or one of its batch sizes) that could not be timed, and why (one line)."""

    variant: str
    reason: str
    batch: int | None = None

    def to_json(self) -> dict:
        return {"variant": self.variant, "batch": self.batch, "reason": self.reason}


def parse_int_list(text: str, what: str, minimum: int = 1) -> tuple[int, ...]:
    """'1,8,32' -> (1, 8, 32); BenchError naming `what` for anything else."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise BenchError(f"{what} must be comma-separated integers like 1,8,32, got {text!r}")\
            from None
    if not values or any(v < minimum for v in values):
        raise BenchError(f"{what} must be integers >= {minimum}, got {text!r}")
    return tuple(dict.fromkeys(values))


def percentiles(samples_ms: Sequence[float]) -> tuple[float, float]:
    """(p50, p99) of millisecond samples."""
    arr = np.asarray(samples_ms, np.float64)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def _base_face(size: int) -> np.ndarray:
    """A real portrait (matplotlib's public-domain Grace Hopper) or, without matplotlib, a
    smooth synthetic face-like image: uint8[size, size, 3] BGR."""
    import cv2

    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        image = cv2.imread(str(path))
    except ImportError:
        image = None
    if image is None:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        skin = 150 + 60 * np.exp(-((xx - 0.5) ** 2 / 0.08 + (yy - 0.5) ** 2 / 0.12))
        eyes = 90 * np.exp(-(((xx - 0.35) ** 2 + (yy - 0.4) ** 2) / 0.002)) \
            + 90 * np.exp(-(((xx - 0.65) ** 2 + (yy - 0.4) ** 2) / 0.002))
        mouth = 70 * np.exp(-((xx - 0.5) ** 2 / 0.01 + (yy - 0.72) ** 2 / 0.001))
        grey = np.clip(skin - eyes - mouth, 0, 255)
        return np.stack([grey * 0.8, grey * 0.9, grey], axis=-1).astype(np.uint8)
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 4, (w - side) // 2
    return cv2.resize(image[top:top + side, left:left + side], (size, size),
                      interpolation=cv2.INTER_AREA)


def face_crops(size: int, count: int, seed: int = 0) -> np.ndarray:
    """Real-looking aligned crops uint8[count, size, size, 3] BGR: a real portrait drifting in
    place (+-2 px), turning (+-3 degrees) and changing brightness (+-15%) from crop to crop,
    with sensor noise; `seed` sets the noise and the phases of the motion. The one generator of
    test and benchmark faces (benchmarks, export parity, backend tests)."""
    import cv2

    base = _base_face(size)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=4)
    out = np.empty((count, size, size, 3), np.uint8)
    for t in range(count):
        m = cv2.getRotationMatrix2D((size / 2, size / 2), 3.0 * np.sin(0.021 * t + phase[2]),
                                    1.0)
        m[:, 2] += (2.0 * np.sin(0.05 * t + phase[0]), 2.0 * np.sin(0.037 * t + phase[1]))
        warped = cv2.warpAffine(base, m, (size, size), borderMode=cv2.BORDER_REFLECT)
        gain = 1.0 + 0.15 * np.sin(0.013 * t + phase[3])
        noisy = warped.astype(np.float32) * gain + rng.normal(0, 2.0, warped.shape)
        out[t] = np.clip(noisy, 0, 255).astype(np.uint8)
    return out


def face_geometry(count: int, seed: int = 0) -> np.ndarray:
    """Geometry inputs float32[count, G] (`rtau.geometry` layout) for parity runs and benchmarks:
    a fixed random layout in the range of real features (+-0.35 crop sides, from `seed`) drifting
    smoothly by up to 0.01 (the size of an expression) with 0.001 noise. Not a face: a
    geometry encoder is dense layers, whose arithmetic does not depend on what the numbers
    mean."""
    from rtau.contract import GEOMETRY_LANDMARKS_XY, KNOWN_GEOMETRY

    size = KNOWN_GEOMETRY[GEOMETRY_LANDMARKS_XY]
    rng = np.random.default_rng(seed)
    base = rng.uniform(-0.35, 0.35, size)
    phase = rng.uniform(0, 2 * np.pi, size)
    t = np.arange(count, dtype=np.float64)[:, None]
    drift = 0.01 * np.sin(0.05 * t + phase)
    return (base + drift + rng.normal(0, 0.001, (count, size))).astype(np.float32)


def _tiled(items: np.ndarray, batch: int) -> np.ndarray:
    """items [CROP_POOL, ...] repeated to [batch + CROP_POOL, ...], contiguous."""
    reps = -(-(batch + CROP_POOL) // CROP_POOL)
    return np.ascontiguousarray(np.tile(items, (reps,) + (1,) * (items.ndim - 1))
                                [: batch + CROP_POOL])


def crop_pool(size: int, batch: int, seed: int = 0) -> np.ndarray:
    """uint8[batch + CROP_POOL, S, S, 3]: `pool[o:o + batch]` is a contiguous batch for any
    offset o < CROP_POOL, so building a step's input costs nothing inside the timed region."""
    return _tiled(face_crops(size, CROP_POOL, seed), batch)


def geometry_pool(batch: int, seed: int = 0) -> np.ndarray:
    """float32[batch + CROP_POOL, G] of `face_geometry`, sliced like `crop_pool`."""
    return _tiled(face_geometry(CROP_POOL, seed), batch)


def input_pool(contract, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{input name: pool} for the per-face inputs `contract` (a ModelContract) lists: `image`
    from `crop_pool`, `geometry` from `geometry_pool`; rows o..o + batch of each belong to the
    same step."""
    return {name: _tiled(frames, batch)
            for name, frames in face_inputs_of(contract, CROP_POOL, seed).items()}


def face_inputs_of(contract, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{input name: [count, ...]}: `face_crops` and/or `face_geometry` of `count` frames, for
    the per-face inputs `contract` lists (a ModelContract, or anything with its `uses_image`,
    `uses_geometry` and `crop_size`, such as a training ModelConfig)."""
    out = {}
    if contract.uses_image:
        out[INPUT_IMAGE] = face_crops(contract.crop_size, count, seed)
    if contract.uses_geometry:
        out[INPUT_GEOMETRY] = face_geometry(count, seed)
    return out


def step_args(inputs: Mapping[str, np.ndarray], index) -> tuple[np.ndarray | None,
                                                               np.ndarray | None]:
    """(images, geometry) for `Backend.step` from {input name: array}, rows `index` of each;
    None for an input the mapping lacks."""
    images, geometry = inputs.get(INPUT_IMAGE), inputs.get(INPUT_GEOMETRY)
    return (None if images is None else images[index],
            None if geometry is None else geometry[index])


def time_steps(backend: Backend, batch: int, steps: int, warmup: int,
               pool: Mapping[str, np.ndarray] | None = None,
               max_seconds: float = 0.0) -> np.ndarray:
    """Milliseconds of `steps` timed `backend.step` calls at `batch`, after `warmup` untimed
    ones; the state returned by each call feeds the next. pool: `input_pool` of the backend's
    contract (None: made here). float64[n]: n = steps, or fewer (but at least MIN_TIMED_STEPS)
    once the timed calls have taken `max_seconds` (0: no limit)."""
    if pool is None:
        pool = input_pool(backend.contract, batch)
    state = backend.init_state(batch)
    samples = np.empty(steps, np.float64)
    clock = time.perf_counter
    spent = 0.0
    for t in range(warmup + steps):
        offset = t % CROP_POOL
        images, geometry = step_args(pool, slice(offset, offset + batch))
        t0 = clock()
        _, state = backend.step(images, state, geometry)
        t1 = clock()
        if t >= warmup:
            samples[t - warmup] = (t1 - t0) * 1000.0
            spent += t1 - t0
            n = t - warmup + 1
            if max_seconds and spent > max_seconds and n >= MIN_TIMED_STEPS:
                return samples[:n]
    return samples


def open_variant(variant: Variant, model_path: str | os.PathLike) -> Backend:
    """Create the variant's backend; BackendError (one line) for any reason it cannot load."""
    try:
        return create_backend(variant.backend, variant.model or model_path,
                              **dict(variant.kwargs))
    except LOAD_FAILURES as exc:
        raise BackendError(f"{variant.name}: {one_line(exc)}") from None


def bench_variants(variants: Sequence[Variant], model_path: str | os.PathLike,
                   batches: Sequence[int] = DEFAULT_BATCHES, steps: int = DEFAULT_STEPS,
                   warmup: int = DEFAULT_WARMUP,
                   on_result: Callable[[StepResult], None] | None = None,
                   on_skip: Callable[[Skipped], None] | None = None,
                   keep: Callable[[Variant, Backend], None] | None = None,
                   max_seconds: float = 0.0) -> tuple[list[StepResult], list[Skipped]]:
    """Time every variant at every batch size; variants that fail are skipped with a reason.

    keep(variant, backend) is called with each loaded backend before it is closed, so callers
    can run more measurements on it (the sliding window) without loading it twice.
    max_seconds caps the timed calls of one batch size (see `time_steps`).
    """
    results: list[StepResult] = []
    skipped: list[Skipped] = []

    def skip(item: Skipped) -> None:
        skipped.append(item)
        if on_skip is not None:
            on_skip(item)

    for variant in variants:
        try:
            backend = open_variant(variant, model_path)
        except BackendError as exc:
            skip(Skipped(variant.name, one_line(exc).removeprefix(f"{variant.name}: ")))
            continue
        try:
            description = backend.describe()
            for batch in variant.batches or batches:
                try:
                    samples = time_steps(backend, batch, steps, warmup,
                                         max_seconds=max_seconds)
                except LOAD_FAILURES as exc:
                    skip(Skipped(variant.name, one_line(exc), batch))
                    continue
                p50, p99 = percentiles(samples)
                result = StepResult(variant.name, variant.backend, batch, p50, p99,
                                    float(samples.mean()), len(samples), warmup, description)
                results.append(result)
                if on_result is not None:
                    on_result(result)
            if keep is not None:
                keep(variant, backend)
        finally:
            backend.close()
    return results, skipped


class SplitStep:
    """A contract ONNX cut at its CNN boundary (`rtau.precision.META_CNN_OUTPUT`) into two
    ONNX Runtime sessions: `features(images uint8[N, S, S, 3]) -> [N, ...]` (the CNN, any
    batch) and `cell(features [B, ...], state float32[B, H], geometry float32[B, G] | None) ->
    (aus, state)` (the geometry encoder if the model has one, the recurrent cell and the head).
    What a model without state between frames could do with a window: all W frames through the
    CNN in one batch, then the cell over them. Only for models with a CNN; needs onnx."""

    def __init__(self, model_path: str | os.PathLike, providers: Sequence[str]) -> None:
        import onnx
        import onnx.utils
        import onnxruntime as ort

        from rtau.contract import INPUT_STATE, OUTPUT_AUS, OUTPUT_STATE
        from rtau.precision import META_CNN_OUTPUT

        model = onnx.load(str(model_path))
        boundary = {p.key: p.value for p in model.metadata_props}.get(META_CNN_OUTPUT)
        if boundary is None:
            raise BenchError(f"{model_path} has no '{META_CNN_OUTPUT}' entry: its CNN boundary "
                             "is unknown")
        extractor = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(model))
        options = ort.SessionOptions()
        options.log_severity_level = 3

        def session(inputs, outputs):
            part = extractor.extract_model(inputs, outputs).SerializeToString()
            return ort.InferenceSession(part, options, providers=list(providers))

        self._geometry = INPUT_GEOMETRY if INPUT_GEOMETRY in {
            i.name for i in model.graph.input} else None
        self._cnn = session([INPUT_IMAGE], [boundary])
        cell_inputs = [boundary, *([self._geometry] if self._geometry else []), INPUT_STATE]
        self._cell = session(cell_inputs, [OUTPUT_AUS, OUTPUT_STATE])
        self._names = (INPUT_IMAGE, boundary, INPUT_STATE, OUTPUT_AUS, OUTPUT_STATE)

    def features(self, images: np.ndarray) -> np.ndarray:
        image, boundary = self._names[:2]
        return self._cnn.run([boundary], {image: images})[0]

    def cell(self, features: np.ndarray, state: np.ndarray,
             geometry: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        _, boundary, state_in, aus, state_out = self._names
        feeds = {boundary: features, state_in: state}
        if self._geometry:
            feeds[self._geometry] = geometry
        return tuple(self._cell.run([aus, state_out], feeds))

    def window(self, images: np.ndarray, hidden: int,
               geometry: np.ndarray | None = None) -> np.ndarray:
        """AUs float32[K] after the W frames of `images` uint8[W, S, S, 3] (and geometry
        float32[W, G] for a model that takes it): CNN on all W at once, then W cell steps from
        the zero state float32[1, hidden]."""
        feats = self.features(images)
        state = np.zeros((1, hidden), np.float32)
        aus = None
        for i in range(feats.shape[0]):
            shape = None if geometry is None else geometry[i:i + 1]
            aus, state = self.cell(feats[i:i + 1], state, shape)
        return aus[0]


def split_step_of(backend: Backend) -> SplitStep | None:
    """The backend's model as a SplitStep on the same ONNX Runtime providers; None for other
    backends, a model without a CNN (geometry only), or where onnx is not installed."""
    import importlib.util

    providers = getattr(backend, "_providers", None)
    if backend.name != "onnxruntime" or providers is None or not backend.contract.uses_image:
        return None
    if importlib.util.find_spec("onnx") is None:
        return None
    return SplitStep(backend.model_path, providers)


def sliding_window(backend: Backend, windows: Sequence[int] = DEFAULT_WINDOWS,
                   frames: int = DEFAULT_WINDOW_FRAMES, warmup: int = 3) -> list[dict]:
    """The stateful step versus re-running the model over the last W frames for every frame.

    A model that carries no state between frames needs its W frames of context again at every
    frame. Two ways are timed, per output frame:
    - `p50_ms`/`p99_ms`: W steps from the zero state through the same backend at batch 1 (W x
      the stateful cost by construction);
    - `batched_p50_ms`/`batched_p99_ms`: the fair alternative, the W frames as one batch
      through the CNN, then the recurrent cell over them (`SplitStep`; ONNX Runtime backends
      only, None elsewhere), which profits from batching where the hardware does.
    The stateful model does one step per frame; every step gets the inputs the model's contract
    lists (a geometry-only model has no CNN to batch: batched_* stay None). Returns, per W
    (W = 1 is the stateful step), {window, steps_per_frame, p50_ms, p99_ms, x_stateful,
    batched_p50_ms, batched_p99_ms, batched_x_stateful, frames}.
    """
    hidden = backend.contract.state_size
    inputs = face_inputs_of(backend.contract,
                            max(CROP_POOL, max(windows, default=1) + frames + warmup))
    n = len(next(iter(inputs.values())))
    split = split_step_of(backend)
    rows = []
    stateful = None

    def timed(run_frame) -> tuple[float, float]:
        samples = np.empty(frames, np.float64)
        for f in range(warmup + frames):
            t0 = time.perf_counter()
            run_frame(f)
            if f >= warmup:
                samples[f - warmup] = (time.perf_counter() - t0) * 1000.0
        return percentiles(samples)

    for window in (1, *windows):
        if window == 1:
            carried = [backend.init_state(1)]

            def run_frame(f, carried=carried):
                images, geometry = step_args(inputs, slice(f % n, f % n + 1))
                _, carried[0] = backend.step(images, carried[0], geometry)
        else:
            def run_frame(f, window=window):
                state = backend.init_state(1)
                for i in range(window):
                    k = (f + i) % n
                    images, geometry = step_args(inputs, slice(k, k + 1))
                    _, state = backend.step(images, state, geometry)
        p50, p99 = timed(run_frame)
        stateful = p50 if window == 1 else stateful
        row = {"window": window, "steps_per_frame": window, "p50_ms": p50, "p99_ms": p99,
               "x_stateful": p50 / stateful, "batched_p50_ms": None, "batched_p99_ms": None,
               "batched_x_stateful": None, "frames": frames}
        if split is not None and window > 1:
            def run_batched(f, window=window):
                # in range: n >= W + frames + warmup
                images, geometry = step_args(inputs, slice(f, f + window))
                split.window(images, hidden, geometry)
            b50, b99 = timed(run_batched)
            row.update(batched_p50_ms=b50, batched_p99_ms=b99, batched_x_stateful=b50 / stateful)
        rows.append(row)
    return rows


def batch_vs_single(results: Sequence[StepResult]) -> list[dict]:
    """Per variant and batch N: one batched call for N faces versus N calls at batch 1."""
    single = {r.variant: r for r in results if r.batch == 1}
    rows = []
    for r in results:
        one = single.get(r.variant)
        if one is None or r.batch == 1:
            continue
        rows.append({"variant": r.variant, "batch": r.batch,
                     "batched_ms_per_face": r.p50_ms_per_face,
                     "single_ms_per_face": one.p50_ms,
                     "n_single_calls_ms": one.p50_ms * r.batch,
                     "batched_call_ms": r.p50_ms,
                     "speedup": one.p50_ms * r.batch / r.p50_ms})
    return rows


StepFn = Callable[..., tuple[np.ndarray, ...]]
"""(images uint8[B, S, S, 3] | None, state float32[B, H], geometry float32[B, G] | None) ->
(aus [B, K], state [B, H], *more): `Backend.step`'s signature."""
EXTRA_OUTPUTS = ("head",)
"""Names of step outputs after (aus, state), when both sides give them: the unclamped head."""


def unrolled_parity(step: StepFn, reference: StepFn, frames: np.ndarray | None, hidden: int,
                    geometry: np.ndarray | None = None) -> dict:
    """Unroll two step functions side by side from the zero state over frames
    uint8[T, B, S, S, 3] and/or geometry float32[T, B, G] (None: the model takes no such input),
    each fed its own state; the largest absolute differences over the run (errors that
    accumulate through the state show up here, not in one step).

    Returns {steps, batch, max_abs_au_error, mean_abs_au_error, max_abs_state_error} and, when
    both return a third output, max_abs_head_error. The one parity helper of rtau: benchmarks,
    the export's gate and the backend tests use it.
    """
    steps, batch = (frames if frames is not None else geometry).shape[:2]
    s_test = np.zeros((batch, hidden), np.float32)
    s_ref = s_test.copy()
    worst: dict[str, float] = {}
    au_sum = 0.0
    for t in range(steps):
        image = None if frames is None else frames[t]
        shape = None if geometry is None else geometry[t]
        test_out = step(image, s_test, shape)
        ref_out = reference(image, s_ref, shape)
        s_test, s_ref = test_out[1], ref_out[1]
        names = ("au", "state", *EXTRA_OUTPUTS)
        for name, a, b in zip(names, test_out, ref_out, strict=False):
            err = np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))
            worst[name] = max(worst.get(name, 0.0), float(err.max()))
            if name == "au":
                au_sum += float(err.mean())
    result = {"steps": int(steps), "batch": int(batch),
              "max_abs_au_error": worst.get("au", 0.0),
              "mean_abs_au_error": au_sum / max(steps, 1),
              "max_abs_state_error": worst.get("state", 0.0)}
    result.update({f"max_abs_{name}_error": worst[name] for name in EXTRA_OUTPUTS
                   if name in worst})
    return result


def shifted_batches(frames: np.ndarray, batch: int, shift: int = 37) -> np.ndarray:
    """[T, batch, ...] from per-frame inputs [T, ...] (crops uint8[T, S, S, 3] or geometry
    float32[T, G]): row r is the clip shifted by r * shift frames, so the rows of a batch
    differ."""
    return np.stack([np.roll(frames, -shift * r, axis=0) for r in range(batch)], axis=1)


def parity(backend: Backend, reference: Backend, steps: int, batch: int = 2,
           seed: int = 1) -> dict:
    """`unrolled_parity` of two backends over `steps` steps of the same inputs (face crops
    and/or geometry, as the reference's contract lists them)."""
    inputs = {name: shifted_batches(value, batch)
              for name, value in face_inputs_of(reference.contract, steps, seed).items()}
    return unrolled_parity(backend.step, reference.step, inputs.get(INPUT_IMAGE),
                           reference.contract.state_size, inputs.get(INPUT_GEOMETRY))


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[dict]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.stdout.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 4:
            gpus.append(dict(zip(("name", "driver", "compute_capability", "memory"), fields,
                                 strict=True)))
    return gpus


def machine_slug(cores: int, arch: str, gpus: Sequence[Mapping]) -> str:
    """A file-name-safe machine name: `cpu2-x86_64`, or the GPU's name (`nvidia-h100-80gb-hbm3`)."""
    if gpus:
        return re.sub(r"[^a-z0-9]+", "-", str(gpus[0]["name"]).lower()).strip("-")
    return f"cpu{cores}-{arch}"


def machine_info(threads: int = 0) -> dict:
    """What the numbers were measured on: CPU, cores, GPU and driver, OS, library versions,
    and the load average at the time (other jobs on the machine disturb timings)."""
    cores = os.cpu_count() or 0
    gpus = _gpus()
    info = {
        "name": machine_slug(cores, platform.machine(), gpus),
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "cores": cores,
        "arch": platform.machine(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "gpus": gpus,
        "libraries": {d: v for d in LIBRARIES if (v := _version(d)) is not None},
        "threads": threads or "default",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    return info


def finish_machine_info(info: dict) -> dict:
    """`info` plus what is known only after the run: the load average at the end and, if a
    torch backend ran, torch's CUDA runtime and device (torch is never imported here)."""
    info = dict(info, load_average_after=[round(x, 2) for x in os.getloadavg()])
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["cuda"] = {"torch_cuda_runtime": torch.version.cuda,
                        "device": torch.cuda.get_device_name(0)}
    return info


@dataclass(frozen=True)
class SuiteConfig:
    """What `run_suite` measures. batches: step batch sizes; steps/warmup: timed/untimed calls
    per batch; windows: sliding-window lengths compared with the stateful step (empty: skip);
    window_frames: output frames timed per window; parity_steps: unrolled steps compared with
    ONNX Runtime CPU FP32 on the same model (0: skip); source: a video for the pipeline stage
    breakdown (None: skip), played `loops` times with up to `max_faces` faces; max_seconds:
    time budget of one batch size's timed calls (0: none; at least MIN_TIMED_STEPS run)."""

    batches: tuple[int, ...] = DEFAULT_BATCHES
    steps: int = DEFAULT_STEPS
    warmup: int = DEFAULT_WARMUP
    max_seconds: float = 0.0
    windows: tuple[int, ...] = DEFAULT_WINDOWS
    window_frames: int = DEFAULT_WINDOW_FRAMES
    parity_steps: int = 0
    source: Path | None = None
    loops: int = 1
    max_faces: int = 1
    threads: int = 0
    stages_variant: str | None = None
    """Variant whose backend runs the pipeline stages; None: the first that loads."""


def model_info(path: str | os.PathLike) -> dict:
    """File name, sha256 and contract facts of the timed model (what a reader needs to know
    whether the numbers are for the shipped model)."""
    from rtau.contract import ContractError, read_onnx_contract, sha256_file
    from rtau.model_files import DEFAULT_MODEL

    path = Path(path)
    info: dict = {"file": path.name, "sha256": sha256_file(path),
                  "shipped_default": path.resolve() == DEFAULT_MODEL.resolve()}
    try:
        contract = read_onnx_contract(path)
    except ContractError:
        return info
    info.update(crop_size=contract.crop_size, state_size=contract.state_size,
                aus=contract.num_aus, model_version=contract.model_version,
                training_data=contract.training_data, precision=contract.precision,
                inputs=list(contract.inputs), geometry_size=contract.geometry_size)
    return info


def run_suite(variants: Sequence[Variant], model_path: str | os.PathLike,
              cfg: SuiteConfig = SuiteConfig(),
              on_result: Callable[[StepResult], None] | None = None,
              on_skip: Callable[[Skipped], None] | None = None,
              on_note: Callable[[str], None] | None = None) -> dict:
    """Every measurement of `cfg` for every variant; the JSON payload of `rtau bench --json`.

    {"machine", "model", "config", "results": [StepResult.to_json()], "skipped",
     "comparisons": {"batch_vs_single", "sliding_window": {variant: rows}, "parity"},
     "stages": pipeline_stages(...) of the first variant that loads, or {}}.
    """
    note = on_note or (lambda _text: None)
    machine = machine_info(cfg.threads)
    sliding: dict[str, list[dict]] = {}
    parities: dict[str, dict] = {}
    stages: dict = {}
    reference = None
    if cfg.parity_steps:
        reference = create_backend("onnxruntime", model_path, device="cpu")

    def more(variant: Variant, backend: Backend) -> None:
        nonlocal stages
        if cfg.windows and variant.compare:
            note(f"{variant.name}: stateful step vs sliding window {cfg.windows}")
            sliding[variant.name] = sliding_window(backend, cfg.windows, cfg.window_frames)
        is_reference = variant.backend == "onnxruntime" and variant.kwargs.get("device") == "cpu"
        if reference is not None and variant.compare and not is_reference:
            note(f"{variant.name}: parity with ONNX Runtime CPU over {cfg.parity_steps} steps")
            parities[variant.name] = parity(backend, reference, cfg.parity_steps)
        wanted = cfg.stages_variant in (None, variant.name)
        if cfg.source is not None and not stages and wanted:
            from rtau.bench_pipeline import pipeline_stages

            note(f"{variant.name}: pipeline stages on {cfg.source}")
            stages = {"variant": variant.name,
                      **pipeline_stages(cfg.source, backend, cfg.loops, cfg.max_faces)}

    try:
        results, skipped = bench_variants(variants, model_path, cfg.batches, cfg.steps,
                                          cfg.warmup, on_result, on_skip, more, cfg.max_seconds)
    finally:
        if reference is not None:
            reference.close()
    config = {k: (str(v) if isinstance(v, Path) else v)
              for k, v in cfg.__dict__.items()}
    config["variants"] = [{"name": v.name, "backend": v.backend, "kwargs": dict(v.kwargs),
                           "batches": list(v.batches or cfg.batches), "compare": v.compare}
                          for v in variants]
    return {"machine": finish_machine_info(machine), "model": model_info(model_path),
            "config": config, "results": [r.to_json() for r in results],
            "skipped": [s.to_json() for s in skipped],
            "comparisons": {"batch_vs_single": batch_vs_single(results),
                            "sliding_window": sliding, "parity": parities},
            "stages": stages}
