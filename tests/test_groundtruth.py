"""Ground-truth face motion from phone timing: coarticulation, blink and brow statistics, identity.

These use made-up phone sequences so they run in milliseconds; tests/test_synth.py checks the same
properties on real generated utterances."""

import numpy as np
import pytest

from model.data.coarticulation import (BILABIALS, TARGETS, ArticulationStyle, loudness_envelope,
                                       lower_face_weights, lower_face_weights_ahead)
from model.data.identity import speaker_head
from model.data.upper_face import (BLINK_CLOSE_S, BLINK_OPEN_S, BLINK_RATE_PER_MIN, UpperFaceStyle, pause_mask,
                                   sample_blinks, sample_brow_events, upper_face_weights)
from model.template import ARKIT_INDEX, load_template

FPS = 30
SPEECH_PHONES = [p for p in TARGETS if p != "SIL"]


@pytest.fixture(scope="module")
def template():
    return load_template()


def random_phones(rng, seconds):
    """Phones of 40-200 ms with a pause of 0.2-0.8 s every few words, starting and ending in silence."""
    phones, t = [("SIL", 0.0, 0.3)], 0.3
    while t < seconds:
        for _ in range(rng.integers(5, 25)):
            d = rng.uniform(0.04, 0.2)
            phones.append((SPEECH_PHONES[rng.integers(len(SPEECH_PHONES))], t, t + d))
            t += d
        d = rng.uniform(0.2, 0.8)
        phones.append(("SIL", t, t + d))
        t += d
    return phones


def lip_gap_mm(template, vertices):
    """[T] widest gap between paired inner-lip vertices, mm."""
    upper, lower = vertices[:, template.lip_upper_inner], vertices[:, template.lip_lower_inner]
    return np.linalg.norm(upper - lower, axis=2).max(axis=1) * 1000


def frames_of(phones):
    return np.arange(int(phones[-1][2] * FPS) + 1) / FPS


def test_lookahead_limits_what_the_lips_anticipate():
    phones = [("SIL", 0.0, 0.3), ("AA", 0.3, 0.6), ("M", 0.6, 0.7), ("AA", 0.7, 1.0), ("SIL", 1.0, 1.3)]
    times, loudness, style = frames_of(phones), np.ones(40), ArticulationStyle(lead=0.06)
    full = lower_face_weights(phones, times, loudness, style)
    # knowing the whole utterance is the full model; phones begun by t + lookahead only see less
    assert np.allclose(lower_face_weights_ahead(phones, times, loudness, style, 10.0), full)
    ahead = lower_face_weights_ahead(phones, times, loudness, style, 0.05)
    close = ARKIT_INDEX["mouthClose"]
    # the seal starts lead + ramp (100 ms) before the M: full knowledge closes at 0.55 s, 50 ms of lookahead cannot
    frame = round(0.55 * FPS)
    assert full[frame, close] > 0.1 and ahead[frame, close] == 0
    assert ahead[round(0.6 * FPS): round(0.7 * FPS), close].max() > 0.1  # it seals once the M is heard
    # once the last phone (the pause from 1.0 s) has begun within the lookahead, every phone is known
    known = times + 0.05 > 1.0
    assert known.sum() > 5 and np.allclose(ahead[known], full[known])


@pytest.mark.parametrize("seed", range(6))
def test_lips_sealed_at_every_bilabial(template, seed):
    rng = np.random.default_rng(seed)
    phones = random_phones(rng, 40.0)
    times = frames_of(phones)
    style = ArticulationStyle.sample(rng)
    weights = lower_face_weights(phones, times, rng.uniform(0.3, 1.0, len(times)), style)
    weights += upper_face_weights(times, FPS, [], [], UpperFaceStyle.sample(rng), rng)  # idle motion too
    gap = lip_gap_mm(template, template.blend(np.clip(weights, 0, 1)))
    bilabials = [(s, a, b) for s, a, b in phones if s in BILABIALS]
    assert len(bilabials) >= 10
    for symbol, start, end in bilabials:
        frame = int(round((start + 0.35 * (end - start)) * FPS))
        assert gap[frame] < 1.5, f"{symbol} at {start:.3f}s: lips {gap[frame]:.1f} mm apart"
    vowel_gaps = [gap[int(round((a + b) / 2 * FPS))] for s, a, b in phones if s in ("AA", "AE") and b - a > 0.08]
    assert np.median(vowel_gaps) > 8  # open vowels open the mouth


def test_closure_anticipates_the_sound(template):
    phones = [("SIL", 0, 0.3), ("AA", 0.3, 0.6), ("M", 0.6, 0.7), ("AA", 0.7, 1.0), ("SIL", 1.0, 1.3)]
    times = np.arange(0, 1.3, 0.005)
    style = ArticulationStyle(lead=0.06)
    gap = lip_gap_mm(template, template.blend(lower_face_weights(phones, times, np.ones(len(times)), style)))
    at = lambda t: gap[int(round(t / 0.005))]  # noqa: E731
    assert at(0.6 - 0.06) < 1.5 < at(0.45)  # sealed `lead` before the acoustic onset of M
    assert at(0.6 - 0.06 - 0.06) > at(0.6 - 0.06)  # and closing before that


def test_labiodentals_tuck_the_lower_lip(template):
    phones = [("SIL", 0, 0.3), ("AA", 0.3, 0.5), ("F", 0.5, 0.62), ("AA", 0.62, 0.8), ("SIL", 0.8, 1.1)]
    times = frames_of(phones)
    w = lower_face_weights(phones, times, np.ones(len(times)), ArticulationStyle())
    f = int(round(0.53 * FPS))
    assert w[f, ARKIT_INDEX["mouthRollLower"]] > 0.4 and w[f, ARKIT_INDEX["mouthFunnel"]] < 0.05


