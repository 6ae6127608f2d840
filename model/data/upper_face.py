"""Upper-face ground truth: blinks, brow raises and frowns, gaze shifts and idle micro-motion.

These are mostly random, as in real speech, with a weak link to the audio so an audio-conditioned
prior has something to learn: blinks are three times as likely during pauses, and brow raises
are triggered by some emphasised (stressed, loud) syllables.
"""

from dataclasses import dataclass

import numpy as np

from ..template import ARKIT_INDEX

# Configured ranges; the tests check generated statistics against these.
BLINK_RATE_PER_MIN = (8.0, 25.0)
BLINK_CLOSE_S = (0.06, 0.10)
BLINK_OPEN_S = (0.12, 0.25)
BLINK_REFRACTORY_S = 0.3
DOUBLE_BLINK_P = 0.12
PAUSE_BLINK_BOOST = 3.0  # blink intensity multiplier inside pauses
BROW_RAISE_RATE_PER_MIN = (2.0, 6.0)  # spontaneous, on top of emphasis-triggered raises
EMPHASIS_RAISE_P = (0.1, 0.35)
FROWN_RATE_PER_MIN = (0.5, 4.0)
MIN_PAUSE_S = 0.12


@dataclass(frozen=True)
class UpperFaceStyle:
    """A speaker's upper-face habits, drawn once per speaker."""

    blink_rate: float = 15.0  # per minute
    raise_rate: float = 4.0  # spontaneous brow raises per minute
    emphasis_raise_p: float = 0.3  # chance that an emphasised syllable raises the brows
    frown_rate: float = 1.5  # per minute
    brow_gain: float = 1.0
    micro_motion: float = 0.03  # amplitude of idle ARKit-weight noise

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "UpperFaceStyle":
        return cls(
            blink_rate=rng.uniform(*BLINK_RATE_PER_MIN), raise_rate=rng.uniform(*BROW_RAISE_RATE_PER_MIN),
            emphasis_raise_p=rng.uniform(*EMPHASIS_RAISE_P), frown_rate=rng.uniform(*FROWN_RATE_PER_MIN),
            brow_gain=rng.uniform(0.7, 1.2), micro_motion=rng.uniform(0.015, 0.045),
        )


@dataclass(frozen=True)
class Blink:
    onset: float  # s, eyes start closing
    close: float  # s to close
    hold: float  # s closed
    open: float  # s to reopen
    amplitude: float  # eyeBlink weight when closed


@dataclass(frozen=True)
class BrowEvent:
    kind: str  # "raise" or "frown"
    onset: float  # s
    attack: float
    hold: float
    release: float
    amplitude: float
    asymmetry: float  # left gain 1 + asymmetry, right 1 - asymmetry


def pause_mask(phones: list[tuple[str, float, float]], times: np.ndarray) -> np.ndarray:
    """[T] bool: inside a silence of at least MIN_PAUSE_S."""
    mask = np.zeros(len(times), dtype=bool)
    for symbol, start, end in phones:
        if symbol == "SIL" and end - start >= MIN_PAUSE_S:
            mask |= (times >= start) & (times < end)
    return mask


def sample_blinks(duration: float, phones: list[tuple[str, float, float]], style: UpperFaceStyle,
                  rng: np.random.Generator) -> list[Blink]:
    """Blink onsets from an inhomogeneous Poisson process (by thinning on a 10 ms grid), boosted
    in pauses and normalised so the mean rate is the style's, with a refractory period."""
    grid = np.arange(0.0, duration, 0.01)
    boost = np.where(pause_mask(phones, grid), PAUSE_BLINK_BOOST, 1.0)
    intensity = _onset_rate(style.blink_rate / 60.0) * boost / boost.mean()
    fires = rng.random(len(grid)) < intensity * 0.01
    blinks, free_at = [], -np.inf
    for onset in grid[fires]:
        if onset < free_at:
            continue
        blink = _one_blink(onset, rng)
        blinks.append(blink)
        end = blink.onset + blink.close + blink.hold + blink.open
        if rng.random() < DOUBLE_BLINK_P:
            blinks.append(_one_blink(end + rng.uniform(0.03, 0.12), rng))
            end = blinks[-1].onset + blinks[-1].close + blinks[-1].hold + blinks[-1].open
        free_at = end + BLINK_REFRACTORY_S
    return blinks


def _onset_rate(blinks_per_s: float) -> float:
    """Process intensity (1/s) giving `blinks_per_s` after double blinks are added and onsets
    inside a blink or its refractory period are dropped (a dead-time correction)."""
    mean_blink = np.mean(BLINK_CLOSE_S) + 0.015 + np.mean(BLINK_OPEN_S)
    dead = (1 + DOUBLE_BLINK_P) * (mean_blink + BLINK_REFRACTORY_S) + DOUBLE_BLINK_P * 0.075
    onsets = blinks_per_s / (1 + DOUBLE_BLINK_P)
    return onsets / max(1.0 - onsets * dead, 0.2)


def _one_blink(onset: float, rng: np.random.Generator) -> Blink:
    return Blink(onset, rng.uniform(*BLINK_CLOSE_S), rng.uniform(0.0, 0.03), rng.uniform(*BLINK_OPEN_S),
                 rng.uniform(0.9, 1.0))


