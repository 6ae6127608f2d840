"""Tests for model/data/render.py: the numpy rasteriser, framing, shading cues and the image writers."""


import numpy as np
import pytest
from PIL import Image

from model.data import render
from model.data.render import contact_sheet, render_mesh, save_gif, save_png
from model.template import ARKIT_INDEX, load_template

EMPTY_V = np.zeros((0, 3), np.float32)
EMPTY_F = np.zeros((0, 3), np.int32)
RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture(scope="module")
def extras(template):
    return [(template.eyes_vertices, template.eyes_faces, (0.15, 0.12, 0.1)),
            (template.teeth_vertices, template.teeth_faces, (0.95, 0.93, 0.88))]


def background_mask(image):
    """True where a pixel is (almost) the background colour."""
    bg = np.round(np.asarray(render.BACKGROUND_RGB) * 255)
    return np.abs(image.astype(np.float64) - bg).sum(axis=-1) <= 6


def luminance(image):
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def triangle(y, half=0.5, offset=(0.0, 0.0)):
    """A triangle in the X/Z plane at depth Y = y (metres), facing the camera."""
    ox, oz = offset
    return np.array([[ox - half, y, oz - half], [ox + half, y, oz - half], [ox, y, oz + half]], np.float32)


def mouth_crop(template):
    lips = template.vertices[np.concatenate([template.lip_upper_inner, template.lip_lower_inner])]
    z = lips[:, 2].mean()
    return (lips[:, 0].min() - 0.01, lips[:, 0].max() + 0.01, z - 0.035, z + 0.01)


def test_shape_dtype_and_head_coverage(template, extras):
    for view in ("front", "three_quarter"):
        image = render_mesh(template.vertices, template.faces, size=(160, 120), view=view, extra_meshes=extras)
        assert image.shape == (120, 160, 3) and image.dtype == np.uint8
        covered = ~background_mask(image)
        assert 0.2 < covered.mean() < 0.75, (view, covered.mean())
        assert covered[:, 0].mean() < 0.2 and covered[0, :].mean() < 0.2  # framed with a margin
    with pytest.raises(ValueError):
        render_mesh(template.vertices, template.faces, view="side")


def test_orientation_not_mirrored_or_upside_down(template):
    """The subject's left eye (+X) shows on the image's right, the chin below the eyes."""
    left_eye = template.vertices[template.eyelid_upper_L].mean(axis=0)
    chin = template.vertices[np.argmin(template.vertices[:, 2])]
    markers = [(triangle(-0.2, half=0.008, offset=(left_eye[0], left_eye[2])), [[0, 1, 2]], RED),
               (triangle(-0.2, half=0.008, offset=(chin[0], chin[2])), [[0, 1, 2]], BLUE)]
    image = render_mesh(template.vertices, template.faces, size=(128, 128), extra_meshes=markers)
    rgb = image.astype(np.int64)
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)
    blue = (rgb[..., 2] > 150) & (rgb[..., 0] < 60) & (rgb[..., 1] < 60)
    assert red.sum() > 5 and blue.sum() > 5
    red_rows, red_cols = np.nonzero(red)
    blue_rows, _ = np.nonzero(blue)
    assert red_cols.mean() > 64 + 10  # left eye on the image's right
    assert red_rows.mean() < blue_rows.mean() - 30  # eye above chin
    # Key light from the viewer's upper left: the image-left cheek is brighter than the right.
    lum = luminance(render_mesh(template.vertices, template.faces, size=(128, 128)))
    assert lum[60:80, 30:50].mean() > lum[60:80, 78:98].mean()


