"""Lower-face ground truth from phone timing: Cohen-Massaro dominance coarticulation to ARKit weights.

Each phone has articulatory targets (jaw, lip opening, rounding, funnel, spread) and a dominance
D(t) = alpha * exp(-theta * |t - c|) with a slower rise (anticipation) than decay. The face at time
t is the dominance-weighted mix of the targets, computed separately for the jaw and the lips.
Two gestures are hard constraints on top of the mix, because a viewer notices when they fail:
bilabials (P B M) seal the lips and labiodentals (F V) tuck the lower lip under the upper teeth,
each from `lead` seconds before the phone starts (motion precedes sound) through most of the phone.
Jaw and lip opening scale with the speech loudness, so articulation follows the audio.
"""

from dataclasses import dataclass

import numpy as np

from ..template import ARKIT_INDEX

# Articulatory parameters, in this order, each in [0, 1].
PARAMS = ("jaw", "open", "round", "funnel", "spread")
_J, _O, _R, _F, _S = range(len(PARAMS))

# Target (jaw, open, round, funnel, spread) per ARPAbet phone; diphthongs have two targets, at
# 30 % and 80 % of the phone.
TARGETS: dict[str, tuple[tuple[float, ...], ...]] = {
    "AA": ((0.65, 0.30, 0.00, 0.05, 0.10),),
    "AE": ((0.55, 0.30, 0.00, 0.00, 0.35),),
    "AH": ((0.40, 0.20, 0.00, 0.05, 0.10),),
    "AO": ((0.55, 0.20, 0.35, 0.35, 0.00),),
    "AW": ((0.60, 0.30, 0.00, 0.05, 0.10), (0.15, 0.10, 0.70, 0.25, 0.00)),
    "AY": ((0.60, 0.30, 0.00, 0.05, 0.10), (0.15, 0.05, 0.00, 0.00, 0.45)),
    "EH": ((0.32, 0.20, 0.00, 0.00, 0.30),),
    "ER": ((0.20, 0.10, 0.35, 0.25, 0.00),),
    "EY": ((0.32, 0.20, 0.00, 0.00, 0.30), (0.15, 0.05, 0.00, 0.00, 0.45)),
    "IH": ((0.20, 0.10, 0.00, 0.00, 0.35),),
    "IY": ((0.12, 0.05, 0.00, 0.00, 0.50),),
    "OW": ((0.40, 0.20, 0.40, 0.35, 0.00), (0.15, 0.10, 0.70, 0.25, 0.00)),
    "OY": ((0.40, 0.20, 0.45, 0.35, 0.00), (0.15, 0.05, 0.00, 0.00, 0.45)),
    "UH": ((0.20, 0.10, 0.45, 0.25, 0.00),),
    "UW": ((0.12, 0.05, 0.75, 0.20, 0.00),),
    "B": ((0.08, 0.0, 0.0, 0.0, 0.0),), "P": ((0.08, 0.0, 0.0, 0.0, 0.0),), "M": ((0.08, 0.0, 0.0, 0.0, 0.0),),
    "F": ((0.08, 0.0, 0.0, 0.0, 0.10),), "V": ((0.08, 0.0, 0.0, 0.0, 0.10),),
    "TH": ((0.14, 0.10, 0.0, 0.0, 0.10),), "DH": ((0.14, 0.10, 0.0, 0.0, 0.10),),
    "S": ((0.05, 0.05, 0.0, 0.0, 0.35),), "Z": ((0.05, 0.05, 0.0, 0.0, 0.35),),
    "SH": ((0.10, 0.10, 0.40, 0.55, 0.0),), "ZH": ((0.10, 0.10, 0.40, 0.55, 0.0),),
    "CH": ((0.10, 0.10, 0.40, 0.50, 0.0),), "JH": ((0.10, 0.10, 0.40, 0.50, 0.0),),
    "T": ((0.14, 0.05, 0.0, 0.0, 0.10),), "D": ((0.14, 0.05, 0.0, 0.0, 0.10),),
    "N": ((0.14, 0.05, 0.0, 0.0, 0.10),), "L": ((0.18, 0.10, 0.0, 0.0, 0.05),),
    "K": ((0.20, 0.05, 0.0, 0.0, 0.0),), "G": ((0.20, 0.05, 0.0, 0.0, 0.0),), "NG": ((0.18, 0.05, 0.0, 0.0, 0.0),),
    "HH": ((0.25, 0.10, 0.0, 0.0, 0.0),),
    "R": ((0.15, 0.05, 0.45, 0.30, 0.0),), "W": ((0.10, 0.05, 0.85, 0.20, 0.0),), "Y": ((0.10, 0.05, 0.0, 0.0, 0.35),),
    "SIL": ((0.0, 0.0, 0.0, 0.0, 0.0),),
}
REST_SPACING_S = 0.08
BILABIALS = frozenset({"P", "B", "M"})
LABIODENTALS = frozenset({"F", "V"})
# Dominance strength (jaw, lips): consonants made with the tongue let the lips follow the vowels.
_WEAK_LIPS = {"T", "D", "N", "L", "K", "G", "NG", "HH", "TH", "DH", "Y", "R"}
_STRONG_LIPS = {"W", "UW", "SH", "ZH", "CH", "JH", "S", "Z"} | BILABIALS | LABIODENTALS


