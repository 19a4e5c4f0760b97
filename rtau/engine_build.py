"""Contract ONNX -> TensorRT engine (full TensorRT 10/11 or TensorRT-RTX) + JSON manifest.

Run: `rtau build-engine [--model ONNX] [--out engines/NAME.engine] [--max-batch 8]
[--buckets 1,2,4,8] [--target auto|tensorrt|rtx] [--compute-capability 8.6,8.9]`, or
`build_engine(EngineBuildConfig(...))` from Python.

Both flavours build *strongly typed* networks, so the precision comes from the ONNX: an FP32
contract ONNX of a model with a CNN (one that takes the image) is first rewritten in memory to
the FP16-CNN layout (`rtau.precision`: CNN in FP16; geometry encoder, recurrent cell and state
in FP32). A geometry-only model has no CNN and is built as it is, FP32 (the manifest's
`precision` says which). The engine's I/O is the contract's: `image` uint8[B, S, S, 3] and/or
`geometry` float32[B, G] (as `rtau.inputs` lists them), `state` float32[B, H] -> `aus`
float32[B, K], `state_out` float32[B, H]. Each batch bucket gets one optimisation profile with a
fixed batch (min = opt = max) for every input, so the runtime pads a batch up to its bucket and
can capture one CUDA graph per bucket. Full TensorRT builds for the GPU it runs on and keeps a
timing cache beside the engine (`NAME.timing.cache`); TensorRT-RTX builds ahead of time without
a GPU for a list of compute capabilities (default 8.0, 8.6, 8.9, 12.0: what it targets by
default; Turing 7.5 only on request) and compiles kernels when the engine first runs, which the
backend keeps in a runtime cache (`NAME.runtime.cache`). `NAME.json` beside the engine records
the source ONNX sha256, the flavour and version, the precision, the targets, the buckets and
every I/O tensor's name, dtype and
shape; a rebuild is skipped when it matches the request and the engine file.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rtau.contract import (
    INPUT_STATE,
    OUTPUT_AUS,
    OUTPUT_STATE,
    PRECISION_FP16_CNN,
    PRECISION_FP32,
    ContractError,
    ModelContract,
    ModelManifest,
    io_spec,
    read_onnx_contract,
    sha256_file,
    write_json_atomic,
)
from rtau.engine_manifest import (
    ENGINE_FORMAT,
    FLAVOUR_EXTRAS,
    FLAVOUR_MODULES,
    FLAVOUR_PACKAGES,
    EngineManifestError,
    Flavour,
    default_engine_path,
    engine_manifest_path,
    read_engine_manifest,
    runtime_cache_path,
)
from rtau.errors import RtauError

TIMING_CACHE_SUFFIX = ".timing.cache"
TARGET_CHOICES = ("auto", "tensorrt", "rtx")
AUTO_ORDER = ("tensorrt", "rtx")
"""`--target auto`: full TensorRT when installed (datacenter GPUs), else TensorRT-RTX."""

DEFAULT_MAX_BATCH = 8
DEFAULT_BUCKETS = (1, 2, 4, 8)
RTX_DEFAULT_COMPUTE_CAPABILITIES = ("8.0", "8.6", "8.9", "12.0")
"""TensorRT-RTX's own default targets, set explicitly so the manifest states them exactly."""
CURRENT_GPU = "current"

TRT_DTYPE_NAMES = {"UINT8": "uint8", "FLOAT": "float32", "HALF": "float16", "INT8": "int8",
                   "INT32": "int32", "INT64": "int64", "BOOL": "bool", "BF16": "bfloat16"}


class EngineBuildError(RtauError):
    """The engine cannot be built (bad input, missing TensorRT, builder failure)."""


class TensorRTNotInstalled(EngineBuildError):
    """Neither the requested TensorRT flavour nor any other one imports here."""