def test_jaw_open_darkens_the_mouth(template, extras):
    weights = np.zeros(52, np.float32)
    weights[ARKIT_INDEX["jawOpen"]] = 1.0
    open_jaw = template.blend(weights)
    crop = mouth_crop(template)
    closed = luminance(render_mesh(template.vertices, template.faces, size=(96, 96), extra_meshes=extras, crop=crop))
    opened = luminance(render_mesh(open_jaw, template.faces, size=(96, 96), extra_meshes=extras, crop=crop))
    assert np.abs(opened - closed).mean() > 15
    # The open mouth shows the dark inside: many more dark pixels, and the dark tail darker.
    assert (opened < 70).mean() > (closed < 70).mean() + 0.1
    assert np.percentile(opened, 10) < np.percentile(closed, 10) - 20
    # Same on the whole-head front render (same framing for both: the frame does not follow the jaw),
    # restricted to the mouth area, and nothing changes up at the forehead.
    front_closed = render_mesh(template.vertices, template.faces, size=(128, 128), extra_meshes=extras)
    front_open = render_mesh(open_jaw, template.faces, size=(128, 128), extra_meshes=extras)
    diff = np.abs(front_open.astype(np.int64) - front_closed.astype(np.int64)).sum(axis=-1)
    assert diff[:25].max() == 0
    mouth_rows = np.nonzero(diff.max(axis=1) > 60)[0]
    assert 64 < np.median(mouth_rows) < 120  # the change is in the lower half of the face
    face = ~background_mask(front_closed) & ~background_mask(front_open) & (diff > 0)
    lum_c, lum_o = luminance(front_closed)[face], luminance(front_open)[face]
    assert (lum_o < 70).sum() > (lum_c < 70).sum() + 100, ((lum_o < 70).sum(), (lum_c < 70).sum())


@pytest.mark.parametrize("reverse", [False, True])
def test_z_buffer_nearer_wins_in_any_order(reverse):
    near = (triangle(-0.5), [[0, 1, 2]], RED)  # camera looks along +Y: smaller Y is nearer
    far = (triangle(0.5, offset=(0.2, 0.1)), [[0, 1, 2]], BLUE)
    meshes = [far, near] if reverse else [near, far]
    image = render_mesh(EMPTY_V, EMPTY_F, size=(64, 64), extra_meshes=meshes, crop=(-1, 1, -1, 1), supersample=1)
    assert image[36, 34, 0] > 100 and image[36, 34, 2] == 0  # overlap: red (near) wins
    assert image[40, 50, 2] > 100 and image[40, 50, 0] == 0  # blue alone where red is absent
    assert background_mask(image)[2, 2]
    # As the head mesh against an extra, the nearer one still wins.
    head_far = render_mesh(far[0], far[1], size=(64, 64), extra_meshes=[near], crop=(-1, 1, -1, 1), supersample=1)
    assert head_far[36, 34, 0] > 100 and head_far[36, 34, 2] == 0


def test_crop_zooms(template):
    crop = mouth_crop(template)
    zoomed = render_mesh(template.vertices, template.faces, size=(64, 64), crop=crop)
    assert not background_mask(zoomed).any()  # the mouth box lies entirely on the face
    with pytest.raises(ValueError):
        render_mesh(template.vertices, template.faces, crop=(0.1, 0.0, 0.0, 0.1))


def test_contact_sheet_png_and_gif(tmp_path):
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    labels = [f"tile {i}" for i in range(6)]
    sheet = contact_sheet(tiles, labels, columns=4, title="a title")
    pad, label_h, title_h = render.SHEET_PAD, render.SHEET_LABEL_HEIGHT, render.SHEET_TITLE_HEIGHT
    assert sheet.dtype == np.uint8
    assert sheet.shape == (title_h + 2 * (48 + label_h + pad) + pad, 4 * (64 + pad) + pad, 3)
    # The first tile is pasted unchanged at its cell; label text leaves dark pixels under it.
    assert np.array_equal(sheet[title_h + pad:title_h + pad + 48, pad:pad + 64], tiles[0])
    assert sheet[title_h + pad + 48:title_h + pad + 48 + label_h, pad:pad + 64].min() < 128
    untitled = contact_sheet(tiles, labels, columns=3, title=None)
    assert untitled.shape == (2 * (48 + label_h + pad) + pad, 3 * (64 + pad) + pad, 3)
    with pytest.raises(ValueError):
        contact_sheet(tiles, labels[:5], columns=3, title=None)

    path = save_png(tmp_path / "sub" / "sheet.png", sheet)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (sheet.shape[1], sheet.shape[0])
        assert np.array_equal(np.asarray(im.convert("RGB")), sheet)

    gif = save_gif(tmp_path / "anim.gif", tiles, fps=25)
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 6 and im.size == (64, 48)
        assert im.info["duration"] == 40