def _alpha(phone: str) -> tuple[float, float]:
    if phone == "SIL":
        return 1.5, 1.5
    if phone in _WEAK_LIPS:
        return 0.6, 0.25
    if phone in _STRONG_LIPS:
        return 1.2, 2.5
    return 1.0, 1.0


@dataclass(frozen=True)
class ArticulationStyle:
    """A speaker's way of articulating; all drawn once per speaker."""

    gain: float = 1.0  # scales jaw and lip opening
    asymmetry: float = 0.0  # left side gain is (1 + asymmetry), right side (1 - asymmetry)
    lead: float = 0.05  # seconds the lip gestures precede the sound
    rise: float = 0.065  # seconds: dominance half-life before a target (anticipation)
    decay: float = 0.05  # seconds: dominance half-life after a target (carry-over)
    loudness_coupling: float = 0.5  # 0: articulation ignores loudness, 1: fully proportional

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "ArticulationStyle":
        return cls(
            gain=rng.uniform(0.75, 1.3), asymmetry=rng.uniform(-0.15, 0.15), lead=rng.uniform(0.02, 0.09),
            rise=rng.uniform(0.05, 0.08), decay=rng.uniform(0.04, 0.06), loudness_coupling=rng.uniform(0.3, 0.7),
        )


def _target_times(symbol: str, start: float, end: float, lead: float) -> list[float]:
    """Centres (s) of a phone's targets. Diphthongs have two, at 30 % and 80 %. A pause has a
    rest target every REST_SPACING_S through it, so the face settles to rest inside long pauses and
    only the last ~100 ms before speech carry anticipation."""
    if symbol == "SIL":
        count = max(1, int(round((end - start) / REST_SPACING_S)))
        return list(np.linspace(start, end, count + 2)[1:-1])
    fractions = (0.5,) if len(TARGETS[symbol]) == 1 else (0.3, 0.8)
    return [start + f * (end - start) - lead for f in fractions]


def _targets(phones: list[tuple[str, float, float]], lead: float):
    """Target centres [P] s, targets [P, 5], dominance [P, 2] (jaw, lips) for every phone target."""
    centres, targets, alphas = [], [], []
    for symbol, start, end in phones:
        times = _target_times(symbol, start, end, lead)
        shapes = TARGETS[symbol] * len(times) if symbol == "SIL" else TARGETS[symbol]
        centres += times
        targets += shapes
        alphas += [_alpha(symbol)] * len(times)
    return np.array(centres), np.array(targets), np.array(alphas)


def _dominance_mix(times: np.ndarray, centres: np.ndarray, targets: np.ndarray, alphas: np.ndarray,
                   style: ArticulationStyle) -> np.ndarray:
    """Dominance-weighted targets [T, 5]; jaw uses the jaw dominance, lip parameters the lip one."""
    dt = times[:, None] - centres[None, :]
    half_life = np.where(dt < 0, style.rise, style.decay)
    shape = np.exp(-np.log(2.0) * np.abs(dt) / half_life)  # [T, P]
    jaw_d, lip_d = shape * alphas[None, :, 0], shape * alphas[None, :, 1]
    mix = np.empty((len(times), len(PARAMS)))
    mix[:, _J] = (jaw_d @ targets[:, _J]) / (jaw_d.sum(1) + 1e-9)
    mix[:, 1:] = (lip_d @ targets[:, 1:]) / (lip_d.sum(1, keepdims=True) + 1e-9)
    return mix


