"""Shape-key baking math: scene frame counts, resampling, region scaling and the compact key basis."""

import numpy as np
import pytest

from model.bake import (
    COMPACT_TOLERANCE_M,
    compact_basis,
    max_error,
    resample_to_scene,
    scale_regions,
    scene_frame_count,
    synthetic_displacements,
)
from model.template import ARKIT_NAMES, load_template

NTSC_FPS = 30000 / 1001
QUADRATIC_GAIN_PER_M = 5.0  # nonlinear test motion: displacements d (metres) plus 5 * d * |d|


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.mark.parametrize("fps", [24, 25, 30, 60, NTSC_FPS])
def test_matching_rates_keep_every_frame(fps):
    for frames in (1, 2, 239, 240, 14400):
        assert scene_frame_count(frames, fps, fps) == frames


@pytest.mark.parametrize("scene_fps", [24, 25, 30, 60, NTSC_FPS])
def test_scene_frames_cover_the_clip_and_no_more(scene_fps):
    model_fps = 30.0
    for frames in (1, 2, 31, 301, 1800):
        count = scene_frame_count(frames, model_fps, scene_fps)
        duration = (frames - 1) / model_fps
        assert (count - 1) / scene_fps <= duration + 1e-9
        assert count / scene_fps > duration


def test_scene_frame_counts_by_hand():
    assert scene_frame_count(0, 30, 24) == 0
    assert scene_frame_count(301, 30, 24) == 241  # 10 s: frames 0..240 at 24 fps
    assert scene_frame_count(301, 30, 60) == 601
    assert scene_frame_count(301, 30, 25) == 251
    assert scene_frame_count(301, 30, NTSC_FPS) == 300  # 299 / 29.97 = 9.977 s, 300 / 29.97 > 10 s


def test_resampling_at_the_model_rate_is_an_exact_copy():
    vertices = np.random.default_rng(0).standard_normal((50, 7, 3)).astype(np.float32)
    resampled = resample_to_scene(vertices, 30.0, 30.0)
    assert resampled.dtype == np.float32
    np.testing.assert_array_equal(resampled, vertices)
    assert not np.shares_memory(resampled, vertices)


def test_resampling_interpolates_linearly_between_model_frames():
    vertices = np.random.default_rng(1).standard_normal((11, 5, 3)).astype(np.float32)
    doubled = resample_to_scene(vertices, 30.0, 60.0)
    assert doubled.shape == (21, 5, 3) and doubled.dtype == np.float32
    np.testing.assert_array_equal(doubled[::2], vertices)  # scene frames on model frames are exact
    np.testing.assert_allclose(doubled[1::2], 0.5 * (vertices[:-1] + vertices[1:]), atol=1e-6)
    quarter = resample_to_scene(vertices, 1.0, 4.0)  # scene frame 5 is 1/4 of the way from 1 to 2
    np.testing.assert_allclose(quarter[5], 0.75 * vertices[1] + 0.25 * vertices[2], atol=1e-6)


def test_resampling_a_linear_motion_is_exact_at_any_rate():
    times = np.arange(301) / 30.0
    vertices = np.broadcast_to((times[:, None, None] * [1.0, -2.0, 0.5]), (301, 4, 3)).astype(np.float32)
    resampled = resample_to_scene(vertices, 30.0, NTSC_FPS)
    scene_times = np.arange(len(resampled)) / NTSC_FPS
    np.testing.assert_allclose(resampled[:, 0], scene_times[:, None] * [1.0, -2.0, 0.5], atol=1e-5)


def test_resampling_a_single_frame():
    vertices = np.ones((1, 3, 3), np.float32)
    for scene_fps in (24, 30, 60, NTSC_FPS):
        np.testing.assert_array_equal(resample_to_scene(vertices, 30.0, scene_fps), vertices)


