"""Quality metrics, checked on known answers and on generated ground truth."""

import numpy as np
import pytest

from model import metrics
from model.animate import mix_regions
from model.data.synth import generate_utterance
from model.template import load_template


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture(scope="module")
def utterances(template):
    out = []
    for i in range(12):
        g = generate_utterance(5, "val", i)
        out.append((g, template.blend(g.utterance.weights)))
    return out


def test_errors_on_known_offsets(template):
    lips = metrics.lip_vertices(template)
    assert 50 < len(lips) < 600
    target = np.repeat(template.vertices[None], 4, axis=0)
    shifted = target + np.array([0.001, 0.0, 0.0], np.float32)  # 1 mm everywhere
    assert metrics.lip_vertex_error(target, target, lips) == 0
    assert metrics.lip_vertex_error(shifted, target, lips) == pytest.approx(1.0, rel=1e-3)
    assert metrics.mean_vertex_error(shifted, target) == pytest.approx(1.0, rel=1e-3)
    one_lip = target.copy()
    one_lip[2, lips[0]] += np.array([0, 0, 0.003], np.float32)  # 3 mm on one lip vertex in one frame of 4
    assert metrics.lip_vertex_error(one_lip, target, lips) == pytest.approx(9.0 / 4, rel=1e-3)


def test_upper_face_dynamics(template):
    upper = template.upper_face_weights > 0.5
    still = np.repeat(template.vertices[None], 10, axis=0)
    assert metrics.upper_face_dynamics(still, template.vertices, upper) == 0
    moving = still.copy()
    moving[::2, upper] += np.array([0, 0, 0.002], np.float32)  # 0 and 4 mm^2 alternating: std 2
    assert metrics.upper_face_dynamics(moving, template.vertices, upper) == pytest.approx(2.0, rel=1e-3)


def test_ground_truth_scores_as_designed(utterances, template):
    totals = {"closure": [0, 0], "opening": [0, 0], "rest": [0, 0], "closed_elsewhere": [0, 0]}
    for g, vertices in utterances:
        for kind, (hits, count) in metrics.lip_sync_scores(vertices, 30.0, g.utterance.phones, template).items():
            totals[kind][0] += hits
            totals[kind][1] += count
    assert all(count > 5 for _, count in totals.values())
    assert totals["closure"][0] == totals["closure"][1]
    assert totals["opening"][0] >= 0.9 * totals["opening"][1]
    assert totals["rest"][0] >= 0.9 * totals["rest"][1]
    assert totals["closed_elsewhere"][1] > 100 and totals["closed_elsewhere"][0] <= 0.03 * totals["closed_elsewhere"][1]


def test_a_static_face_never_opens(utterances, template):
    for g, vertices in utterances:
        still = np.repeat(template.vertices[None], len(vertices), axis=0)
        scores = metrics.lip_sync_scores(still, 30.0, g.utterance.phones, template)
        assert scores["opening"][0] == 0 and scores["closure"][0] == scores["closure"][1]
        assert scores["closed_elsewhere"][0] == scores["closed_elsewhere"][1] > 0  # shut lips seal everywhere


def test_closed_elsewhere_counts_speech_frames_away_from_bilabials(template):
    phones = [("SIL", 0.0, 0.5), ("AA", 0.5, 1.0), ("M", 1.0, 1.1), ("AA", 1.1, 1.5), ("SIL", 1.5, 2.0)]
    still = np.repeat(template.vertices[None], 60, axis=0)  # closed lips, 2 s at 30 fps
    closed, frames = metrics.lip_sync_scores(still, 30.0, phones, template)["closed_elsewhere"]
    # speech frames 15..44 (0.5-1.5 s), less those from 0.9 to 1.2 s (frames 27..36)
    assert (closed, frames) == (20, 20)


def test_blink_count_matches_the_generated_blinks(utterances, template):
    counted = sum(metrics.blinks(v, template) for _, v in utterances)
    generated = sum(g.blinks for g, _ in utterances)
    assert generated > 3 and abs(counted - generated) <= max(1, generated // 10)


def test_variant_diversity(utterances, template):
    _, vertices = utterances[0]
    same = np.stack([vertices, vertices])
    assert metrics.variant_diversity(same, template) == {"upper_face_mm": 0.0, "mouth_mm": 0.0}
    _, other = utterances[1]
    n = min(len(vertices), len(other))
    upper_only = np.stack([vertices[:n], mix_regions(vertices[:n], other[:n], template.mouth_weights)])
    d = metrics.variant_diversity(upper_only, template)
    assert d["upper_face_mm"] > 3 * d["mouth_mm"]


def test_speech_envelope_is_the_rms_around_each_frame():
    rate, fps = 16000, 30.0
    audio = np.zeros(rate, np.float32)
    audio[4000:12000] = 0.5 * np.sin(2 * np.pi * 200 * np.arange(8000) / rate)  # 0.25 ... 0.75 s
    envelope = metrics.speech_envelope(audio, rate, fps, 30)
    t = np.arange(30) / fps
    inside, outside = (t > 0.3) & (t < 0.7), (t < 0.2) | (t > 0.8)
    assert np.allclose(envelope[inside], 0.5 / np.sqrt(2), rtol=0.02)
    assert np.all(envelope[outside] == 0)


def test_envelope_correlation_finds_the_lag():
    rng = np.random.default_rng(0)
    fps = 30.0
    envelopes = [np.convolve(rng.random(300), np.ones(5) / 5, mode="same") for _ in range(3)]
    # The mouth 3 frames (100 ms) ahead of the sound: opening[t] = envelope[t + 3].
    openings = [np.concatenate([e[3:], e[-3:]]) for e in envelopes]
    result = metrics.envelope_correlation(openings, envelopes, fps)
    assert result["lag_ms"] == 100 and result["r"] > 0.95 and result["r_at_0"] < result["r"] - 0.2
    behind = metrics.envelope_correlation([np.concatenate([e[:2], e[:-2]]) for e in envelopes], envelopes, fps)
    assert behind["lag_ms"] == -67
    still = metrics.envelope_correlation([np.zeros(300)] * 3, envelopes, fps)
    assert still == {"r": None, "lag_ms": None, "r_at_0": None}


def test_generated_mouth_follows_the_speech_envelope(utterances, template):
    openings = [metrics.lip_gap_mm(v, template) for _, v in utterances]
    envelopes = [metrics.speech_envelope(g.utterance.audio, 16000, 30.0, len(v)) for g, v in utterances]
    result = metrics.envelope_correlation(openings, envelopes, 30.0)
    assert result["r"] > 0.4 and abs(result["lag_ms"]) <= 100
    shuffled = metrics.envelope_correlation(openings, envelopes[1:] + envelopes[:1], 30.0)
    assert shuffled["r"] < result["r"] - 0.3


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 (Wilson score, no continuity correction)
    for hits, events, published in ((81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605)), (0, 20, (0.0, 0.1611)),
                                    (1, 29, (0.0061, 0.1718))):
        assert metrics.wilson_interval(hits / events, events) == pytest.approx(published, abs=1e-4)
    low, high = metrics.wilson_interval(0.345, 29)
    assert low < 0.345 < high and metrics.wilson_interval(0.345, 290)[1] - 0.345 < high - 0.345  # more events, narrower
    with pytest.raises(ValueError, match="at least one event"):
        metrics.wilson_interval(0.5, 0)