@dataclass(frozen=True)
class EngineBuildConfig:
    """Options of `rtau build-engine`; each field is the flag of the same name.

    model: contract ONNX (None: `$RTAU_MODEL` or the shipped default model).
    out: engine path (None: `engines/<model stem>-<flavour>-<version>.engine`).
    max_batch: the largest batch one call runs; the last bucket.
    buckets: batch sizes with their own profile (and CUDA graph at run time); None = powers of
      two up to max_batch.
    target: 'auto' (full TensorRT if installed, else TensorRT-RTX), 'tensorrt' or 'rtx'.
    compute_capability: TensorRT-RTX targets such as ('8.6', '8.9'), or ('current',); empty =
      the flavour's default (RTX: 8.0, 8.6, 8.9, 12.0; full TensorRT: the GPU present).
    force: rebuild even when the manifest matches.
    """

    model: Path | None = None
    out: Path | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    buckets: tuple[int, ...] | None = None
    target: str = "auto"
    compute_capability: tuple[str, ...] = ()
    force: bool = False
    progress: bool = True


@dataclass
class BuildResult:
    """What `build_engine` did: paths, the manifest, whether it was skipped, seconds spent."""

    engine_path: Path
    manifest_path: Path
    manifest: dict
    skipped: bool
    seconds: float = 0.0
    parser_errors: list[str] = field(default_factory=list)


def flavour_installed(name: str) -> bool:
    return importlib.util.find_spec(FLAVOUR_MODULES[name]) is not None


def import_tensorrt(target: str = "auto"):
    """(Flavour, module) for `target`; TensorRTNotInstalled naming the extra to install."""
    if target not in TARGET_CHOICES:
        raise EngineBuildError(f"--target must be one of {', '.join(TARGET_CHOICES)}, "
                               f"got {target!r}")
    names = AUTO_ORDER if target == "auto" else (target,)
    problems = []
    for name in names:
        if not flavour_installed(name):
            problems.append(f"{FLAVOUR_PACKAGES[name]} is not installed")
            continue
        try:
            module = importlib.import_module(FLAVOUR_MODULES[name])
        except Exception as exc:  # a broken install raises OSError/ImportError from its loader
            reason = " ".join(str(exc).split())
            problems.append(f"{FLAVOUR_PACKAGES[name]} does not import ({reason})")
            continue
        return Flavour(name, str(module.__version__)), module
    if target == "auto":
        advice = (f"install TensorRT-RTX (pip install '{FLAVOUR_EXTRAS['rtx']}', RTX GPUs, "
                  f"builds without a GPU) or full TensorRT (pip install "
                  f"'{FLAVOUR_EXTRAS['tensorrt']}', datacenter GPUs)")
    else:
        advice = f"pip install '{FLAVOUR_EXTRAS[target]}'"
    raise TensorRTNotInstalled(f"no TensorRT to build with ({'; '.join(problems)}): {advice}")


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4); EngineBuildError for anything else."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise EngineBuildError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise EngineBuildError(f"{what} is empty")
    return values


def plan_buckets(max_batch: int, buckets: tuple[int, ...] | None) -> tuple[int, ...]:
    """Sorted, unique batch buckets ending at max_batch (added if absent)."""
    if max_batch < 1:
        raise EngineBuildError(f"--max-batch must be at least 1, got {max_batch}")
    if buckets is None:
        buckets = tuple(1 << i for i in range(max_batch.bit_length()) if 1 << i <= max_batch)
    bad = [b for b in buckets if b < 1 or b > max_batch]
    if bad:
        raise EngineBuildError(f"every bucket must lie in 1..--max-batch ({max_batch}); got {bad}")
    return tuple(sorted({*buckets, max_batch}))


def parse_compute_capabilities(text: str) -> tuple[str, ...]:
    """'8.6,8.9' -> ('8.6', '8.9'); 'current' -> ('current',); '' -> ()."""
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    if parts == (CURRENT_GPU,):
        return parts
    for part in parts:
        major, dot, minor = part.partition(".")
        if not (dot and major.isdigit() and minor.isdigit()):
            raise EngineBuildError(
                f"--compute-capability takes values like 8.6,8.9 or 'current', got {part!r}")
    return parts


