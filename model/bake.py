"""Model output -> shape-key data: scene-rate resampling, region scaling and a compact key basis.

    python -m model.bake --bench      # compact_basis time, key count and error on synthetic motion

The Blender side (`meshtalk_blender`) turns vertices [T, V, 3] at the model's frame rate into
relative shape keys: it resamples them to the scene's frame times (`resample_to_scene`), lets the
artist scale the lips and the upper face (`scale_regions`), and stores the motion as B shape keys
with one weight curve each (`compact_basis`): weights [N, B] @ basis [B, V, 3] reproduces every
frame to within `COMPACT_TOLERANCE_M` per vertex. numpy and torch only: no bpy here.
"""

import argparse
import math
import sys
import time

import numpy as np
import torch

from .template import ARKIT_NAMES, Template, load_template

COMPACT_TOLERANCE_M = 1e-4  # largest per-vertex error of the shape-key reconstruction (0.1 mm)
FRAME_EPSILON = 1e-6  # fractions of a frame this close to a whole frame count as that frame
INITIAL_RANK = 32  # size of the first range-finder blocks; later ones grow the rank by half
SKETCH_PASSES = 1  # applications of R.T @ R (R: the residual) to each random probe; at least 1
CHUNK_FRAMES = 1024  # frames per block when forming residuals (bounds the working memory)
VIOLATION_FRAMES = 64  # worst frames of a failed check that join the frames searched first
SKETCH_SEED = 0  # the random sketch is seeded so equal input gives an equal basis
SYNTHETIC_SMOOTHING_FRAMES = 3.0  # std of the Gaussian that smooths synthetic blendshape weights over time
BENCH_SECONDS = (10, 60, 600)
BENCH_FPS = 24
BENCH_QUADRATIC_GAIN_PER_M = 5.0  # adds up to ~1 cm of nonlinear motion to ~5 cm displacements


def scene_frame_count(model_frames: int, model_fps: float, scene_fps: float) -> int:
    """Number N of scene frames n = 0..N-1 whose time n / scene_fps lies in the clip.

    The clip spans [0, (model_frames - 1) / model_fps] seconds; a scene frame within
    FRAME_EPSILON of the end still counts, so equal rates give N == model_frames.
    """
    if model_frames <= 0:
        return 0
    last = (model_frames - 1) * scene_fps / model_fps  # the clip's end in scene frames
    return math.floor(last + FRAME_EPSILON) + 1


def resample_to_scene(vertices: np.ndarray, model_fps: float, scene_fps: float) -> np.ndarray:
    """Vertices float32 [T, V, 3] metres at times t / model_fps -> float32 [N, V, 3] at n / scene_fps.

    Each scene frame interpolates linearly between its two neighbouring model frames
    (N from `scene_frame_count`); equal rates return an exact copy.
    """
    vertices = np.asarray(vertices, dtype=np.float32)
    if model_fps == scene_fps:
        return vertices.copy()
    count = scene_frame_count(len(vertices), model_fps, scene_fps)
    position = np.arange(count) * (model_fps / scene_fps)  # in model frames
    nearest = np.round(position)
    position = np.where(np.abs(position - nearest) < FRAME_EPSILON, nearest, position)
    before = np.minimum(np.floor(position).astype(np.int64), len(vertices) - 1)
    after = np.minimum(before + 1, len(vertices) - 1)
    fraction = (position - before).astype(np.float32)[:, None, None]
    return vertices[before] + fraction * (vertices[after] - vertices[before])


def scale_regions(vertices: np.ndarray, template: np.ndarray, mouth_weights: np.ndarray,
                  lips: float = 1.0, upper: float = 1.0) -> np.ndarray:
    """Scale the motion of the mouth and the rest of the face apart.

    vertices [..., V, 3] and template [V, 3] in metres, soft mouth weights [V] in [0, 1].
    Returns float32 [..., V, 3]: template + (lips * w + upper * (1 - w)) * (vertices - template),
    so lips = upper = 1 keeps the motion and 0 gives the template.
    """
    template = np.asarray(template, dtype=np.float32)
    w = np.asarray(mouth_weights, dtype=np.float32)[:, None]
    gain = np.float32(lips) * w + np.float32(upper) * (1.0 - w)
    return template + gain * (np.asarray(vertices, dtype=np.float32) - template)