def _gesture(times: np.ndarray, phones: list[tuple[str, float, float]], kinds: frozenset, lead: float) -> np.ndarray:
    """[T] in [0, 1]: 1 from `lead` before each such phone through 70 % of it, smooth 40 ms ramps."""
    track = np.zeros(len(times))
    ramp = 0.04
    for symbol, start, end in phones:
        if symbol not in kinds:
            continue
        hold_from, hold_to = start - lead, start + 0.7 * (end - start)
        rise = np.clip((times - (hold_from - ramp)) / ramp, 0, 1)
        fall = np.clip(((hold_to + ramp) - times) / ramp, 0, 1)
        track = np.maximum(track, _smoothstep(np.minimum(rise, fall)))
    return track


def _smoothstep(x: np.ndarray) -> np.ndarray:
    return x * x * (3 - 2 * x)


def loudness_envelope(audio: np.ndarray, sample_rate: int, times: np.ndarray) -> np.ndarray:
    """[T] speech loudness at the frame times in [0, 1]: RMS over 40 ms, relative to the 95th percentile."""
    window = int(0.04 * sample_rate)
    power = np.convolve(audio.astype(np.float64) ** 2, np.ones(window) / window, mode="same")
    rms = np.sqrt(power[np.clip((times * sample_rate).astype(int), 0, len(audio) - 1)])
    reference = np.percentile(np.sqrt(power), 95) + 1e-9
    return np.clip(rms / reference, 0.0, 1.0)


def lower_face_weights(phones: list[tuple[str, float, float]], times: np.ndarray, loudness: np.ndarray,
                       style: ArticulationStyle) -> np.ndarray:
    """ARKit weights [T, 52] for jaw and mouth at `times` (s) from phones [(ARPAbet, start s, end s)].

    Upper-face columns are left at zero."""
    centres, targets, alphas = _targets(phones, style.lead)
    params = _dominance_mix(times, centres, targets, alphas, style)
    seal = _gesture(times, phones, BILABIALS, style.lead)
    tuck = _gesture(times, phones, LABIODENTALS, style.lead) * (1 - seal)  # a seal wins over a tuck
    drive = style.gain * (1.0 - style.loudness_coupling + style.loudness_coupling * np.sqrt(loudness))
    jaw = np.clip(params[:, _J] * drive, 0, 1)
    opening = np.clip(params[:, _O] * drive, 0, 1) * (1 - seal) * (1 - tuck)
    rounding, funnel, spread = (params[:, k] * (1 - seal) for k in (_R, _F, _S))

    w = np.zeros((len(times), len(ARKIT_INDEX)))
    w[:, ARKIT_INDEX["jawOpen"]] = jaw
    w[:, ARKIT_INDEX["mouthClose"]] = jaw * seal  # mouthClose undoes jawOpen at the lips
    w[:, ARKIT_INDEX["mouthPucker"]] = rounding
    w[:, ARKIT_INDEX["mouthFunnel"]] = funnel * (1 - tuck)
    w[:, ARKIT_INDEX["mouthRollLower"]] = 0.55 * tuck
    w[:, ARKIT_INDEX["mouthShrugUpper"]] = 0.25 * tuck
    for side, gain in (("Left", 1 + style.asymmetry), ("Right", 1 - style.asymmetry)):
        w[:, ARKIT_INDEX["mouthLowerDown" + side]] = gain * opening
        w[:, ARKIT_INDEX["mouthUpperUp" + side]] = gain * (0.5 * opening + 0.2 * tuck)
        w[:, ARKIT_INDEX["mouthStretch" + side]] = gain * 0.6 * spread
        w[:, ARKIT_INDEX["mouthSmile" + side]] = gain * 0.25 * spread
    return np.clip(w, 0.0, 1.0)


def lower_face_weights_ahead(phones: list[tuple[str, float, float]], times: np.ndarray, loudness: np.ndarray,
                             style: ArticulationStyle, lookahead_s: float) -> np.ndarray:
    """`lower_face_weights` at each time t from only the phones that have begun by t + lookahead_s:
    what a listener with that much future audio, who recognised every phone perfectly, could know
    (a little more: a phone that has begun counts with its true end). ARKit weights [T, 52]."""
    starts = np.array([start for _, start, _ in phones])
    return np.stack([lower_face_weights(phones[: max(1, int(np.searchsorted(starts, t + lookahead_s)))],
                                        times[i : i + 1], loudness[i : i + 1], style)[0]
                     for i, t in enumerate(times)]) if len(times) else np.zeros((0, len(ARKIT_INDEX)))
