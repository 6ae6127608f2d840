"""Quality metrics on vertex sequences (numpy only). Vertices are [T, V, 3] in metres; results in mm.

- LVE (as in FaceFormer/CodeTalker): per frame the maximum squared distance over the lip vertices,
  averaged over frames (mm^2); its square root is reported too.
- MVE: mean vertex distance (mm).
- FDD: per sequence, the std over time of each upper-face vertex's squared motion from the
  template, averaged over upper-face vertices; ground truth minus prediction.
- Lip sync from phone timing alone (also for real speech without ground-truth meshes): lips
  close on p/b/m, open on open vowels, rest in pauses.
- Lip sync from the audio alone: how the mouth's opening correlates with the speech envelope,
  and at which lag.
- Blink rate, and the diversity of sampled variants on the upper face versus the mouth.
- How far a hit rate over few events can be trusted: its Wilson score interval.
"""

import numpy as np

from .template import Template

MM = 1000.0
LIP_RADIUS_M = 0.012  # lip region: within 12 mm of the inner-lip contour
CLOSED_GAP_MM = 1.5  # lips closed: the widest inner-lip gap is below this
OPEN_GAP_MM = 5.0  # mouth open: the widest inner-lip gap exceeds this
EYE_CLOSED_SHARE = 0.3  # an eye is closed when its lid gap is under 30 % of the neutral gap
BILABIALS = ("P", "B", "M")
OPEN_VOWELS = ("AA", "AE", "AO", "AW", "AY")
BILABIAL_SLACK_S = 0.1  # closure may come up to this early (anticipation)
RELEASE_SLACK_S = 0.1  # and the lips may stay closed this long after the p/b/m ends (release)
# Rest is judged inside a pause, away from its edges: lips carry over for ~100 ms after speech
# and anticipate the next sound (rounding most) for up to ~200 ms before it.
REST_AFTER_S, REST_BEFORE_S, MIN_REST_WINDOW_S = 0.1, 0.2, 0.1
ENVELOPE_WINDOW_S = 0.04  # the speech envelope at a frame: RMS amplitude over this window around it
MAX_LAG_S = 0.2  # envelope correlation: lags searched on either side of 0


def add_sync_scores(counts: dict[str, tuple[int, int]], scores: dict[str, tuple[int, int]]) -> None:
    """Add lip_sync_scores' (hits, total) per kind into counts, in place: scores pooled over clips."""
    for kind, (hits, total) in scores.items():
        h, t = counts.get(kind, (0, 0))
        counts[kind] = (h + hits, t + total)


def sync_percentages(counts: dict[str, tuple[int, int]]) -> dict[str, float | None]:
    """{kind_pct: hits / total in %} of pooled lip_sync_scores counts; None for a kind with no
    events (e.g. no pause long enough for the rest test), not 0 %."""
    return {f"{k}_pct": round(100 * h / t, 1) if t else None for k, (h, t) in counts.items()}


def wilson_interval(rate: float, events: int, z: float = 1.96) -> tuple[float, float]:
    """(low, high) share, both in [0, 1], around an observed hit `rate` over `events` independent
    trials: the Wilson score interval, 95 % at the default z. Unlike rate +- z * stderr it stays
    inside [0, 1] and is not empty at a rate of 0 or 1."""
    if events <= 0:
        raise ValueError(f"an interval needs at least one event, got {events}")
    shrink = 1.0 + z * z / events
    centre = (rate + z * z / (2 * events)) / shrink
    half = z * np.sqrt(rate * (1.0 - rate) / events + z * z / (4 * events * events)) / shrink
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def lip_vertices(template: Template) -> np.ndarray:
    """int [L] vertices of the lips: within LIP_RADIUS_M of the inner-lip contour, in the neutral."""
    contour = template.vertices[np.concatenate([template.lip_upper_inner, template.lip_lower_inner])]
    distance = np.linalg.norm(template.vertices[:, None] - contour[None], axis=2).min(axis=1)
    return np.flatnonzero(distance < LIP_RADIUS_M)


def lip_vertex_error(pred: np.ndarray, target: np.ndarray, lips: np.ndarray) -> float:
    """LVE in mm^2: mean over frames of the max over lip vertices of the squared distance."""
    squared = (((pred[:, lips] - target[:, lips]) * MM) ** 2).sum(axis=-1)
    return float(squared.max(axis=1).mean())


def mean_vertex_error(pred: np.ndarray, target: np.ndarray) -> float:
    """MVE in mm: mean Euclidean distance over frames and vertices."""
    return float(np.linalg.norm((pred - target) * MM, axis=-1).mean())


def upper_face_dynamics(vertices: np.ndarray, template_vertices: np.ndarray, upper: np.ndarray) -> float:
    """Mean over upper-face vertices of the std over time of the squared motion (mm^2)."""
    motion = (((vertices[:, upper] - template_vertices[upper]) * MM) ** 2).sum(axis=-1)
    return float(motion.std(axis=0).mean())


def lip_gap_mm(vertices: np.ndarray, template: Template) -> np.ndarray:
    """[T] widest gap between paired inner-lip vertices, mm."""
    gap = vertices[:, template.lip_upper_inner] - vertices[:, template.lip_lower_inner]
    return np.linalg.norm(gap, axis=-1).max(axis=-1) * MM


def _frames(start: float, end: float, fps: float, n: int) -> np.ndarray:
    first, last = int(np.ceil(max(start, 0.0) * fps)), int(np.floor(end * fps))
    return np.arange(max(first, 0), min(last, n - 1) + 1)