def compact_basis(displacements: np.ndarray,
                  tolerance: float = COMPACT_TOLERANCE_M) -> tuple[np.ndarray, np.ndarray]:
    """The fewest shape keys that reproduce every frame to within `tolerance` per vertex.

    displacements: float32 [N, V, 3] metres, vertices minus the rest shape (relative shape keys
    add weighted displacements to the basis mesh, so no mean is removed).
    Returns (basis float32 [B, V, 3] metres, weights float32 [N, B]) with
    max_error(displacements, basis, weights) <= tolerance, checked in float32 on every frame.

    A randomized range finder grows an orthonormal basis of the frames' span (rank 32, 64, 96, 144,
    ...: each step sketches the part of the data not yet captured), and an eigendecomposition
    inside that span orders its directions by energy (PCA without mean removal). The fewest leading directions are
    found by bisection on a sample of frames (at first CHUNK_FRAMES evenly spaced ones; a count
    that fails there fails on all frames) and then checked on all frames; the worst frames of a
    failed check join the sample and the bisection resumes above that count. The span grows again
    if even all its directions fail. The error is taken to shrink as directions are added, as
    nested truncations do. Memory beyond the input: basis, weights, the sample, a residual block.
    Raises ValueError if even min(N, 3V) directions miss the tolerance: float32 sketches resolve
    directions down to about 1e-6 m on centimetre-scale motion, far below COMPACT_TOLERANCE_M.
    """
    frames, num_vertices = displacements.shape[:2]
    width = 3 * num_vertices
    data = torch.from_numpy(np.require(displacements, np.float32, ("C", "W")).reshape(frames, width))
    if frames == 0 or _max_error(data, data.new_zeros(frames, 0), data.new_zeros(0, width), tolerance) <= tolerance:
        return np.zeros((0, num_vertices, 3), np.float32), np.zeros((frames, 0), np.float32)
    sample = torch.arange(0, frames, math.ceil(frames / CHUNK_FRAMES))  # frames searched first
    generator = torch.Generator().manual_seed(SKETCH_SEED)
    span = data.new_zeros(width, 0)  # orthonormal columns [3V, k]
    coefficients = data.new_zeros(frames, 0)  # data @ span, [N, k]
    while True:
        block = min(max(INITIAL_RANK, span.shape[1] // 2), min(frames, width) - span.shape[1])
        new = _sketch_residual_span(data, span, coefficients, block, generator)
        span = torch.cat([span, new], dim=1)
        coefficients = torch.cat([coefficients, data @ new], dim=1)
        # principal directions within the span: eigenvectors of the coefficients' Gram matrix, in
        # float64 numpy (MKL's LAPACK through torch stalls when the cores are busy)
        coefficients64 = coefficients.numpy().astype(np.float64)
        _, directions = np.linalg.eigh(coefficients64.T @ coefficients64)  # ascending energy
        rotation = torch.from_numpy(np.ascontiguousarray(directions[:, ::-1].T, np.float32))  # [k, k]
        basis = rotation @ span.T  # [k, 3V], by decreasing energy
        weights = coefficients @ rotation.T  # [N, k]
        failing = -1  # the largest count known to fail
        while True:
            failing = _last_failing(data[sample], weights[sample], basis, failing, tolerance)
            if failing == len(basis):
                break  # even the whole span fails on the sample: grow it
            count = failing + 1
            violations = _worst_violations(data, weights[:, :count], basis[:count], tolerance)
            if len(violations) == 0:
                return (basis[:count].contiguous().numpy().reshape(count, num_vertices, 3),
                        weights[:, :count].contiguous().numpy())
            sample, failing = torch.cat([sample, violations]).unique(), count
        if span.shape[1] == min(frames, width):
            raise ValueError(f"a tolerance of {tolerance} m is below what float32 sketches resolve here")


def max_error(displacements: np.ndarray, basis: np.ndarray, weights: np.ndarray) -> float:
    """Largest Euclidean per-vertex distance in metres between displacements [N, V, 3] and their
    reconstruction weights [N, B] @ basis [B, V, 3], over every frame and vertex (float32)."""
    frames, num_vertices = displacements.shape[:2]
    data = torch.from_numpy(np.require(displacements, np.float32, ("C", "W")).reshape(frames, 3 * num_vertices))
    flat_basis = torch.from_numpy(np.require(basis, np.float32, ("C", "W")).reshape(len(basis), 3 * num_vertices))
    return _max_error(data, torch.from_numpy(np.require(weights, np.float32, ("C", "W"))), flat_basis)


def _block_errors(data: torch.Tensor, weights: torch.Tensor, basis: torch.Tensor):
    """Per-frame max vertex error (metres) of data [N, 3V] against weights [N, B] @ basis [B, 3V]:
    yields (first frame, errors [n]) for blocks of CHUNK_FRAMES frames, reusing one residual buffer."""
    frames, width = data.shape
    residual = data.new_empty(min(frames, CHUNK_FRAMES), width)
    for first in range(0, frames, CHUNK_FRAMES):
        last = min(first + CHUNK_FRAMES, frames)
        block = residual[: last - first]
        torch.addmm(data[first:last], weights[first:last], basis, alpha=-1.0, out=block)
        block.square_()  # per-vertex sums over strided x, y, z columns: far faster than .sum(-1)
        squared = block[:, 0::3].add(block[:, 1::3]).add_(block[:, 2::3])
        yield first, squared.max(dim=1).values.sqrt_()


def _max_error(data: torch.Tensor, weights: torch.Tensor, basis: torch.Tensor, stop_above: float = math.inf) -> float:
    """Max per-vertex error of data [N, 3V] against weights [N, B] @ basis [B, 3V]; returns as soon
    as a block of frames exceeds `stop_above` (then it is only a lower bound)."""
    worst = 0.0
    for _, errors in _block_errors(data, weights, basis):
        worst = max(worst, errors.max().item())
        if worst > stop_above:
            break
    return worst


def _worst_violations(data: torch.Tensor, weights: torch.Tensor, basis: torch.Tensor,
                      tolerance: float) -> torch.Tensor:
    """Indices (int64 [<= VIOLATION_FRAMES]) of the worst frames over `tolerance` in the first block
    of frames that has any; empty when every frame fits."""
    for first, errors in _block_errors(data, weights, basis):
        over = torch.nonzero(errors > tolerance).squeeze(1)
        if len(over):
            return first + over[errors[over].argsort(descending=True)[:VIOLATION_FRAMES]]
    return torch.zeros(0, dtype=torch.int64)


def _last_failing(data: torch.Tensor, weights: torch.Tensor, basis: torch.Tensor, failing: int,
                  tolerance: float) -> int:
    """The largest count of leading directions of basis [k, 3V] that misses `tolerance` on data [n, 3V]
    (weights [n, k]), by bisection above `failing`, a count known to fail (-1: none); k if all fail."""
    fitting = len(basis)
    if _max_error(data, weights, basis, tolerance) > tolerance:
        return fitting
    while fitting - failing > 1:
        middle = (failing + fitting) // 2
        if _max_error(data, weights[:, :middle], basis[:middle], tolerance) <= tolerance:
            fitting = middle
        else:
            failing = middle
    return failing


def _sketch_residual_span(data: torch.Tensor, span: torch.Tensor, coefficients: torch.Tensor, block: int,
                          generator: torch.Generator) -> torch.Tensor:
    """`block` orthonormal columns [3V, block], orthogonal to `span` [3V, k], that capture the most
    of the residual R = data [N, 3V] - coefficients [N, k] @ span.T: (R.T @ R)^SKETCH_PASSES applied
    to a Gaussian probe. R is formed explicitly, CHUNK_FRAMES frames at a time, so float32 rounding
    stays at the scale of the data's entries; projecting the span out of data.T @ data instead
    leaves rounding at the scale of its largest singular value, which swamps the small directions."""
    frames, width = data.shape
    probe = torch.randn(width, block, generator=generator)
    residual = data.new_empty(min(frames, CHUNK_FRAMES), width)
    for _ in range(SKETCH_PASSES):
        sketch = data.new_zeros(width, block)
        for first in range(0, frames, CHUNK_FRAMES):
            last = min(first + CHUNK_FRAMES, frames)
            chunk = residual[: last - first]
            torch.addmm(data[first:last], coefficients[first:last], span.T, alpha=-1.0, out=chunk)
            sketch.addmm_(chunk.T, chunk @ probe)  # R.T @ R = sum over blocks of frames
        probe = sketch
    for _ in range(2):  # orthonormalise twice: once leaves float32 cancellation error in the span
        probe -= span @ (span.T @ probe)
        probe = torch.from_numpy(np.linalg.qr(probe.numpy())[0])
    return probe


def synthetic_displacements(template: Template, frames: int, shapes: int = len(ARKIT_NAMES),
                            quadratic_gain: float = 0.0, seed: int = 0) -> np.ndarray:
    """Smooth synthetic face motion: displacements float32 [frames, V, 3] metres from the rest shape.

    The first `shapes` ARKit blendshapes are driven by Gaussian noise smoothed over time (std
    SYNTHETIC_SMOOTHING_FRAMES) and squashed into [0, 1] by a logistic, so the motion has rank
    <= shapes; a nonzero `quadratic_gain` (per metre) adds gain * d * |d| to each displacement d,
    a nonlinear term like a rig's correctives that leaves no exact low rank.
    """
    rng = np.random.default_rng(seed)
    radius = math.ceil(3 * SYNTHETIC_SMOOTHING_FRAMES)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / SYNTHETIC_SMOOTHING_FRAMES) ** 2)
    noise = rng.standard_normal((frames + 2 * radius, shapes))
    smooth = np.stack([np.convolve(noise[:, c], taps / np.linalg.norm(taps), mode="valid") for c in range(shapes)],
                      axis=1)
    weights = np.zeros((frames, len(ARKIT_NAMES)), np.float32)
    weights[:, :shapes] = 1.0 / (1.0 + np.exp(-2.0 * smooth))
    displacements = template.blend(weights) - template.vertices
    return displacements + np.float32(quadratic_gain) * displacements * np.abs(displacements)


def bench() -> None:
    """Print compact_basis's time, key count and max error on synthetic motion of all ARKit shapes,
    without and with a quadratic term (BENCH_QUADRATIC_GAIN_PER_M)."""
    template = load_template()
    for seconds in BENCH_SECONDS:
        frames = seconds * BENCH_FPS
        for gain, kind in ((0.0, "ARKit blend (rank 51)"), (BENCH_QUADRATIC_GAIN_PER_M, "ARKit + quadratic")):
            displacements = synthetic_displacements(template, frames, quadratic_gain=gain)
            start = time.perf_counter()
            basis, weights = compact_basis(displacements)
            elapsed = time.perf_counter() - start
            error_mm = 1000 * max_error(displacements, basis, weights)
            print(f"{seconds:4d} s at {BENCH_FPS} fps ({frames} frames x {template.num_vertices} vertices), "
                  f"{kind:21s}: {elapsed:6.2f} s, B = {len(basis):3d}, max error {error_mm:.4f} mm", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Shape-key baking math; --bench times compact_basis.")
    parser.add_argument("--bench", action="store_true", help="time compact_basis on synthetic 24 fps motion")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.print_help()
        return 0
    bench()
    return 0


if __name__ == "__main__":
    sys.exit(main())