def test_louder_speech_articulates_more():
    phones = [("SIL", 0, 0.2), ("AA", 0.2, 0.5), ("SIL", 0.5, 0.8)]
    times = frames_of(phones)
    style = ArticulationStyle(loudness_coupling=0.5)
    quiet = lower_face_weights(phones, times, np.full(len(times), 0.2), style)[:, ARKIT_INDEX["jawOpen"]]
    loud = lower_face_weights(phones, times, np.full(len(times), 1.0), style)[:, ARKIT_INDEX["jawOpen"]]
    assert loud.max() > 1.15 * quiet.max()


def test_loudness_envelope_follows_the_audio():
    sr = 16000
    audio = np.zeros(sr)
    audio[sr // 2:] = 0.5 * np.sin(np.arange(sr // 2) * 0.3)
    env = loudness_envelope(audio, sr, np.array([0.25, 0.75]))
    assert env[0] < 0.01 and env[1] > 0.9


def test_asymmetry_scales_the_sides():
    phones = [("SIL", 0, 0.2), ("AE", 0.2, 0.5), ("SIL", 0.5, 0.8)]
    times = frames_of(phones)
    w = lower_face_weights(phones, times, np.ones(len(times)), ArticulationStyle(asymmetry=0.1))
    left, right = w[:, ARKIT_INDEX["mouthStretchLeft"]].max(), w[:, ARKIT_INDEX["mouthStretchRight"]].max()
    assert left == pytest.approx(right * 1.1 / 0.9, rel=1e-6)


def test_blink_statistics_match_the_configuration():
    rates, in_pause, pause_share = [], [], []
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        style = UpperFaceStyle.sample(rng)
        phones = random_phones(rng, 600.0)
        duration = phones[-1][2]
        blinks = sample_blinks(duration, phones, style, rng)
        rate = len(blinks) / duration * 60
        rates.append(rate / style.blink_rate)
        assert BLINK_RATE_PER_MIN[0] * 0.8 < rate < BLINK_RATE_PER_MIN[1] * 1.2
        for b in blinks:
            assert BLINK_CLOSE_S[0] <= b.close <= BLINK_CLOSE_S[1]
            assert BLINK_OPEN_S[0] <= b.open <= BLINK_OPEN_S[1]
            assert 0.9 <= b.amplitude <= 1.0
        onsets = np.array([b.onset for b in blinks])
        in_pause.append(pause_mask(phones, onsets).mean())
        grid = np.arange(0, duration, 0.01)
        pause_share.append(pause_mask(phones, grid).mean())
    assert 0.85 < np.mean(rates) < 1.15  # the configured rate, within 15 % on average
    assert np.mean(in_pause) > 1.5 * np.mean(pause_share)  # blinks cluster in pauses


def test_brow_events_follow_rates_and_emphasis():
    rng = np.random.default_rng(7)
    style = UpperFaceStyle(raise_rate=6.0, frown_rate=2.0, emphasis_raise_p=0.0)
    events = sample_brow_events(3600.0, np.array([]), style, rng)
    raises = sum(e.kind == "raise" for e in events) / 60.0
    frowns = sum(e.kind == "frown" for e in events) / 60.0
    assert 5.0 < raises < 7.0 and 1.5 < frowns < 2.5
    emphasis = np.arange(10.0, 3600.0, 10.0)
    triggered = sample_brow_events(3600.0, emphasis, UpperFaceStyle(raise_rate=0, frown_rate=0,
                                                                    emphasis_raise_p=0.5), rng)
    assert 0.4 < len(triggered) / len(emphasis) < 0.6
    assert all(any(0.05 <= t - e.onset <= 0.15 for t in emphasis) for e in triggered)


def test_blink_closes_the_eyes(template):
    rng = np.random.default_rng(3)
    times = np.arange(0, 2, 1 / FPS)
    blinks = sample_blinks(2.0, [("SIL", 0, 2.0)], UpperFaceStyle(blink_rate=25), rng)
    blinks = blinks or [pytest.fail("no blink in 2 s at 25/min")]
    w = upper_face_weights(times, FPS, blinks[:1], [], UpperFaceStyle(micro_motion=0.0), rng)
    b = blinks[0]
    closed = int(round((b.onset + b.close + b.hold / 2) * FPS))
    v = template.blend(w[closed])
    gap = np.linalg.norm(v[template.eyelid_upper_L] - v[template.eyelid_lower_L], axis=1).max() * 1000
    assert w[closed, ARKIT_INDEX["eyeBlinkLeft"]] > 0.7 and gap < 3.5


def test_speaker_heads_are_smooth_and_distinct(template):
    a = speaker_head(template.vertices, np.random.default_rng(1))
    b = speaker_head(template.vertices, np.random.default_rng(2))
    again = speaker_head(template.vertices, np.random.default_rng(1))
    assert np.array_equal(a, again)
    assert np.abs(a - b).mean() > 1e-3  # different speakers differ by millimetres
    edges = template.faces[:, :2]
    stretch = (np.linalg.norm(a[edges[:, 0]] - a[edges[:, 1]], axis=1)
               / np.linalg.norm(template.vertices[edges[:, 0]] - template.vertices[edges[:, 1]], axis=1))
    assert 0.85 < stretch.min() and stretch.max() < 1.15  # smooth: no edge stretched by more than 15 %
