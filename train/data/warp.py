"""Piecewise-affine warp of a face image over the MediaPipe mesh, for the synthetic generator.

`WarpMesh(base_xy, image_size)` triangulates one base face: the 852 mesh triangles, the two
eye openings (so lids can close over the eyeball) and a band from the face outline to a fixed
outer ring (so the neck and hair stretch when the jaw drops or the head moves, and everything
beyond the ring stays put). The mouth opening is left out on purpose: the generator paints
the mouth interior there. `WarpMesh.warp(image, dst_xy)` moves the 478 landmarks from their base
positions to `dst_xy` (float[478, 2], image px) and returns the warped image.

How: one backward map per frame. Each destination triangle is rasterised (cv2.fillConvexPoly,
sub-pixel) into a label image holding its index; every pixel then takes its triangle's affine
map (destination px -> source px), and a single cv2.remap (bilinear) resamples the image.
Pixels outside every triangle map to themselves. About 5-10 ms per 640x480 frame on one core.
"""

from __future__ import annotations

import cv2
import numpy as np

from train.data import face_regions as regions

RING_SCALE = 1.6  # outer ring = face outline scaled about the face centre
SUBPIXEL_BITS = 4  # fillConvexPoly fixed-point precision
NO_TRIANGLE = -1
MIN_TRIANGLE_AREA = 1e-6  # px^2: collapsed triangles (a closed lid) get an identity map


def _ear_clip(poly: np.ndarray, idx: list[int]) -> list[tuple[int, int, int]]:
    """Triangulate a simple polygon (float[M, 2] in loop order, labels idx) by ear clipping."""
    pts = {i: poly[k] for k, i in enumerate(idx)}
    ring = list(idx)
    area = sum(
        pts[ring[k]][0] * pts[ring[(k + 1) % len(ring)]][1]
        - pts[ring[(k + 1) % len(ring)]][0] * pts[ring[k]][1]
        for k in range(len(ring))
    )
    orient = 1.0 if area > 0 else -1.0
    tris: list[tuple[int, int, int]] = []
    guard = 0
    while len(ring) > 3 and guard < 10_000:
        guard += 1
        for k in range(len(ring)):
            a, b, c = ring[k - 1], ring[k], ring[(k + 1) % len(ring)]
            pa, pb, pc = pts[a], pts[b], pts[c]
            cross = (pb[0] - pa[0]) * (pc[1] - pa[1]) - (pb[1] - pa[1]) * (pc[0] - pa[0])
            if cross * orient <= 0:
                continue  # reflex vertex
            inside = False
            for o in ring:
                if o in (a, b, c):
                    continue
                if _in_triangle(pts[o], pa, pb, pc):
                    inside = True
                    break
            if inside:
                continue
            tris.append((a, b, c))
            ring.pop(k)
            break
        else:  # degenerate polygon: fall back to a fan
            break
    for k in range(1, len(ring) - 1):
        tris.append((ring[0], ring[k], ring[k + 1]))
    return tris