def compute_capability_enum(trt, cc: str):
    """'8.6' -> trt.ComputeCapability.SM86 (TensorRT-RTX); EngineBuildError if unsupported."""
    members = trt.ComputeCapability.__members__
    key = "CURRENT" if cc == CURRENT_GPU else "SM" + cc.replace(".", "")
    if key not in members:
        known = sorted(f"{k[2:-1]}.{k[-1]}" for k in members if k.startswith("SM"))
        raise EngineBuildError(f"this TensorRT cannot target compute capability {cc} "
                               f"(it knows {', '.join(known)})")
    return members[key]


def timing_cache_path(engine_path: str | os.PathLike) -> Path:
    return Path(engine_path).with_suffix(TIMING_CACHE_SUFFIX)


def io_order(contract: ModelContract) -> tuple[str, ...]:
    """The engine's tensor names in contract order: per-face inputs, state, aus, state_out."""
    return (*contract.inputs, INPUT_STATE, OUTPUT_AUS, OUTPUT_STATE)


def expected_dtypes(contract: ModelContract) -> dict[str, str]:
    """Tensor name -> dtype name ('uint8', 'float32') the contract gives it."""
    spec = io_spec(contract)
    return {name: spec[name]["dtype"] for name in io_order(contract)}


def engine_precision(contract: ModelContract) -> str:
    """fp16-cnn for a model with a CNN (it takes the image); fp32 for a geometry-only model."""
    return PRECISION_FP16_CNN if contract.uses_image else PRECISION_FP32


def build_key(onnx_sha256: str, flavour: Flavour, buckets: tuple[int, ...],
              compute_capabilities: tuple[str, ...], precision: str = PRECISION_FP16_CNN
              ) -> dict:
    """Everything that decides the engine's bytes: equal keys mean the engine is up to date."""
    return {"format": ENGINE_FORMAT, "source_onnx_sha256": onnx_sha256, "flavour": flavour.name,
            "tensorrt_version": flavour.version, "buckets": list(buckets),
            "compute_capabilities": list(compute_capabilities), "precision": precision}


def manifest_matches(engine_path: Path, key: dict) -> bool:
    """True when the engine exists, its manifest has this build key and its sha256 matches."""
    try:
        manifest = read_engine_manifest(engine_path)
    except EngineManifestError:
        return False
    if manifest.get("build_key") != key or not engine_path.is_file():
        return False
    return sha256_file(engine_path) == manifest.get("engine_sha256")


def _engine_onnx_bytes(model_path: Path, contract: ModelContract) -> bytes:
    """The ONNX serialized in the engine's layout: FP16-CNN (converted in memory when it is
    FP32) for a model with a CNN, the file as it is for a geometry-only model (FP32)."""
    if contract.precision == PRECISION_FP16_CNN or not contract.uses_image:
        return model_path.read_bytes()
    try:
        import onnx
    except ImportError:
        raise EngineBuildError("building an engine needs the onnx package "
                               "(pip install 'rtau[rtx]' or 'rtau[trt]')") from None
    from rtau.precision import convert_cnn_to_fp16

    return convert_cnn_to_fp16(onnx.load(str(model_path))).SerializeToString()


def trt_dtype_name(dtype) -> str:
    return TRT_DTYPE_NAMES.get(str(dtype).rsplit(".", 1)[-1], str(dtype))


def network_io(network) -> dict[str, dict]:
    """Name -> {mode, dtype, shape} of the parsed network's I/O ('B' for the dynamic batch)."""
    io = {}
    tensors = [("input", network.get_input(i)) for i in range(network.num_inputs)]
    tensors += [("output", network.get_output(i)) for i in range(network.num_outputs)]
    for mode, tensor in tensors:
        shape = ["B" if d < 0 else int(d) for d in tensor.shape]
        io[tensor.name] = {"mode": mode, "dtype": trt_dtype_name(tensor.dtype), "shape": shape}
    return io