def lip_sync_scores(vertices: np.ndarray, fps: float, phones: list[tuple[str, float, float]],
                    template: Template) -> dict[str, tuple[int, int]]:
    """(hits, total) for: closure at every p/b/m (some frame from BILABIAL_SLACK_S before the phone
    to its end has closed lips), opening at open vowels (the widest frame inside the vowel is
    open), rest in pauses (closed from REST_AFTER_S after the pause starts to REST_BEFORE_S
    before it ends, where that leaves at least MIN_REST_WINDOW_S), and closed_elsewhere: (closed
    frames, frames) of speech, any phone but a pause, away from every p/b/m (from BILABIAL_SLACK_S
    before it to RELEASE_SLACK_S after it). Closure alone rewards lips that stay shut; the data's
    own lips are closed in 1.2 % of such frames (the test split)."""
    gap = lip_gap_mm(vertices, template)
    scores = {"closure": [0, 0], "opening": [0, 0], "rest": [0, 0]}
    times = np.arange(len(gap)) / fps
    speech, near_bilabial = np.zeros(len(gap), bool), np.zeros(len(gap), bool)
    for symbol, start, end in phones:
        if symbol != "SIL" and symbol not in BILABIALS:
            speech |= (times >= start) & (times < end)
        if symbol in BILABIALS:
            near_bilabial |= (times >= start - BILABIAL_SLACK_S) & (times <= end + RELEASE_SLACK_S)
            frames, kind, hit = _frames(start - BILABIAL_SLACK_S, end, fps, len(gap)), "closure", np.min
        elif symbol in OPEN_VOWELS:
            frames, kind, hit = _frames(start, end, fps, len(gap)), "opening", np.max
        elif symbol == "SIL" and end - start - REST_AFTER_S - REST_BEFORE_S >= MIN_REST_WINDOW_S:
            frames, kind, hit = _frames(start + REST_AFTER_S, end - REST_BEFORE_S, fps, len(gap)), "rest", np.max
        else:
            continue
        if len(frames) == 0:
            continue
        value = hit(gap[frames])
        scores[kind][0] += int(value > OPEN_GAP_MM if kind == "opening" else value < CLOSED_GAP_MM)
        scores[kind][1] += 1
    elsewhere = speech & ~near_bilabial
    scores["closed_elsewhere"] = [int((gap[elsewhere] < CLOSED_GAP_MM).sum()), int(elsewhere.sum())]
    return {k: (v[0], v[1]) for k, v in scores.items()}


def speech_envelope(audio: np.ndarray, sample_rate: int, fps: float, frames: int) -> np.ndarray:
    """[frames] RMS amplitude of mono samples [N] in ENVELOPE_WINDOW_S centred on each frame time t / fps."""
    half = int(round(ENVELOPE_WINDOW_S * sample_rate / 2))
    energy = np.concatenate([[0.0], np.cumsum(np.asarray(audio, np.float64) ** 2)])
    centre = np.round(np.arange(frames) / fps * sample_rate).astype(np.int64)
    lo, hi = np.clip(centre - half, 0, len(audio)), np.clip(centre + half, 0, len(audio))
    return np.sqrt((energy[hi] - energy[lo]) / (2 * half))


def envelope_correlation(openings: list[np.ndarray], envelopes: list[np.ndarray], fps: float) -> dict:
    """How the mouth's opening follows the speech envelope, pooled over clips.

    openings, envelopes: per clip [T] (e.g. `lip_gap_mm` and `speech_envelope`), each z-scored
    within its clip. r(L) is the mean over clips' frames of opening[t] * envelope[t + L] for lags
    L up to MAX_LAG_S either way. Returns {"r": max r, "lag_ms": its lag (positive: the mouth
    moves before the sound), "r_at_0": r(0)}; None values when no clip's opening varies.
    """
    max_lag = int(round(MAX_LAG_S * fps))
    lags = np.arange(-max_lag, max_lag + 1)
    sums, counts = np.zeros(len(lags)), np.zeros(len(lags))
    for opening, envelope in zip(openings, envelopes):
        n = min(len(opening), len(envelope))
        o, e = opening[:n], envelope[:n]
        if n <= max_lag or np.ptp(o) == 0 or np.ptp(e) == 0:  # (std of a constant may round to > 0)
            continue
        o, e = (o - o.mean()) / o.std(), (e - e.mean()) / e.std()
        for i, lag in enumerate(lags):
            pairs = o[max(0, -lag) : n - max(0, lag)] * e[max(0, lag) : n - max(0, -lag)]
            sums[i], counts[i] = sums[i] + pairs.sum(), counts[i] + len(pairs)
    if not counts.any():
        return {"r": None, "lag_ms": None, "r_at_0": None}
    r = sums / counts
    best = int(np.argmax(r))
    return {"r": round(float(r[best]), 3), "lag_ms": round(float(lags[best] / fps * 1000)),
            "r_at_0": round(float(r[max_lag]), 3)}


def blinks(vertices: np.ndarray, template: Template) -> int:
    """Number of eye closures (both lids of the left eye under EYE_CLOSED_SHARE of their neutral gap)."""
    upper, lower = template.eyelid_upper_L, template.eyelid_lower_L
    neutral = np.linalg.norm(template.vertices[upper] - template.vertices[lower], axis=-1).mean()
    gap = np.linalg.norm(vertices[:, upper] - vertices[:, lower], axis=-1).mean(axis=-1)
    closed = gap < EYE_CLOSED_SHARE * neutral
    return int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])


def variant_diversity(variants: np.ndarray, template: Template) -> dict[str, float]:
    """Std across K variants [K, T, V, 3] (mm), averaged over frames, in the upper face and the mouth."""
    spread = np.linalg.norm(variants.std(axis=0) * MM, axis=-1)  # [T, V]
    upper = template.upper_face_weights > 0.5
    mouth = template.mouth_weights > 0.5
    return {"upper_face_mm": float(spread[:, upper].mean()), "mouth_mm": float(spread[:, mouth].mean())}