def test_scale_regions(template):
    vertices = template.vertices + synthetic_displacements(template, 4)
    w = template.mouth_weights
    np.testing.assert_allclose(scale_regions(vertices, template.vertices, w), vertices, atol=1e-7)
    np.testing.assert_allclose(scale_regions(vertices, template.vertices, w, 0, 0),
                               np.broadcast_to(template.vertices, vertices.shape), atol=1e-7)
    doubled = scale_regions(vertices, template.vertices, w, lips=2.0, upper=2.0)
    assert doubled.dtype == np.float32
    np.testing.assert_allclose(doubled - template.vertices, 2 * (vertices - template.vertices), atol=1e-6)
    lips_only = scale_regions(vertices, template.vertices, w, lips=1.0, upper=0.0)
    mouth, still = w == 1, w == 0
    assert mouth.any() and still.any()
    np.testing.assert_allclose(lips_only[:, mouth], vertices[:, mouth], atol=1e-7)
    np.testing.assert_allclose(lips_only[:, still], np.broadcast_to(template.vertices[still], (4, still.sum(), 3)),
                               atol=1e-7)


def test_compact_basis_finds_the_rank_of_low_rank_motion(template):
    displacements = synthetic_displacements(template, 300, shapes=10)
    basis, weights = compact_basis(displacements)
    assert basis.dtype == weights.dtype == np.float32
    assert basis.shape[1:] == displacements.shape[1:] and weights.shape == (300, len(basis))
    assert 1 <= len(basis) <= 10
    assert max_error(displacements, basis, weights) <= COMPACT_TOLERANCE_M


def test_compact_basis_uses_the_fewest_keys(template):
    displacements = synthetic_displacements(template, 1200)  # over CHUNK_FRAMES: searched on a sample first
    basis, weights = compact_basis(displacements)
    assert len(basis) <= len(ARKIT_NAMES) - 1  # the template's tongueOut shape is all zeros
    assert max_error(displacements, basis, weights) <= COMPACT_TOLERANCE_M
    fewer = len(basis) - 1  # its leading keys refitted by least squares still miss the tolerance
    refit = np.linalg.lstsq(basis[:fewer].reshape(fewer, -1).T, displacements.reshape(len(displacements), -1).T,
                            rcond=None)[0].T
    assert max_error(displacements, basis[:fewer], refit.astype(np.float32)) > COMPACT_TOLERANCE_M


def test_compact_basis_respects_a_tighter_tolerance(template):
    displacements = synthetic_displacements(template, 150, quadratic_gain=QUADRATIC_GAIN_PER_M)
    loose, loose_weights = compact_basis(displacements)
    assert max_error(displacements, loose, loose_weights) <= COMPACT_TOLERANCE_M
    tight_tolerance = COMPACT_TOLERANCE_M / 10
    basis, weights = compact_basis(displacements, tolerance=tight_tolerance)
    assert len(basis) > len(loose)
    assert max_error(displacements, basis, weights) <= tight_tolerance


def test_compact_basis_of_no_motion_is_empty():
    basis, weights = compact_basis(np.zeros((12, 5, 3), np.float32))
    assert basis.shape == (0, 5, 3) and weights.shape == (12, 0)
    assert basis.dtype == weights.dtype == np.float32
    assert max_error(np.zeros((12, 5, 3), np.float32), basis, weights) == 0.0


def test_compact_basis_of_a_single_frame(template):
    displacements = synthetic_displacements(template, 1)
    basis, weights = compact_basis(displacements)
    assert len(basis) == 1
    assert max_error(displacements, basis, weights) <= COMPACT_TOLERANCE_M


def test_max_error_is_the_largest_vertex_distance():
    displacements = np.zeros((3, 4, 3), np.float32)
    displacements[2, 1] = [0.003, 0.004, 0.0]  # 5 mm at one vertex of one frame
    basis = np.zeros((1, 4, 3), np.float32)
    assert max_error(displacements, basis, np.zeros((3, 1), np.float32)) == pytest.approx(0.005)
    basis[0, 1] = [0.003, 0.004, 0.0]
    assert max_error(displacements, basis, np.array([[0], [0], [1]], np.float32)) == 0.0
