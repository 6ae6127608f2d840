"""A small numpy software renderer for previews and evaluation plots (no Blender, no OpenGL).

Meshes are in metres on Blender's axes (Z up, the face looking toward -Y, subject's left at +X).
The camera is orthographic and looks along +Y, so the subject faces the viewer: +X is image
right (the subject's left eye appears on the image's right), +Z is image up. Triangles are
rasterised with a vectorised z-buffer over their pixel bounding boxes (supersampled for
anti-aliasing), then shaded with Lambert plus ambient light from a key light at the viewer's
upper front-left on smooth (vertex) normals, and a screen-space cavity term that darkens the head
where it lies well behind the surface around it (an open mouth, eye sockets, inner ear).

Images are numpy uint8 arrays [h, w, 3] (RGB).
"""

from pathlib import Path

import numpy as np

VIEWS = {"front": 0.0, "three_quarter": 30.0}  # rotation of the subject about +Z, degrees
SKIN_RGB = (0.86, 0.67, 0.56)
INTERIOR_RGB = (0.30, 0.10, 0.10)  # back faces of the head: the inside of an open mouth
BACKGROUND_RGB = (0.18, 0.19, 0.22)
AMBIENT = 0.28
DIFFUSE = 0.78
LIGHT_DIR = np.array([-0.45, -0.8, 0.55])  # camera space (x right, y away from viewer, z up), toward the light
CAVITY_RADIUS = 0.008  # metres: neighbourhood searched for a nearer surface
CAVITY_BIAS = 0.008  # metres behind that surface before darkening starts
CAVITY_FALLOFF = 0.02  # metres over which the darkening ramps to full
CAVITY_STRENGTH = 0.8  # fraction of light removed at full cavity
FIT_HEIGHT = 1.4  # default frame height, at least this multiple of the head's width (from its top)
FIT_MARGIN = 0.06  # fraction of the framed extent left empty on each side when fitting the head
SUPERSAMPLE = 2  # render at this multiple of the size and box-filter down (anti-aliasing)
_CHUNK = 1 << 21  # candidate pixels rasterised per batch (bounds memory)

SHEET_PAD = 6  # pixels around and between contact-sheet tiles
SHEET_LABEL_HEIGHT = 22  # pixels under each tile for its label
SHEET_TITLE_HEIGHT = 30  # pixels above the grid when a title is given


def _rgb(color) -> np.ndarray:
    """An RGB triple in [0, 1] floats or 0..255 ints -> float [3] in [0, 1]."""
    c = np.asarray(color, dtype=np.float64).reshape(3)
    return c / 255.0 if c.max() > 1.0 else c