def check_network_io(io: dict[str, dict], contract: ModelContract, source: str) -> None:
    """The parsed network must expose the contract's tensors (its inputs, state, aus,
    state_out) with the contract dtypes."""
    order, dtypes = io_order(contract), expected_dtypes(contract)
    if sorted(io) != sorted(order):
        raise EngineBuildError(f"{source} parses to tensors {sorted(io)}, not the rtau step "
                               f"tensors {list(order)}")
    wrong = {n: io[n]["dtype"] for n in order if io[n]["dtype"] != dtypes[n]}
    if wrong:
        raise EngineBuildError(f"{source} parses with dtypes {wrong}; the contract needs "
                               f"{dtypes}")


def _progress_monitor(trt, progress):
    """A trt.IProgressMonitor that mirrors the builder's phases as rich progress tasks."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            # The builder reports from its own threads.
            self._lock = threading.Lock()
            self._tasks: dict[str, int] = {}
            self._depth: dict[str, int] = {}
            self._totals: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                depth = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
                self._depth[phase_name] = depth
                self._totals[phase_name] = max(int(num_steps), 1)
                self._tasks[phase_name] = progress.add_task(
                    "  " * depth + phase_name, total=self._totals[phase_name])

        def step_complete(self, phase_name, step):
            with self._lock:
                task = self._tasks.get(phase_name)
                if task is not None:
                    progress.update(task, completed=int(step) + 1)
            return True

        def phase_finish(self, phase_name):
            with self._lock:
                task = self._tasks.pop(phase_name, None)
                if task is not None and self._depth.get(phase_name, 0) > 0:
                    progress.remove_task(task)
                elif task is not None:
                    progress.update(task, completed=self._totals[phase_name])

    return Monitor()


def _current_gpu() -> tuple[str | None, str | None]:
    """(name, 'major.minor') of CUDA device 0 via cuda-python, or (None, None)."""
    if importlib.util.find_spec("cuda") is None:
        return None, None
    try:
        from cuda.bindings import runtime as cudart

        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) != 0:
            return None, None
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else props.name
        return str(name).strip("\x00 "), f"{props.major}.{props.minor}"
    except Exception:  # no driver: the bindings raise from their loader
        return None, None


def build_engine(cfg: EngineBuildConfig, console=None) -> BuildResult:
    """Build (or find up to date) the engine of `cfg`; see the module docstring."""
    from rich.console import Console

    from rtau.model_files import resolve_model

    console = console or Console(stderr=True)
    model_path = resolve_model(cfg.model)
    buckets = plan_buckets(cfg.max_batch, cfg.buckets)
    flavour, trt = import_tensorrt(cfg.target)
    try:
        contract = read_onnx_contract(model_path)
    except ContractError as exc:
        raise EngineBuildError(str(exc)) from None
    gpu_name, gpu_cc = _current_gpu()
    ccs = _targets(flavour, trt, cfg.compute_capability, gpu_cc)
    engine_path = Path(cfg.out) if cfg.out is not None else default_engine_path(model_path, flavour)
    onnx_sha = sha256_file(model_path)
    precision = engine_precision(contract)
    key = build_key(onnx_sha, flavour, buckets, ccs, precision)
    man_path = engine_manifest_path(engine_path)
    if not cfg.force and manifest_matches(engine_path, key):
        return BuildResult(engine_path, man_path, read_engine_manifest(engine_path), skipped=True)

    onnx_bytes = _engine_onnx_bytes(model_path, contract)
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        for line in errors:
            console.print(f"[red]ONNX parser:[/] {line}", highlight=False, markup=True)
        raise EngineBuildError(f"the {flavour.package} ONNX parser rejected {model_path} "
                               f"({len(errors)} error(s), printed above)")
    io = network_io(network)
    check_network_io(io, contract, str(model_path))

    config = builder.create_builder_config()
    spec = io_spec(contract)
    for b in buckets:
        profile = builder.create_optimization_profile()
        for name in (*contract.inputs, INPUT_STATE):
            shape = (b, *spec[name]["shape"][1:])
            profile.set_shape(name, shape, shape, shape)
        config.add_optimization_profile(profile)
    if flavour.name == "rtx" or cfg.compute_capability:
        if not hasattr(config, "set_compute_capability"):
            raise EngineBuildError(f"{flavour.package} {flavour.version} has no compute "
                                   "capability targets: it builds for the GPU it runs on")
        config.num_compute_capabilities = len(ccs)
        for i, cc in enumerate(ccs):
            config.set_compute_capability(compute_capability_enum(trt, cc), i)
    tcache_path = timing_cache_path(engine_path)
    if flavour.name == "tensorrt":
        # Full TensorRT times tactics on the GPU; the cache makes rebuilds fast.
        blob = tcache_path.read_bytes() if tcache_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), True)

    t0 = time.perf_counter()
    serialized = _run_builder(builder, network, config, trt, cfg.progress, console)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise EngineBuildError(f"{flavour.package} {flavour.version} could not build an engine "
                               f"from {model_path} for compute capabilities {', '.join(ccs)} "
                               "(builder errors printed above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(f".{engine_path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(memoryview(serialized))
    os.replace(tmp, engine_path)
    if flavour.name == "tensorrt":
        write_bytes_atomic(tcache_path, memoryview(config.get_timing_cache().serialize()))

    manifest = {
        "format": ENGINE_FORMAT,
        "engine_file": engine_path.name,
        "engine_sha256": sha256_file(engine_path),
        "engine_bytes": engine_path.stat().st_size,
        "source_onnx": str(model_path),
        "source_onnx_sha256": onnx_sha,
        "precision": precision,
        "tensorrt": flavour.to_json(),
        "targets": {"compute_capabilities": list(ccs), "built_on_gpu": gpu_name,
                    "built_on_compute_capability": gpu_cc},
        "max_batch": buckets[-1],
        "buckets": list(buckets),
        "profiles": [{"index": i, "batch": b} for i, b in enumerate(buckets)],
        "io": {name: io[name] for name in io_order(contract)},
        "cache": ({"kind": "timing", "file": tcache_path.name} if flavour.name == "tensorrt"
                  else {"kind": "runtime", "file": runtime_cache_path(engine_path).name}),
        "model": ModelManifest(contract, onnx_sha, model_path.name).to_json(),
        "build": {"seconds": round(seconds, 3), "built_at": datetime.now(UTC).isoformat(
            timespec="seconds"), "platform": f"{platform.system()} {platform.machine()}",
            "onnx_precision": contract.precision},
        "build_key": key,
    }
    write_json_atomic(man_path, manifest)
    return BuildResult(engine_path, man_path, manifest, skipped=False, seconds=seconds)


def _targets(flavour: Flavour, trt, requested: tuple[str, ...], gpu_cc: str | None
             ) -> tuple[str, ...]:
    """Compute capabilities the engine is built for, as 'major.minor' strings."""
    if requested == (CURRENT_GPU,) or (not requested and flavour.name == "tensorrt"):
        if gpu_cc is None:
            raise EngineBuildError(
                f"{flavour.package} must see a GPU to build for the current one and none is "
                "visible here (TensorRT-RTX builds without one: --target rtx)")
        requested = (gpu_cc,)
    if not requested:
        requested = RTX_DEFAULT_COMPUTE_CAPABILITIES
    if flavour.name == "rtx":
        for cc in requested:
            compute_capability_enum(trt, cc)
    return tuple(requested)


def _run_builder(builder, network, config, trt, show_progress: bool, console):
    """build_serialized_network under a rich progress display (builder phases as tasks)."""
    if not show_progress:
        return builder.build_serialized_network(network, config)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        config.progress_monitor = _progress_monitor(trt, progress)
        try:
            return builder.build_serialized_network(network, config)
        finally:
            config.progress_monitor = None


def write_bytes_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