def _in_triangle(p, a, b, c) -> bool:
    d1 = (p[0] - b[0]) * (a[1] - b[1]) - (a[0] - b[0]) * (p[1] - b[1])
    d2 = (p[0] - c[0]) * (b[1] - c[1]) - (b[0] - c[0]) * (p[1] - c[1])
    d3 = (p[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (p[1] - a[1])
    neg = d1 < 0 or d2 < 0 or d3 < 0
    pos = d1 > 0 or d2 > 0 or d3 > 0
    return not (neg and pos)


class WarpMesh:
    """The triangulation of one base face, with its fixed outer ring (see module docstring)."""

    def __init__(self, base_xy: np.ndarray, image_size: tuple[int, int]):
        """base_xy: float[478, 2] landmarks in image px; image_size: (width, height)."""
        base = np.asarray(base_xy, np.float64)[:, :2]
        if base.shape != (regions.NUM_LANDMARKS, 2):
            raise ValueError(f"expected landmarks of shape [478, 2], got {base.shape}")
        self.width, self.height = image_size
        oval = list(regions.FACE_OVAL)
        centre = base[oval].mean(axis=0)
        ring = centre + RING_SCALE * (base[oval] - centre)
        self.n_face = len(base)
        self.src = np.concatenate([base, ring]).astype(np.float64)
        tris = [tuple(t) for t in regions.TRIANGLES.tolist()]
        for loop in (regions.RIGHT_EYE_LOOP, regions.LEFT_EYE_LOOP):
            tris += _ear_clip(base[list(loop)], list(loop))
        n = len(oval)
        for k in range(n):
            a, b = oval[k], oval[(k + 1) % n]
            ra, rb = self.n_face + k, self.n_face + (k + 1) % n
            tris += [(a, b, ra), (b, rb, ra)]
        self.triangles = np.asarray(tris, np.int32)
        # label raster region: the ring's bounding box, clipped to the image
        x0, y0 = np.floor(ring.min(axis=0)).astype(int)
        x1, y1 = np.ceil(ring.max(axis=0)).astype(int) + 1
        self.roi = (max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height))
        rx0, ry0, rx1, ry1 = self.roi
        if rx1 <= rx0 or ry1 <= ry0:
            raise ValueError("the face lies outside the image")
        self._grid_x, self._grid_y = np.meshgrid(
            np.arange(self.width, dtype=np.float32), np.arange(self.height, dtype=np.float32)
        )
        self._labels = np.empty((ry1 - ry0, rx1 - rx0), np.int32)

    def maps(self, dst_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Backward maps (map_x, map_y: float32[H, W]) taking the base face to `dst_xy`."""
        dst = np.concatenate([np.asarray(dst_xy, np.float64)[:, :2], self.src[self.n_face :]])
        tri = self.triangles
        d = dst[tri]  # [M, 3, 2]
        s = self.src[tri]
        # affine A (2x3) with A @ [x, y, 1] = source point, per triangle
        dh = np.concatenate([d, np.ones((len(tri), 3, 1))], axis=2)  # [M, 3, 3]
        det = np.linalg.det(dh)
        ok = np.abs(det) > MIN_TRIANGLE_AREA
        coef = np.zeros((len(tri), 3, 2))
        coef[ok] = np.linalg.solve(dh[ok], s[ok])  # [M, 3(x,y,1), 2(src x, y)]
        coef[~ok] = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])

        rx0, ry0, rx1, ry1 = self.roi
        labels = self._labels
        labels.fill(NO_TRIANGLE)
        fixed = np.round((d - [rx0, ry0]) * (1 << SUBPIXEL_BITS)).astype(np.int32)
        for k in np.nonzero(ok)[0]:
            cv2.fillConvexPoly(labels, fixed[k], int(k), lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)

        map_x = self._grid_x.copy()
        map_y = self._grid_y.copy()
        inside = labels >= 0
        lab = labels[inside]
        ys, xs = np.nonzero(inside)
        xs = xs.astype(np.float64) + rx0
        ys = ys.astype(np.float64) + ry0
        c = coef[lab]  # [P, 3, 2]
        sub_x = map_x[ry0:ry1, rx0:rx1]
        sub_y = map_y[ry0:ry1, rx0:rx1]
        sub_x[inside] = c[:, 0, 0] * xs + c[:, 1, 0] * ys + c[:, 2, 0]
        sub_y[inside] = c[:, 0, 1] * xs + c[:, 1, 1] * ys + c[:, 2, 1]
        return map_x, map_y

    def warp(self, image: np.ndarray, dst_xy: np.ndarray) -> np.ndarray:
        """The base image (uint8[H, W, 3]) with the face moved to `dst_xy` (float[478, 2] px)."""
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"image is {image.shape[1]}x{image.shape[0]}, mesh was built for "
                f"{self.width}x{self.height}"
            )
        map_x, map_y = self.maps(dst_xy)
        return cv2.remap(
            image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
