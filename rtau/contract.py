"""The stateful step contract shared by the exporter, the engine builder and every backend.

One timestep of an rtau model maps `(image, geometry, state) -> (aus, state_out)`:

| tensor      | shape     | dtype   | meaning                                           |
|-------------|-----------|---------|---------------------------------------------------|
| `image`     | B x S x S x 3 | uint8 | aligned BGR face crops from `rtau.align`         |
| `geometry`  | B x G     | float32 | face landmarks in the crop frame (`rtau.geometry`) |
| `state`     | B x H     | float32 | recurrent state, zeros for a new face             |
| `aus`       | B x K     | float32 | AU intensities 0..5, in the order of `au_names`   |
| `state_out` | B x H     | float32 | next recurrent state                              |

The crops must be made the way the model's training crops were: `rtau.alignment` names the
alignment of `rtau.align` (`rigid/2`: eye corners + philtrum top, stabilised over time in
video; `rigid/1` the same points unfiltered). It came with contract
version 2, so an older rtau refuses such a model instead of feeding it crops of the wrong
alignment; a version-1 model (the shipped default) names none and was trained on
`five-point/1` crops.

`image` and `geometry` are each optional: `rtau.inputs` lists the ones a model takes (at least
one; a model without the entry takes the image alone). `geometry` came with contract version 3;
a model that takes only the image is still written as version 2, so an older rtau reads it.
`rtau.geometry` names the feature layout (`landmarks-xy/1`, G = 956).

An ONNX model carries the contract in its metadata (keys below, all strings); a JSON manifest
beside it (`model.onnx` -> `model.json`) repeats them and adds the sha256 of the ONNX file,
which a file cannot carry about itself. Engines get a manifest of their own (see
`rtau.engine_build`) that embeds this one.

This module imports no inference library: reading the metadata of an ONNX file goes through
`onnxruntime` lazily so that `rtau.engine_build` can use the manifest helpers alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

CONTRACT_NAME = "rtau.step"
CONTRACT_VERSION = 3
READABLE_CONTRACT_VERSIONS = (1, 2, 3)
"""Version 1 has no alignment entry and means `five-point/1` alignment; version 2 has no inputs
entry and means the image alone."""
IMAGE_ONLY_CONTRACT_VERSION = 2
ALIGNMENT_FIVE_POINT = "five-point/1"  # rtau.align.FIVE_POINT; not imported: align needs cv2
ALIGNMENT_RIGID = "rigid/1"  # rtau.align.RIGID
ALIGNMENT_RIGID_STABILISED = "rigid/2"  # rtau.align.RIGID_STABILISED: rigid/1, filtered in video
KNOWN_ALIGNMENTS = (ALIGNMENT_FIVE_POINT, ALIGNMENT_RIGID, ALIGNMENT_RIGID_STABILISED)
ALIGNMENT_DEFAULT = ALIGNMENT_RIGID_STABILISED  # rtau.align.DEFAULT_ALIGNMENT

INPUT_IMAGE = "image"
INPUT_GEOMETRY = "geometry"
INPUT_STATE = "state"
FACE_INPUTS = (INPUT_IMAGE, INPUT_GEOMETRY)
"""The per-face inputs, in the order they come in the graph (before `state`)."""
GEOMETRY_LANDMARKS_XY = "landmarks-xy/1"  # rtau.geometry; not imported: it needs cv2
KNOWN_GEOMETRY = {GEOMETRY_LANDMARKS_XY: 956}
"""Geometry layout -> G."""
OUTPUT_AUS = "aus"
OUTPUT_STATE = "state_out"

META_CONTRACT = "rtau.contract"
META_CROP_SIZE = "rtau.crop_size"
META_STATE_SIZE = "rtau.state_size"
META_AU_NAMES = "rtau.au_names"
META_MODEL_VERSION = "rtau.model_version"
META_TRAINING_DATA = "rtau.training_data"
META_PRECISION = "rtau.precision"
META_ALIGNMENT = "rtau.alignment"
META_INPUTS = "rtau.inputs"
META_GEOMETRY = "rtau.geometry"

PRECISION_FP32 = "fp32"
PRECISION_FP16_CNN = "fp16-cnn"
"""CNN in FP16, recurrent cell and state in FP32 (what engines run)."""

MANIFEST_SUFFIX = ".json"
MANIFEST_MODE = 0o644


class ContractError(ValueError):
    """A model file that does not follow the rtau step contract. The message is one sentence."""


@dataclass(frozen=True)
class ModelContract:
    """What a backend needs to know about a step model, read from its metadata.

    crop_size: S, the side of the square uint8 BGR crop in pixels.
    state_size: H, the width of the float32 recurrent state.
    au_names: the K output AUs in output order, canonical names (`AU12`).
    alignment: how the crops are made (`rtau.align.ALIGNMENTS`): the model's training crops'.
      A geometry-only model still names one: the estimator tracks and stabilises faces with it.
    inputs: the per-face inputs the step takes, a non-empty subset of FACE_INPUTS in that order.
    geometry: the geometry layout (`rtau.geometry`), "" when `geometry` is not an input.
    """

    crop_size: int
    state_size: int
    au_names: tuple[str, ...]
    model_version: str = "unknown"
    training_data: str = "unknown"
    precision: str = PRECISION_FP32
    alignment: str = ALIGNMENT_FIVE_POINT
    inputs: tuple[str, ...] = (INPUT_IMAGE,)
    geometry: str = ""

    def __post_init__(self) -> None:
        if not self.inputs or tuple(i for i in FACE_INPUTS if i in self.inputs) != self.inputs:
            raise ContractError(
                f"inputs must be a non-empty subset of {FACE_INPUTS} in that order, "
                f"got {self.inputs}")
        if self.uses_geometry != bool(self.geometry):
            raise ContractError(
                f"a model with inputs {self.inputs} must {'' if self.uses_geometry else 'not '}"
                f"name a geometry layout (got {self.geometry!r})")
        if self.geometry and self.geometry not in KNOWN_GEOMETRY:
            raise ContractError(
                f"geometry layout {self.geometry!r} is unknown; this rtau knows "
                f"{', '.join(KNOWN_GEOMETRY)}")

    @property
    def num_aus(self) -> int:
        return len(self.au_names)

    @property
    def uses_image(self) -> bool:
        return INPUT_IMAGE in self.inputs

    @property
    def uses_geometry(self) -> bool:
        return INPUT_GEOMETRY in self.inputs

    @property
    def geometry_size(self) -> int:
        """G, the width of the geometry input (0 without one)."""
        return KNOWN_GEOMETRY.get(self.geometry, 0)

    @property
    def version(self) -> int:
        """The lowest contract version that expresses this model (older rtau reads it)."""
        return CONTRACT_VERSION if self.uses_geometry else IMAGE_ONLY_CONTRACT_VERSION

    def to_metadata(self) -> dict[str, str]:
        """The ONNX `metadata_props` that encode this contract (strings only)."""
        meta = {
            META_CONTRACT: f"{CONTRACT_NAME}/{self.version}",
            META_CROP_SIZE: str(self.crop_size),
            META_STATE_SIZE: str(self.state_size),
            META_AU_NAMES: ",".join(self.au_names),
            META_MODEL_VERSION: self.model_version,
            META_TRAINING_DATA: self.training_data,
            META_PRECISION: self.precision,
            META_ALIGNMENT: self.alignment,
        }
        if self.version >= CONTRACT_VERSION:
            meta[META_INPUTS] = ",".join(self.inputs)
            meta[META_GEOMETRY] = self.geometry
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "model") -> ModelContract:
        """Parse ONNX metadata; ContractError naming `source` if it is not an rtau step model."""
        tag = meta.get(META_CONTRACT)
        if tag is None:
            raise ContractError(
                f"{source} is not an rtau step model: its metadata has no '{META_CONTRACT}' entry "
                "(export models with `python -m train export`)"
            )
        readable = [f"{CONTRACT_NAME}/{v}" for v in READABLE_CONTRACT_VERSIONS]
        if tag not in readable:
            raise ContractError(
                f"{source} follows contract '{tag}', this rtau reads {' or '.join(readable)}"
            )
        if tag == readable[0]:
            alignment = ALIGNMENT_FIVE_POINT
        else:
            alignment = meta.get(META_ALIGNMENT, "")
            if alignment not in KNOWN_ALIGNMENTS:
                raise ContractError(
                    f"{source} declares alignment {alignment!r}; this rtau knows "
                    f"{', '.join(KNOWN_ALIGNMENTS)}"
                )
        inputs: tuple[str, ...] = (INPUT_IMAGE,)
        geometry = ""
        if tag == readable[2]:
            inputs = tuple(i for i in meta.get(META_INPUTS, "").split(",") if i)
            geometry = meta.get(META_GEOMETRY, "")
        try:
            crop = int(meta[META_CROP_SIZE])
            state = int(meta[META_STATE_SIZE])
            names = tuple(n for n in meta[META_AU_NAMES].split(",") if n)
        except (KeyError, ValueError) as exc:
            raise ContractError(f"{source} has malformed rtau metadata ({exc})") from None
        if crop <= 0 or state <= 0 or not names:
            raise ContractError(
                f"{source} has invalid rtau metadata: crop {crop}, state {state}, AUs {names}"
            )
        try:
            return cls(
                crop_size=crop,
                state_size=state,
                au_names=names,
                model_version=meta.get(META_MODEL_VERSION, "unknown"),
                training_data=meta.get(META_TRAINING_DATA, "unknown"),
                precision=meta.get(META_PRECISION, PRECISION_FP32),
                alignment=alignment,
                inputs=inputs,
                geometry=geometry,
            )
        except ContractError as exc:
            raise ContractError(f"{source}: {exc}") from None


@dataclass(frozen=True)
class ModelManifest:
    """The JSON written beside an ONNX model: its contract plus facts about the file."""

    contract: ModelContract
    onnx_sha256: str
    onnx_file: str
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "contract": f"{CONTRACT_NAME}/{self.contract.version}",
            **{k: v for k, v in asdict(self.contract).items()
               if k not in ("au_names", "inputs")},
            "au_names": list(self.contract.au_names),
            "inputs": list(self.contract.inputs),
            "onnx_file": self.onnx_file,
            "onnx_sha256": self.onnx_sha256,
            "io": io_spec(self.contract),
            **self.extra,
        }


def io_spec(contract: ModelContract) -> dict[str, dict]:
    """Names, dtypes and shapes (B = dynamic batch) of the step tensors, inputs first."""
    s, h, k = contract.crop_size, contract.state_size, contract.num_aus
    inputs = {INPUT_IMAGE: {"dtype": "uint8", "shape": ["B", s, s, 3]},
              INPUT_GEOMETRY: {"dtype": "float32", "shape": ["B", contract.geometry_size]}}
    return {
        **{name: inputs[name] for name in contract.inputs},
        INPUT_STATE: {"dtype": "float32", "shape": ["B", h]},
        OUTPUT_AUS: {"dtype": "float32", "shape": ["B", k]},
        OUTPUT_STATE: {"dtype": "float32", "shape": ["B", h]},
    }


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(model_path: str | os.PathLike) -> Path:
    """Where the manifest of `model_path` lives: same folder, same stem, `.json`."""
    return Path(model_path).with_suffix(MANIFEST_SUFFIX)


def write_json_atomic(path: str | os.PathLike, payload: dict) -> None:
    """Write JSON through a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.chmod(tmp, MANIFEST_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_onnx_contract(model_path: str | os.PathLike) -> ModelContract:
    """Contract of an ONNX file from its metadata; ContractError if missing, corrupt or foreign."""
    path = Path(model_path)
    if not path.is_file():
        raise ContractError(f"model file not found: {path}")
    import onnxruntime as ort  # lazy: engine building needs no ONNX Runtime

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several private exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ContractError(f"{path} is not a readable ONNX model ({first})") from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    contract = ModelContract.from_metadata(meta, source=str(path))
    check_session_io(session, contract, str(path))
    return contract


def check_session_io(session, contract: ModelContract, source: str) -> None:
    """Check an ONNX Runtime session's inputs/outputs against the contract."""
    types = {"uint8": "tensor(uint8)", "float32": "tensor(float)"}
    spec = io_spec(contract)
    expected_in = {name: types[spec[name]["dtype"]] for name in (*contract.inputs, INPUT_STATE)}
    expected_out = {OUTPUT_AUS: "tensor(float)", OUTPUT_STATE: "tensor(float)"}
    got_in = {i.name: i.type for i in session.get_inputs()}
    got_out = {o.name: o.type for o in session.get_outputs()}
    if got_in != expected_in or got_out != expected_out:
        raise ContractError(
            f"{source} does not have the rtau step inputs/outputs: expected inputs {expected_in} "
            f"and outputs {expected_out}, found {got_in} and {got_out}"
        )
    shapes = {i.name: list(i.shape[1:]) for i in session.get_inputs()}
    wanted = {name: spec[name]["shape"][1:] for name in expected_in}
    if shapes != wanted:
        raise ContractError(
            f"{source} input shapes {shapes} do not match its metadata ({wanted})"
        )
