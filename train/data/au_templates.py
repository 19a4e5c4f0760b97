"""Per-AU displacement templates on the MediaPipe face mesh, for the synthetic video generator.

`FaceTemplates.from_landmarks(landmarks)` turns the 478 landmarks of one *neutral* base face
(float[478, 3]: x, y in image pixels, z in MediaPipe's scale, as `rtau.faces.Face.landmarks`)
into one displacement field per action unit: float32[478, 2] in image pixels, the motion of
every landmark at intensity 5 (FACS "E", the maximum). `displace(intensities)` sums the fields
times intensity / 5 (with one interaction: AU1 + AU4 make the oblique brow) and keeps the lids
and the lips from crossing each other.

The fields are written by us from FACS descriptions (see `rtau.aus`), in a face frame whose
origin is the midpoint of the eye centres, whose u axis runs from the subject's right eye to
the left eye and whose v axis points down the face; one unit is the inter-ocular distance
(IOD, eye centre to eye centre, about 6.3 cm on an adult). Amplitudes are FACS-sized: a
maximal brow raise moves the brows ~0.2 IOD (~1.3 cm), far above the ~0.03 IOD jitter of
5-point alignment, so brows survive alignment. A brow lowerer (AU4) is sized by the face
itself: it closes most of the gap between the brow and the upper lid. Geometry only: no
wrinkles, furrows or bulges (`train.data.au_shading` draws those).

Run `python -m train synth --preview sheet.png ...` to look at every template.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train.data import face_regions as mesh

# Amplitudes at intensity 5, in IOD units (u lateral, v down). Named so they can be tuned in
# one place; every template below reads only these.
BROW_RAISE_INNER = 0.20  # AU1: inner brow up
BROW_RAISE_OUTER = 0.18  # AU2: outer brow up
# AU4: the brows come down onto the eye cover fold and are drawn together. At intensity 5 they
# close BROW_LOWER_FRACTION of the neutral gap between the brow's lower edge and the level of
# the upper lid's highest point, so a face with high-set brows lowers them further than one
# whose brows already sit low (the gap, not a fixed distance, bounds how far a brow can come
# down). The skin in the gap is compressed towards that level, never folded over it.
BROW_LOWER_FRACTION = 0.85
BROW_LOWER_MAX_FRACTION = 0.90  # with a subject's gain, at most this much of the gap closes
BROW_LOWER_IN = 0.09  # IOD: each brow towards the midline
BROW_LOWER_IN_REACH = 0.30  # IOD: reach of the drawing together around the inner brow
BROW_LOWER_MEDIAL_REACH = 0.08  # IOD: how far past the inner brow ends the glabella follows
BROW_LOWER_LATERAL_REACH = 0.15  # IOD: past the outer ends
BROW_LOWER_SOFT = 0.03  # IOD below the lid-top level where the compression starts ...
BROW_LOWER_EASE = 0.25  # ... easing in over this part of the gap (steepest slope 1 / 0.875)
BROW_THICKNESS = 0.08  # IOD: the brow itself moves as a whole above its lower edge ...
FOREHEAD_REACH = 0.35  # ... and the forehead skin above it follows less with distance
NOSE_ROOT_BROW_DOWN = 0.04  # AU9 pulls the inner brows down a little (IOD)
UPPER_LID_RAISE = 0.06  # AU5
CHEEK_RAISE = 0.07  # AU6: cheek skin up
LOWER_LID_RAISE = 0.04  # AU6: lower lid pushed up
NOSE_WING_RAISE = 0.07  # AU9
UPPER_LIP_RAISE_AU9 = 0.035  # AU9 drags the upper lip up
SMILE_OUT, SMILE_UP = 0.16, 0.15  # AU12: lip corners up and out (a real broad smile: ~0.19, 0.17)
DEPRESS_OUT, DEPRESS_DOWN = 0.015, 0.08  # AU15: lip corners down
CHIN_RAISE = 0.07  # AU17: chin boss up
LOWER_LIP_PUSH = 0.035  # AU17: lower lip pushed up
STRETCH_OUT, STRETCH_DOWN = 0.12, 0.02  # AU20: lip corners sideways
LIPS_PART_LOWER, LIPS_PART_UPPER = 0.08, 0.045  # AU25: lips apart without the jaw
JAW_DROP = 0.30  # AU26: chin down
BLINK_CLOSURE = 1.0  # AU45: fraction of the lid aperture closed at intensity 5

MAX_INTENSITY = 5.0
TEMPLATE_AUS: tuple[str, ...] = (
    "AU01",
    "AU02",
    "AU04",
    "AU05",
    "AU06",
    "AU09",
    "AU12",
    "AU15",
    "AU17",
    "AU20",
    "AU25",
    "AU26",
    "AU45",
)
"""AUs with a template: the 12 DISFA AUs plus AU45 (blink)."""

LID_MIN_GAP = 0.004  # IOD: closed lids / lips keep this gap so triangles never flip


@dataclass(frozen=True)
class FaceFrame:
    """Face-aligned 2-D frame of one face: origin (px), unit axes u/v (image px), IOD (px)."""

    origin: np.ndarray  # float64[2]
    u_axis: np.ndarray  # float64[2], subject's right eye -> left eye
    v_axis: np.ndarray  # float64[2], down the face
    iod: float

    @classmethod
    def from_landmarks(cls, xy: np.ndarray) -> FaceFrame:
        right = xy[list(mesh.RIGHT_EYE_LOOP)].mean(axis=0)
        left = xy[list(mesh.LEFT_EYE_LOOP)].mean(axis=0)
        delta = left - right
        iod = float(np.hypot(*delta))
        if iod < 4.0:
            raise ValueError(
                f"face too small for the generator (inter-ocular distance {iod:.1f} px)"
            )
        u = delta / iod
        v = np.array([-u[1], u[0]])
        return cls((left + right) / 2.0, u, v, iod)

    def to_face(self, xy: np.ndarray) -> np.ndarray:
        """Image px float[N, 2] -> face units float64[N, 2] (u, v)."""
        rel = np.asarray(xy, np.float64) - self.origin
        return np.stack([rel @ self.u_axis, rel @ self.v_axis], axis=1) / self.iod

    def vectors_to_image(self, duv: np.ndarray) -> np.ndarray:
        """Displacements in face units float[N, 2] -> image px float32[N, 2]."""
        out = self.iod * (duv[:, :1] * self.u_axis + duv[:, 1:2] * self.v_axis)
        return out.astype(np.float32)


def _smoothstep(edge0: np.ndarray | float, edge1: np.ndarray | float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (np.asarray(edge1) - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _chain_v_at(chain: np.ndarray, u: np.ndarray) -> np.ndarray:
    """v of a polyline chain (float[M, 2], face units) at abscissa u (clamped at its ends)."""
    order = np.argsort(chain[:, 0])
    return np.interp(u, chain[order, 0], chain[order, 1])


def _gauss(p: np.ndarray, centre: np.ndarray, sigma_u: float, sigma_v: float) -> np.ndarray:
    d = p - centre
    return np.exp(-0.5 * ((d[:, 0] / sigma_u) ** 2 + (d[:, 1] / sigma_v) ** 2))


class FaceTemplates:
    """Displacement fields of every template AU for one base face (see module docstring)."""

    def __init__(self, landmarks: np.ndarray, gains: dict[str, float] | None = None):
        """landmarks: float[478, 3] (or [478, 2]) of a neutral face in image px.

        gains: optional per-AU multipliers (a subject's own expressiveness), default 1.
        """
        lm = np.asarray(landmarks, np.float64)
        if lm.ndim != 2 or lm.shape[0] != mesh.NUM_LANDMARKS or lm.shape[1] < 2:
            raise ValueError(f"expected landmarks of shape [478, 2|3], got {lm.shape}")
        self.base_xy = lm[:, :2].astype(np.float32)
        self.frame = FaceFrame.from_landmarks(lm[:, :2])
        p = self.frame.to_face(lm[:, :2])
        z = lm[:, 2] / self.frame.iod if lm.shape[1] > 2 else np.zeros(len(lm))
        self._p = p
        fields, oblique = _fields(p, z)
        gains = dict(gains or {})
        # a brow cannot come down past the lid however expressive the face: cap AU4's gain
        gains["AU04"] = min(gains.get("AU04", 1.0), BROW_LOWER_MAX_FRACTION / BROW_LOWER_FRACTION)
        self.fields: dict[str, np.ndarray] = {
            au: self.frame.vectors_to_image(duv * gains.get(au, 1.0)) for au, duv in fields.items()
        }
        self.oblique = self.frame.vectors_to_image(oblique * gains["AU04"])

    @property
    def aus(self) -> tuple[str, ...]:
        return tuple(self.fields)

    def displace(self, intensities: dict[str, float] | np.ndarray) -> np.ndarray:
        """Landmarks float32[478, 2] (image px) of the face at these AU intensities (0..5).

        intensities: {AU name: value} or float[len(TEMPLATE_AUS)] in `TEMPLATE_AUS` order.
        Upper lids never pass the lower lids and the lower inner lip never passes the upper
        one (they stop `LID_MIN_GAP` IOD apart). With AU1 and AU4 both on, min(AU1, AU4) / 5
        of AU4's inner-brow lowering is undone (`oblique`).
        """
        if not isinstance(intensities, dict):
            intensities = dict(zip(TEMPLATE_AUS, np.asarray(intensities, np.float64), strict=True))
        out = self.base_xy.astype(np.float64).copy()
        for au, value in intensities.items():
            if value:
                out += self.fields[au] * (float(value) / MAX_INTENSITY)
        # AU1 + AU4 (sadness, fear): the inner brow raiser wins at the inner brow, which goes up
        # and in while the lateral brow comes down (FACS's oblique brow); an AU1 at least as
        # strong as the AU4 undoes all of AU4's inner lowering, a weaker one part of it.
        both = min(float(intensities.get("AU01", 0.0)), float(intensities.get("AU04", 0.0)))
        if both > 0:
            out += self.oblique * (both / MAX_INTENSITY)
        return self._keep_order(out).astype(np.float32)

    def _keep_order(self, xy: np.ndarray) -> np.ndarray:
        """Clamp lids and inner lips in the face frame so that closing never inverts them."""
        p = self.frame.to_face(xy)
        pairs = (
            (mesh.RIGHT_EYE_UPPER, mesh.RIGHT_EYE_LOWER),
            (mesh.LEFT_EYE_UPPER, mesh.LEFT_EYE_LOWER),
            (mesh.INNER_LIP_UPPER, mesh.INNER_LIP_LOWER),
        )
        changed = False
        for upper, lower in pairs:
            inner_up, inner_low = list(upper[1:-1]), list(lower[1:-1])
            low_v = _chain_v_at(p[list(lower)], p[inner_up, 0])
            limit = low_v - LID_MIN_GAP
            over = p[inner_up, 1] > limit
            if over.any():
                changed = True
                idx = np.asarray(inner_up)[over]
                p[idx, 1] = limit[over]
            # the lower chain must also stay below the (possibly clamped) upper chain
            up_v = _chain_v_at(p[list(upper)], p[inner_low, 0])
            under = p[inner_low, 1] < up_v + LID_MIN_GAP
            if under.any():
                changed = True
                idx = np.asarray(inner_low)[under]
                p[idx, 1] = (up_v + LID_MIN_GAP)[under]
        if not changed:
            return xy
        f = self.frame
        return f.origin + f.iod * (p[:, :1] * f.u_axis + p[:, 1:2] * f.v_axis)


def _brow_lowering(
    p: np.ndarray, edge: np.ndarray, inner_u: float, lid_top_v: float, side: float
) -> tuple[np.ndarray, np.ndarray]:
    """AU4's motion of one brow (float64[N, 2], face units (u, v), at intensity 5) and the
    part of its downward motion (float64[N]) that an inner brow raiser (AU1) opposes.

    p: all points (float[N, 2], face units); edge: the brow's lower edge, outer -> inner end
    (float[M, 2]); inner_u: u of the inner brow's centre; lid_top_v: v of the upper lid's
    highest point; side: +1 for the subject's left brow. Above the lower edge the brow and
    forehead move down by BROW_LOWER_FRACTION of the gap between edge and lid-top level, and
    in towards the midline; between the edge and BROW_LOWER_SOFT below that level the motion
    eases to 0 (the lid's highest point moves about 0.01 IOD at most) and below it nothing
    moves. The compression is towards a level line, not the lid margin, so the margin sloping
    down to the eye corners cannot cross the compressed skin above it; its steepest slope,
    BROW_LOWER_MAX_FRACTION / (1 - BROW_LOWER_EASE / 2) < 1.03 times gap / (gap + soft), stays
    under 1, so no triangle folds over.
    """
    u, v = p[:, 0], p[:, 1]
    edge_v = _chain_v_at(edge, u)
    gap = np.clip(lid_top_v - edge_v, 0.0, None)
    u_out, u_in = edge[0, 0], edge[-1, 0]
    medial = np.clip(side * (u_in - u), 0.0, None)
    lateral = np.clip(side * (u - u_out), 0.0, None)
    reach = np.exp(-0.5 * ((medial / BROW_LOWER_MEDIAL_REACH) ** 2
                           + (lateral / BROW_LOWER_LATERAL_REACH) ** 2))
    above_brow = np.clip(edge_v - v - BROW_THICKNESS, 0.0, None)
    # the compressed skin eases in from just below the lid-top level (no crease at that level)
    level = lid_top_v + BROW_LOWER_SOFT
    t = np.clip((level - v) / np.maximum(level - edge_v, 1e-6), 0.0, 1.0)
    ease = BROW_LOWER_EASE
    ramp = np.where(t < ease, t * t / (2.0 * ease), t - ease / 2.0) / (1.0 - ease / 2.0)
    follow = np.where(v <= edge_v, np.exp(-0.5 * (above_brow / FOREHEAD_REACH) ** 2), ramp)
    together = np.exp(-0.5 * ((u - inner_u) / BROW_LOWER_IN_REACH) ** 2)
    down = BROW_LOWER_FRACTION * gap * reach * follow
    to_inner = np.clip((u - u_out) / (u_in - u_out), 0.0, 1.0)  # 0 outer end .. 1 inner end
    return (np.stack([-side * BROW_LOWER_IN * together * follow, down], axis=1),
            down * to_inner)


def _fields(p: np.ndarray, z: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """All template fields in face units (float64[478, 2] each), at intensity 5, and the
    AU1 + AU4 correction (float64[478, 2]: AU4's inner lowering, undone; see `displace`)."""
    n = len(p)
    fields = {au: np.zeros((n, 2)) for au in TEMPLATE_AUS}
    oblique = np.zeros((n, 2))
    u, v = p[:, 0], p[:, 1]

    # --- brows and lids -------------------------------------------------------------------
    for upper, lower, brow_inner, brow_outer, brow_edge in (
        (mesh.RIGHT_EYE_UPPER, mesh.RIGHT_EYE_LOWER, mesh.RIGHT_BROW_INNER, mesh.RIGHT_BROW_OUTER,
         mesh.RIGHT_BROW_LOWER_EDGE),
        (mesh.LEFT_EYE_UPPER, mesh.LEFT_EYE_LOWER, mesh.LEFT_BROW_INNER, mesh.LEFT_BROW_OUTER,
         mesh.LEFT_BROW_LOWER_EDGE),
    ):
        up_chain, low_chain = p[list(upper)], p[list(lower)]
        eye_u0, eye_u1 = sorted((up_chain[0, 0], up_chain[-1, 0]))
        eye_mid, eye_half = (eye_u0 + eye_u1) / 2.0, (eye_u1 - eye_u0) / 2.0
        side = np.sign(eye_mid)  # +1 for the subject's left eye (image right)
        lid_v = _chain_v_at(up_chain, u)
        low_v = _chain_v_at(low_chain, u)
        near_eye = np.exp(-0.5 * ((u - eye_mid) / (eye_half * 1.1)) ** 2)
        # upper-face weight: 0 at the upper lid margin, 1 from 0.15 IOD above it
        above_lid = _smoothstep(lid_v, lid_v - 0.15, v)
        inner = p[list(brow_inner)].mean(axis=0)
        outer = p[list(brow_outer)].mean(axis=0)
        # brows carry the forehead with them (long reach upwards), the lid skin less
        g_in = _gauss(p, inner, 0.20, 0.40) * above_lid
        g_out = _gauss(p, outer, 0.20, 0.40) * above_lid
        fields["AU01"][:, 1] -= BROW_RAISE_INNER * g_in
        fields["AU02"][:, 1] -= BROW_RAISE_OUTER * g_out
        motion, inner_down = _brow_lowering(p, p[list(brow_edge)], inner[0],
                                            up_chain[:, 1].min(), side)
        fields["AU04"] += motion
        oblique[:, 1] -= inner_down

        # lids: bell profile across the eye, zero at the corners
        profile = np.clip(1.0 - ((u - eye_mid) / eye_half) ** 2, 0.0, 1.0)
        on_upper = np.zeros(n, bool)
        on_upper[list(upper[1:-1])] = True
        on_lower = np.zeros(n, bool)
        on_lower[list(lower[1:-1])] = True
        # skin between lid margin and brow follows the margin, fading upwards
        lid_skin = np.where(v < lid_v, np.exp(-(lid_v - v) / 0.10), 0.0) * near_eye
        lid_skin[on_upper] = 1.0
        lid_skin[on_lower] = 0.0
        fields["AU05"][:, 1] -= UPPER_LID_RAISE * profile * lid_skin
        gap = np.clip(low_v - lid_v, 0.0, None)
        # the margin closes onto the lower lid everywhere (no sclera slivers at the corners)
        close = np.where(on_upper, 1.0, profile) * lid_skin
        fields["AU45"][:, 1] += BLINK_CLOSURE * gap * close
        # AU6: cheek pushes the lower lid up; only skin at or below the lower lid moves
        below_lid = np.where(v >= low_v - 1e-6, 1.0, 0.0) * near_eye
        below_lid[on_lower] = 1.0
        below_lid[on_upper] = 0.0
        cheek = np.array([eye_mid + side * 0.05, 0.42])
        fields["AU06"][:, 1] -= CHEEK_RAISE * _gauss(p, cheek, 0.28, 0.25) * (v > low_v)
        fields["AU06"][:, 1] -= (
            LOWER_LID_RAISE * profile * below_lid * np.exp(-np.clip(v - low_v, 0.0, None) / 0.12)
        )

    # --- nose -----------------------------------------------------------------------------
    for wing in (mesh.RIGHT_NOSE_WING, mesh.LEFT_NOSE_WING):
        fields["AU09"][:, 1] -= NOSE_WING_RAISE * _gauss(p, p[list(wing)].mean(axis=0), 0.13, 0.13)
    for brow_inner in (mesh.RIGHT_BROW_INNER, mesh.LEFT_BROW_INNER):
        above = _smoothstep(0.0, -0.2, v)
        fields["AU09"][:, 1] += (
            NOSE_ROOT_BROW_DOWN * _gauss(p, p[list(brow_inner)].mean(0), 0.15, 0.2) * above
        )

    # --- mouth ----------------------------------------------------------------------------
    in_up, in_low = p[list(mesh.INNER_LIP_UPPER)], p[list(mesh.INNER_LIP_LOWER)]
    corner_r = p[mesh.LIP_CORNER_RIGHT]
    corner_l = p[mesh.LIP_CORNER_LEFT]
    mouth_c = (corner_r + corner_l) / 2.0
    half_w = abs(corner_l[0] - corner_r[0]) / 2.0
    s = (u - mouth_c[0]) / half_w  # -1 .. 1 between the lip corners
    mouth_line = (_chain_v_at(in_up, u) + _chain_v_at(in_low, u)) / 2.0
    d = v - mouth_line  # signed distance below the lip line (IOD)
    d[list(mesh.INNER_LIP_UPPER[1:-1])] = -LID_MIN_GAP
    d[list(mesh.INNER_LIP_LOWER[1:-1])] = LID_MIN_GAP
    beyond = np.clip(np.abs(s) - 1.0, 0.0, None) * half_w
    width = 0.005 + 0.6 * beyond  # sharp split between the lips, smooth in the cheeks
    lower_part = _smoothstep(-width, width, d)  # 1 on the lower lip, chin and jaw
    upper_part = 1.0 - lower_part
    lip_profile = np.clip(1.0 - s**2, 0.0, 1.0)

    for corner, sign in ((corner_r, -1.0), (corner_l, 1.0)):
        own_side = (s * sign) > 0
        along = np.where(np.abs(s) <= 1.0, np.abs(s) ** 2 * np.exp(-0.5 * (d / 0.16) ** 2), 0.0)
        radial = np.exp(-0.5 * np.sum((p - corner) ** 2, axis=1) / 0.22**2)
        w = np.where(np.abs(s) <= 1.0, along, radial) * own_side
        fields["AU12"] += w[:, None] * np.array([sign * SMILE_OUT, -SMILE_UP])
        fields["AU15"] += w[:, None] * np.array([sign * DEPRESS_OUT, DEPRESS_DOWN])
        fields["AU20"] += w[:, None] * np.array([sign * STRETCH_OUT, STRETCH_DOWN])
        # AU12 lifts the cheek above the corner too (nasolabial region)
        cheek = corner + np.array([sign * 0.12, -0.28])
        # ... fading to nothing at the lips, so AU12 alone keeps them closed
        fade = _smoothstep(-0.02, -0.15, d) * upper_part
        fields["AU12"][:, 1] -= 0.4 * SMILE_UP * _gauss(p, cheek, 0.18, 0.18) * fade

    lip_fall_low = np.exp(-0.5 * (np.clip(d, 0.0, None) / 0.13) ** 2)
    lip_fall_up = np.exp(-0.5 * (np.clip(-d, 0.0, None) / 0.08) ** 2)
    fields["AU25"][:, 1] += LIPS_PART_LOWER * lip_profile * lower_part * lip_fall_low
    fields["AU25"][:, 1] -= LIPS_PART_UPPER * lip_profile * upper_part * lip_fall_up
    # the lower lip follows the raised upper lip, so AU9 alone does not part the lips
    lift = upper_part * lip_fall_up + 0.9 * lower_part * lip_fall_low
    fields["AU09"][:, 1] -= UPPER_LIP_RAISE_AU9 * lip_profile * lift

    chin = p[mesh.CHIN]
    chin_boss = (chin + p[mesh.LOWER_LIP_BOTTOM]) / 2.0
    fields["AU17"][:, 1] -= CHIN_RAISE * _gauss(p, chin_boss, 0.22, 0.16) * lower_part
    fields["AU17"][:, 1] -= LOWER_LIP_PUSH * lip_profile * lower_part * lip_fall_low
    fields["AU17"][:, 1] -= 0.5 * LOWER_LIP_PUSH * lip_profile * upper_part * lip_fall_up

    # AU26: the jaw rotates about the jaw joints, which sit far behind the face: points in
    # front (chin, lower lip) move most, the jaw angles near the ears hardly move. Depth (z,
    # smaller = nearer) from the landmarker gives each point's lever arm.
    z_pivot = z[list(mesh.JAW_PIVOTS)].mean()
    lever = np.clip((z_pivot - z) / max(z_pivot - z[mesh.CHIN], 1e-6), 0.0, 1.1)
    if not np.isfinite(lever).all() or np.ptp(z) == 0:
        lever = np.clip((v - 0.0) / max(chin[1], 1e-6), 0.0, 1.0)  # no depth: vertical lever
    fields["AU26"][:, 1] += JAW_DROP * lever * lower_part
    return fields, oblique