def _to_camera(vertices: np.ndarray, view: str) -> np.ndarray:
    """Model-space [N, 3] -> camera space [N, 3]: x image right, y depth (larger is farther), z up."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {sorted(VIEWS)}")
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    angle = np.radians(VIEWS[view])
    if angle == 0.0:
        return v
    c, s = np.cos(angle), np.sin(angle)
    # Rotate the subject by +angle about Z: its right side (-X) turns toward the camera.
    return np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1], v[:, 2]], axis=1)


def _vertex_normals(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit vertex normals [V, 3], face normals [F, 3] unnormalised) from area-weighted face normals."""
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    vn = np.zeros_like(v)
    for k in range(3):
        idx = f[:, k]
        for axis in range(3):
            vn[:, axis] += np.bincount(idx, weights=fn[:, axis], minlength=len(v))
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    return vn, fn


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    size: tuple[int, int] = (256, 256),
    view: str = "front",
    extra_meshes: list | tuple = (),
    crop: tuple[float, float, float, float] | None = None,
    color=SKIN_RGB,
    background=BACKGROUND_RGB,
    supersample: int = SUPERSAMPLE,
) -> np.ndarray:
    """Render a head mesh (plus static extras such as eyes and teeth) -> uint8 [h, w, 3].

    vertices: float [V, 3] metres, Blender axes; faces: int [F, 3]; size: (w, h) pixels.
    view: "front" (camera looking along +Y) or "three_quarter" (the subject turned 30° about Z,
    its right cheek toward the camera). extra_meshes: [(verts [Ve, 3], faces [Fe, 3], rgb)], rgb
    in [0, 1] floats or 0..255 ints. crop: (x_min, x_max, z_min, z_max) metres in the image plane
    (model X/Z for the front view) to frame, e.g. the mouth; None frames the head mesh (extras
    excluded) by its width and top, FIT_HEIGHT x its width tall (taller if the mesh is), with a
    FIT_MARGIN margin, so the framing does not jump between frames as the jaw opens. The scale is
    uniform: a box whose aspect differs from the image's is centred with room to spare on one
    axis. color / background: RGB like the extras' rgb. supersample: anti-aliasing factor.
    Back faces of the head are drawn in a dark interior colour and concave parts of it darkened
    (so an open mouth reads dark); extras are lit on both sides, without the cavity term.
    """
    w, h = int(size[0]), int(size[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive, got {size}")
    ss = max(1, int(supersample))
    W, H = w * ss, h * ss

    meshes = [(vertices, faces, color, True)] + [(v, f, c, False) for v, f, c in extra_meshes]
    cam, tris, tri_rgb, tri_interior, normals = [], [], [], [], []
    offset = 0
    for v, f, c, is_head in meshes:
        vc = _to_camera(v, view)
        fi = np.asarray(f, dtype=np.int64).reshape(-1, 3)
        vn, fn = _vertex_normals(vc, fi)
        cam.append(vc)
        normals.append(vn)
        tris.append(fi + offset)
        tri_rgb.append(np.broadcast_to(_rgb(c), (len(fi), 3)))
        tri_interior.append(np.full(len(fi), is_head) & (fn[:, 1] > 0))  # head faces turned away
        offset += len(vc)
    n_head = len(tris[0])  # the head's triangles come first
    cam = np.concatenate(cam)
    normals = np.concatenate(normals)
    tris = np.concatenate(tris)
    tri_rgb = np.concatenate(tri_rgb)
    tri_interior = np.concatenate(tri_interior)

    # Framing: metres -> pixel coordinates (column right, row down), uniform scale.
    if crop is None:
        head = cam[: len(np.asarray(vertices).reshape(-1, 3))]
        x0, x1 = head[:, 0].min(), head[:, 0].max()
        z1 = head[:, 2].max()
        z0 = min(head[:, 2].min(), z1 - FIT_HEIGHT * (x1 - x0))  # room for the jaw: no jumps as it opens
        mx, mz = (x1 - x0) * FIT_MARGIN, (z1 - z0) * FIT_MARGIN
        x0, x1, z0, z1 = x0 - mx, x1 + mx, z0 - mz, z1 + mz
    else:
        x0, x1, z0, z1 = (float(a) for a in crop)
        if not (x1 > x0 and z1 > z0):
            raise ValueError(f"crop must be (x_min, x_max, z_min, z_max) with min < max, got {crop}")
    scale = min(W / (x1 - x0), H / (z1 - z0))
    cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
    col = (cam[:, 0] - cx) * scale + W / 2
    row = (cz - cam[:, 2]) * scale + H / 2
    depth = cam[:, 1]

    # Per-triangle setup: pixel bounding boxes (pixel centres at i + 0.5) and the barycentric
    # weights b0, b1 and depth as planes over the box: value = e + a * dx + b * dy (dx, dy pixels).
    tc, tr, td = col[tris], row[tris], depth[tris]
    area = (tc[:, 1] - tc[:, 0]) * (tr[:, 2] - tr[:, 0]) - (tc[:, 2] - tc[:, 0]) * (tr[:, 1] - tr[:, 0])
    cmin = np.maximum(np.ceil(tc.min(1) - 0.5), 0).astype(np.int64)
    cmax = np.minimum(np.floor(tc.max(1) - 0.5), W - 1).astype(np.int64)
    rmin = np.maximum(np.ceil(tr.min(1) - 0.5), 0).astype(np.int64)
    rmax = np.minimum(np.floor(tr.max(1) - 0.5), H - 1).astype(np.int64)
    bw, bh = cmax - cmin + 1, rmax - rmin + 1
    keep = (bw > 0) & (bh > 0) & (np.abs(area) > 1e-12)
    ids = np.nonzero(keep)[0]
    tc, tr, td, area, cmin, rmin, bw = tc[ids], tr[ids], td[ids], area[ids], cmin[ids], rmin[ids], bw[ids]
    counts = bw * bh[ids]
    x0p, y0p = cmin + 0.5, rmin + 0.5
    planes = []
    for i, j in ((1, 2), (2, 0)):  # b0 is the edge function of edge (1, 2), b1 of edge (2, 0)
        pa = (tr[:, i] - tr[:, j]) / area
        pb = (tc[:, j] - tc[:, i]) / area
        pe = (tc[:, i] * tr[:, j] - tc[:, j] * tr[:, i]) / area + pa * x0p + pb * y0p
        planes.append((pe, pa, pb))
    (e0, a0, b0_), (e1, a1, b1_) = planes
    dz0, dz1 = td[:, 0] - td[:, 2], td[:, 1] - td[:, 2]
    ez, az, bz = td[:, 2] + dz0 * e0 + dz1 * e1, dz0 * a0 + dz1 * a1, dz0 * b0_ + dz1 * b1_
    # float32 is plenty relative to each box's corner, and halves the memory traffic.
    e0, a0, b0_, e1, a1, b1_, ez, az, bz = (x.astype(np.float32) for x in (e0, a0, b0_, e1, a1, b1_, ez, az, bz))
    pix0 = rmin * W + cmin
    bw32 = bw.astype(np.int32)

    zbuf = np.full(W * H, np.inf, dtype=np.float32)
    albedo = np.empty((W * H, 3))
    shade = np.ones(W * H)
    slope = np.full(W * H, np.inf)  # inf: no cavity term (extras, interior faces, background)
    light = LIGHT_DIR / np.linalg.norm(LIGHT_DIR)

    # Batches of whole triangles with at most _CHUNK candidate pixels (a larger triangle goes alone).
    cum = np.cumsum(counts)
    start = 0
    while start < len(ids):
        base = cum[start - 1] if start else 0
        stop = max(int(np.searchsorted(cum, base + _CHUNK, side="right")), start + 1)
        n = counts[start:stop]
        t = np.repeat(np.arange(start, stop, dtype=np.int32), n)
        local = np.arange(len(t), dtype=np.int32) - np.repeat((np.cumsum(n) - n).astype(np.int32), n)
        start = stop
        dy, dx = np.divmod(local, bw32[t])
        fx, fy = dx.astype(np.float32), dy.astype(np.float32)
        b0 = e0[t] + a0[t] * fx + b0_[t] * fy
        b1 = e1[t] + a1[t] * fx + b1_[t] * fy
        sel = np.flatnonzero((b0 >= -1e-6) & (b1 >= -1e-6) & (b0 + b1 <= 1.0 + 1e-6))
        t, dx, dy, fx, fy, b0, b1 = t[sel], dx[sel], dy[sel], fx[sel], fy[sel], b0[sel], b1[sel]
        z = ez[t] + az[t] * fx + bz[t] * fy
        pix = pix0[t] + dy.astype(np.int64) * W + dx
        np.minimum.at(zbuf, pix, z)
        win = np.flatnonzero(z <= zbuf[pix])
        pix, t = pix[win], t[win]
        tri = ids[t]
        b = np.stack([b0[win], b1[win], 1.0 - b0[win] - b1[win]], axis=1)
        # Interpolated vertex normal, turned toward the viewer (-y) for two-sided light.
        nrm = np.einsum("pk,pkj->pj", b, normals[tris[tri]])
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
        nrm[nrm[:, 1] > 0] *= -1
        # Depth change per metre across the image along the surface (tangent-plane slope).
        slope[pix] = np.where(tri_interior[tri] | (tri >= n_head), np.inf,
                              np.hypot(nrm[:, 0], nrm[:, 2]) / np.maximum(-nrm[:, 1], 1e-3))
        shade[pix] = AMBIENT + DIFFUSE * np.clip(nrm @ light, 0.0, None)
        albedo[pix] = np.where(tri_interior[tri][:, None], INTERIOR_RGB, tri_rgb[tri])

    covered = np.isfinite(zbuf)
    if CAVITY_STRENGTH > 0 and covered.any():
        # Screen-space cavity term: a pixel far behind the nearest surface around it (inside an
        # open mouth, the eye sockets) is darkened, so an open mouth reads dark from the front.
        z2 = zbuf.reshape(H, W)
        near = _min_filter(z2, max(1, int(round(CAVITY_RADIUS * scale))))
        # On a convex surface the nearest point in the window is at most the tangent plane's
        # depth change over the window's half-diagonal ahead, so only concavities darken.
        gap = z2.reshape(-1)[covered] - near.reshape(-1)[covered]
        gap -= CAVITY_BIAS + np.sqrt(2.0) * CAVITY_RADIUS * slope[covered]
        shade[covered] *= 1.0 - CAVITY_STRENGTH * np.clip(gap / CAVITY_FALLOFF, 0.0, 1.0)
    image = np.empty((W * H, 3))
    image[:] = _rgb(background)
    image[covered] = np.clip(albedo[covered] * shade[covered, None], 0.0, 1.0)

    image = image.reshape(H, W, 3)
    if ss > 1:
        acc = np.zeros((h, w, 3))
        for i in range(ss):
            for j in range(ss):
                acc += image[i::ss, j::ss]
        image = acc / (ss * ss)
    return np.round(image * 255).astype(np.uint8)


def _min_filter(a: np.ndarray, radius: int) -> np.ndarray:
    """Minimum over a (2 radius + 1)² square window of a 2-D array (outside counts as +inf).

    O(N log radius): window minima by doubling, then two overlapping power-of-two windows.
    """
    length = 2 * radius + 1
    out = a
    for axis in (0, 1):
        m = np.moveaxis(out, axis, 0)
        n = m.shape[0]
        m = np.concatenate([np.full((radius, m.shape[1]), np.inf), m, np.full((radius, m.shape[1]), np.inf)])
        k = 1
        while 2 * k <= length:
            m = np.minimum(m[:-k], m[k:])
            k *= 2
        out = np.moveaxis(np.minimum(m[:n], m[length - k:length - k + n]), 0, axis)
    return out


def contact_sheet(
    images: list[np.ndarray], labels: list[str], columns: int = 4, title: str | None = None
) -> np.ndarray:
    """Tile images [h, w, 3] uint8 in a grid with a label under each -> uint8 [H, W, 3].

    Cells are the largest tile's size; W = columns * (w + SHEET_PAD) + SHEET_PAD and
    H = rows * (h + SHEET_LABEL_HEIGHT + SHEET_PAD) + SHEET_PAD (+ SHEET_TITLE_HEIGHT with a title),
    where columns = min(columns, len(images)).
    """
    from PIL import Image, ImageDraw, ImageFont

    if not images:
        raise ValueError("contact_sheet needs at least one image")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    columns = max(1, min(int(columns), len(images)))
    rows = -(-len(images) // columns)
    th = max(im.shape[0] for im in images)
    tw = max(im.shape[1] for im in images)
    top = SHEET_TITLE_HEIGHT if title else 0
    cell_w, cell_h = tw + SHEET_PAD, th + SHEET_LABEL_HEIGHT + SHEET_PAD
    sheet = Image.new("RGB", (columns * cell_w + SHEET_PAD, top + rows * cell_h + SHEET_PAD), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    if title:
        title_font = ImageFont.load_default(size=16)
        draw.text((sheet.width / 2, top / 2 + SHEET_PAD / 2), title, fill=(0, 0, 0), font=title_font, anchor="mm")
    for i, (im, label) in enumerate(zip(images, labels)):
        r, c = divmod(i, columns)
        x = SHEET_PAD + c * cell_w
        y = top + SHEET_PAD + r * cell_h
        tile = _as_uint8_rgb(im)
        sheet.paste(Image.fromarray(tile), (x + (tw - tile.shape[1]) // 2, y + (th - tile.shape[0]) // 2))
        draw.text((x + tw / 2, y + th + SHEET_LABEL_HEIGHT / 2), str(label), fill=(0, 0, 0), font=font, anchor="mm")
    return np.asarray(sheet, dtype=np.uint8).copy()


def _as_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """[h, w] or [h, w, 3|4] uint8 or float in [0, 1] -> uint8 [h, w, 3]."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.round(np.clip(a.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def save_png(path: Path | str, image: np.ndarray) -> Path:
    """Write an image [h, w, 3] (uint8, or float in [0, 1]) as a PNG; parent folders are created."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_as_uint8_rgb(image)).save(path, format="PNG")
    return path


def save_gif(path: Path | str, frames: list[np.ndarray], fps: float) -> Path:
    """Write frames [h, w, 3] as a looping animated GIF at `fps` frames per second (Pillow)."""
    from PIL import Image

    if not frames:
        raise ValueError("save_gif needs at least one frame")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pics = [Image.fromarray(_as_uint8_rgb(f)) for f in frames]
    duration = max(20, int(round(1000.0 / float(fps))))  # ms; browsers clamp faster GIF frames
    pics[0].save(path, format="GIF", save_all=True, append_images=pics[1:], duration=duration, loop=0, disposal=1)
    return path
