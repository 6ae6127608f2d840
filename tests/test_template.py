"""The shipped template head: units, axes, region data, and that it rebuilds from the pinned wheel."""

import numpy as np
import pytest

from model.data.build_template import boundary_loops
from model.template import ARKIT_INDEX, ARKIT_NAMES, TEMPLATE_PATH, load_template


@pytest.fixture(scope="module")
def template():
    return load_template()


def lip_gap_mm(template, vertices, upper, lower):
    return np.linalg.norm(vertices[..., upper, :] - vertices[..., lower, :], axis=-1) * 1000


def test_sizes_and_units(template):
    assert template.vertices.shape == (2659, 3) and template.vertices.dtype == np.float32
    assert template.faces.shape == (5032, 3) and template.faces.max() < template.num_vertices
    assert template.uvs.shape == (5032, 3, 2) and 0 <= template.uvs.min() and template.uvs.max() <= 1
    assert template.blendshapes.shape == (52, 2659, 3)
    extent = template.vertices.max(0) - template.vertices.min(0)
    assert 0.15 < extent[0] < 0.25 and 0.15 < extent[2] < 0.30  # a head in metres, not cm or mm
    left = template.vertices[template.eyelid_upper_L].mean(0)
    right = template.vertices[template.eyelid_upper_R].mean(0)
    assert 0.055 < np.linalg.norm(left - right) < 0.075  # interpupillary distance


def test_blender_axes(template):
    v = template.vertices
    eyes = v[np.concatenate([template.eyelid_upper_L, template.eyelid_upper_R])].mean(0)
    mouth = v[template.lip_upper_inner].mean(0)
    assert eyes[2] > mouth[2] + 0.03  # Z up
    nose_tip = v[np.argmin(v[:, 1])]
    assert abs(nose_tip[0]) < 0.01 and mouth[1] < v[:, 1].mean()  # face toward -Y
    assert v[template.eyelid_upper_L, 0].mean() > 0 > v[template.eyelid_upper_R, 0].mean()  # subject's left at +X


def test_blendshapes_are_arkit_and_move_the_right_places(template):
    assert len(ARKIT_NAMES) == 52 and len(set(ARKIT_NAMES)) == 52
    motion = np.linalg.norm(template.blendshapes, axis=2).max(1)
    assert motion[ARKIT_INDEX["tongueOut"]] == 0  # empty on this head, as documented
    assert (motion[[i for n, i in ARKIT_INDEX.items() if n != "tongueOut"]] > 1e-3).all()
    jaw = np.linalg.norm(template.blendshapes[ARKIT_INDEX["jawOpen"]], axis=1)
    assert template.vertices[jaw > 0.5 * jaw.max(), 2].mean() < template.vertices[template.lip_upper_inner, 2].mean()
    blink_left = np.linalg.norm(template.blendshapes[ARKIT_INDEX["eyeBlinkLeft"]], axis=1)
    assert template.vertices[blink_left > 1e-3, 0].min() > 0


def test_lip_pairs_close_at_rest_and_open_with_the_jaw(template):
    assert len(template.lip_upper_inner) == len(template.lip_lower_inner) >= 10
    neutral = lip_gap_mm(template, template.vertices, template.lip_upper_inner, template.lip_lower_inner)
    assert neutral.max() < 1.5
    w = np.zeros(52, np.float32)
    w[ARKIT_INDEX["jawOpen"]] = 1
    opened = lip_gap_mm(template, template.blend(w), template.lip_upper_inner, template.lip_lower_inner)
    assert opened.max() > 30
    w[ARKIT_INDEX["mouthClose"]] = 1  # ARKit: mouthClose with jawOpen keeps the lips together
    sealed = lip_gap_mm(template, template.blend(w), template.lip_upper_inner, template.lip_lower_inner)
    assert sealed.max() < 1.5


@pytest.mark.parametrize("side", ["L", "R"])
def test_eyelid_pairs_close_on_blink(template, side):
    upper, lower = getattr(template, f"eyelid_upper_{side}"), getattr(template, f"eyelid_lower_{side}")
    assert len(upper) == len(lower) >= 8
    opened = lip_gap_mm(template, template.vertices, upper, lower)
    w = np.zeros(52, np.float32)
    w[ARKIT_INDEX["eyeBlinkLeft" if side == "L" else "eyeBlinkRight"]] = 1
    closed = lip_gap_mm(template, template.blend(w), upper, lower)
    assert opened.max() > 7 and closed.max() < 1.5
    assert template.eyelid_mask[upper].all() and template.eyelid_mask[lower].all()


def test_region_weights(template):
    for w in (template.mouth_weights, template.upper_face_weights):
        assert w.dtype == np.float32 and w.min() >= 0 and w.max() <= 1
        assert 0 < w.mean() < 0.6
        assert ((w > 0.05) & (w < 0.95)).any()  # soft, not a hard mask
    assert (template.mouth_weights[template.lip_upper_inner] > 0.9).all()
    lids = template.upper_face_weights[template.eyelid_upper_L]
    assert lids.min() > 0.7 and lids.mean() > 0.9
    both = (template.mouth_weights > 0.5) & (template.upper_face_weights > 0.5)
    assert both.sum() < 0.01 * template.num_vertices


def test_display_meshes(template):
    for vertices, faces in ((template.eyes_vertices, template.eyes_faces),
                            (template.teeth_vertices, template.teeth_faces)):
        assert vertices.ndim == 2 and vertices.shape[1] == 3 and faces.max() < len(vertices)
    eyes = template.eyes_vertices
    assert (eyes[:, 0] > 0).any() and (eyes[:, 0] < 0).any()  # both eyes
    teeth = template.teeth_vertices.mean(0)
    assert abs(teeth[0]) < 0.01 and teeth[2] < template.vertices[template.eyelid_upper_L, 2].mean()


def test_boundary_loops_of_a_quad_with_a_hole():
    # A 4x4 grid of vertices with the middle cell missing has an outer and an inner boundary.
    faces = []
    for i in range(3):
        for j in range(3):
            if (i, j) == (1, 1):
                continue
            a, b, c, d = i * 4 + j, i * 4 + j + 1, (i + 1) * 4 + j, (i + 1) * 4 + j + 1
            faces += [(a, b, d), (a, d, c)]
    loops = sorted(boundary_loops(np.array(faces)), key=len)
    assert [len(loop) for loop in loops] == [4, 12]
    assert set(loops[0]) == {5, 6, 9, 10}


def test_rebuilds_from_the_pinned_wheel(tmp_path):
    from model.data.build_template import main

    main(["--out", str(tmp_path / "template.npz")])
    assert (tmp_path / "template.npz").read_bytes() == TEMPLATE_PATH.read_bytes()