def sample_brow_events(duration: float, emphasis: np.ndarray, style: UpperFaceStyle,
                       rng: np.random.Generator) -> list[BrowEvent]:
    """Spontaneous raises and frowns (Poisson) plus raises at a share of the emphasis times (s)."""
    events = []
    for kind, rate in (("raise", style.raise_rate), ("frown", style.frown_rate)):
        count = rng.poisson(rate / 60.0 * duration)
        events += [_brow(kind, t, style, rng) for t in np.sort(rng.uniform(0, duration, count))]
    for t in emphasis:
        if rng.random() < style.emphasis_raise_p:
            events.append(_brow("raise", t - rng.uniform(0.05, 0.15), style, rng))
    return sorted(events, key=lambda e: e.onset)


def _brow(kind: str, onset: float, style: UpperFaceStyle, rng: np.random.Generator) -> BrowEvent:
    amplitude = style.brow_gain * (rng.uniform(0.3, 0.8) if kind == "raise" else rng.uniform(0.2, 0.6))
    return BrowEvent(kind, onset, rng.uniform(0.1, 0.2), rng.uniform(0.1, 0.6), rng.uniform(0.2, 0.4),
                     float(min(amplitude, 1.0)), rng.uniform(-0.2, 0.2))


def _envelope(times: np.ndarray, onset: float, attack: float, hold: float, release: float) -> np.ndarray:
    """[T] in [0, 1]: smooth rise over `attack`, flat for `hold`, smooth fall over `release` (s)."""
    up = np.clip((times - onset) / attack, 0, 1)
    down = np.clip((onset + attack + hold + release - times) / release, 0, 1)
    x = np.minimum(up, down)
    return x * x * (3 - 2 * x)


def _smooth_noise(rng: np.random.Generator, n: int, fps: float, sigma_s: float, channels: int) -> np.ndarray:
    """[n, channels] Gaussian-filtered noise with unit standard deviation."""
    sigma = max(sigma_s * fps, 1e-3)
    taps = np.arange(-int(3 * sigma), int(3 * sigma) + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    noise = rng.standard_normal((n + len(taps) - 1, channels))
    smooth = np.stack([np.convolve(noise[:, c], kernel, mode="valid") for c in range(channels)], axis=1)
    return smooth / (np.sqrt((kernel**2).sum()) + 1e-12)


def _gaze(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[T, 2] gaze (horizontal, vertical) in [-1, 1]: fixations of 0.5-3 s joined by quick saccades."""
    gaze, t, current = np.zeros((len(times), 2)), 0.0, np.zeros(2)
    end = times[-1] if len(times) else 0.0
    while t <= end:
        target = rng.normal(0, 0.25, 2).clip(-0.6, 0.6)
        gaze += (target - current) * np.clip((times - t) / 0.04, 0, 1)[:, None]
        current, t = target, t + rng.uniform(0.5, 3.0)
    return gaze


def upper_face_weights(times: np.ndarray, fps: float, blinks: list[Blink], brows: list[BrowEvent],
                       style: UpperFaceStyle, rng: np.random.Generator) -> np.ndarray:
    """ARKit weights [T, 52] for eyes and brows (other columns: idle micro-motion only)."""
    w = np.zeros((len(times), len(ARKIT_INDEX)))
    blink = np.zeros(len(times))
    for b in blinks:
        blink = np.maximum(blink, b.amplitude * _envelope(times, b.onset, b.close, b.hold, b.open))
    raise_l, raise_r, frown_l, frown_r = (np.zeros(len(times)) for _ in range(4))
    for e in brows:
        env = e.amplitude * _envelope(times, e.onset, e.attack, e.hold, e.release)
        left, right = env * (1 + e.asymmetry), env * (1 - e.asymmetry)
        if e.kind == "raise":
            raise_l, raise_r = np.maximum(raise_l, left), np.maximum(raise_r, right)
        else:
            frown_l, frown_r = np.maximum(frown_l, left), np.maximum(frown_r, right)
    gaze = _gaze(times, rng)
    for side, raised, frown in (("Left", raise_l, frown_l), ("Right", raise_r, frown_r)):
        w[:, ARKIT_INDEX["eyeBlink" + side]] = blink
        w[:, ARKIT_INDEX["browOuterUp" + side]] = 0.8 * raised
        w[:, ARKIT_INDEX["browDown" + side]] = frown
        w[:, ARKIT_INDEX["eyeWide" + side]] = 0.25 * raised * (1 - blink)
        w[:, ARKIT_INDEX["eyeSquint" + side]] = 0.3 * frown
        # Looking toward the subject's left turns the left eye out and the right eye in.
        out, inward = np.clip(gaze[:, 0], 0, None), np.clip(-gaze[:, 0], 0, None)
        w[:, ARKIT_INDEX["eyeLookOut" + side]] = out if side == "Left" else inward
        w[:, ARKIT_INDEX["eyeLookIn" + side]] = inward if side == "Left" else out
        w[:, ARKIT_INDEX["eyeLookUp" + side]] = np.clip(gaze[:, 1], 0, None)
        w[:, ARKIT_INDEX["eyeLookDown" + side]] = np.clip(-gaze[:, 1], 0, None)
    w[:, ARKIT_INDEX["browInnerUp"]] = 0.5 * (raise_l + raise_r) + 0.3 * (frown_l + frown_r)

    idle = ["browInnerUp", "mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft", "cheekSquintRight",
            "eyeSquintLeft", "eyeSquintRight", "noseSneerLeft", "noseSneerRight"]
    noise = _smooth_noise(rng, len(times), fps, sigma_s=0.4, channels=len(idle))
    for c, name in enumerate(idle):
        w[:, ARKIT_INDEX[name]] += style.micro_motion * np.abs(noise[:, c])
    return np.clip(w, 0.0, 1.0)
