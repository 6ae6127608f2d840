"""The corpus generator end to end: determinism, disjoint splits, and ground truth that agrees with the audio."""

import shutil
from dataclasses import replace

import numpy as np
import pytest

from model.audio import num_frames
from model.data import festival, synth
from model.data.coarticulation import BILABIALS
from model.data.corpus import load_corpus
from model.data.speech import ARPABET, SAMPLE_RATE
from model.data.upper_face import BLINK_RATE_PER_MIN
from model.template import ARKIT_INDEX, load_template


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    synth.main(["--out", str(out), "--minutes", "4", "--seed", "3", "--workers", "2"])
    return out


@pytest.fixture(scope="module")
def train(corpus_dir, template):
    return load_corpus(corpus_dir / "train.npz", template)


def test_same_seed_same_bytes_with_any_worker_count(tmp_path, corpus_dir):
    synth.main(["--out", str(tmp_path / "a"), "--minutes", "0.4", "--seed", "3", "--split", "val", "--workers", "1"])
    assert (tmp_path / "a" / "val.npz").read_bytes() == (corpus_dir / "val.npz").read_bytes()
    synth.main(["--out", str(tmp_path / "b"), "--minutes", "0.4", "--seed", "4", "--split", "val", "--workers", "1"])
    assert (tmp_path / "b" / "val.npz").read_bytes() != (corpus_dir / "val.npz").read_bytes()


def test_splits_are_disjoint_in_voices_and_sentences(corpus_dir, template):
    splits = {s: load_corpus(corpus_dir / f"{s}.npz", template) for s in synth.SPLITS}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        voices_a = {n.split("#")[0] for n in splits[a].speaker_names}
        voices_b = {n.split("#")[0] for n in splits[b].speaker_names}
        assert not voices_a & voices_b
        assert not set(splits[a].texts) & set(splits[b].texts)
    assert splits["train"].seconds > 5 * splits["val"].seconds


def test_contents_have_documented_shapes_and_units(train, template):
    assert train.fps == synth.FPS and train.sample_rate == SAMPLE_RATE and train.split == "train"
    for u in range(len(train)):
        audio, weights = train.utterance_audio(u), train.utterance_weights(u)
        assert weights.shape[1] == 52 and 0 <= weights.min() and weights.max() <= 1
        # frame t is at t / fps: the frames cover the audio and not a frame more
        assert (len(weights) - 1) / train.fps < len(audio) / SAMPLE_RATE <= len(weights) / train.fps
        phones = train.phones(u)
        assert phones[0][1] == 0 and abs(phones[-1][2] - len(audio) / SAMPLE_RATE) < 1e-3
    v = train.vertices(0, slice(0, 5))
    assert v.shape == (5, template.num_vertices, 3) and v.dtype == np.float32
    assert 0.15 < np.ptp(v[0, :, 2]) < 0.35  # metres
    assert len(set(train.speaker)) == len(train.speaker_templates) >= 2
    assert not np.allclose(train.speaker_templates[0], train.speaker_templates[1])


def test_silences_are_silent_and_speech_is_not(train):
    quiet, loud = [], []
    for u in range(len(train)):
        audio = train.utterance_audio(u)
        for symbol, start, end in train.phones(u):
            segment = audio[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)]
            if len(segment) < 0.05 * SAMPLE_RATE:
                continue
            (quiet if symbol == "SIL" else loud).append(np.sqrt(np.mean(segment**2)))
    assert np.median(quiet) < 0.05 * np.median(loud)


def lip_gap_mm(template, vertices):
    upper, lower = vertices[:, template.lip_upper_inner], vertices[:, template.lip_lower_inner]
    return np.linalg.norm(upper - lower, axis=2).max(axis=1) * 1000


def test_lips_sealed_at_every_bilabial_and_open_on_open_vowels(train, template):
    sealed, opened = [], []
    for u in range(len(train)):
        gap = lip_gap_mm(template, template.blend(train.utterance_weights(u)))
        for symbol, start, end in train.phones(u):
            if symbol in BILABIALS:
                sealed.append(gap[min(int(round((start + 0.35 * (end - start)) * train.fps)), len(gap) - 1)])
            elif symbol in ("AA", "AE", "AO") and end - start > 0.06:
                opened.append(gap[int(round((start + end) / 2 * train.fps))])
    assert len(sealed) > 50
    assert max(sealed) < 1.5, f"{sum(g >= 1.5 for g in sealed)} of {len(sealed)} bilabials not sealed"
    assert np.mean(np.array(opened) > 5.0) > 0.9


def test_blink_and_brow_rates_in_configured_ranges(train):
    minutes = train.seconds / 60
    blink = train.weights[:, ARKIT_INDEX["eyeBlinkLeft"]].astype(np.float32)
    onsets = np.sum((blink[1:] >= 0.5) & (blink[:-1] < 0.5))
    assert BLINK_RATE_PER_MIN[0] * 0.7 <= onsets / minutes <= BLINK_RATE_PER_MIN[1] * 1.2
    brow = train.weights[:, ARKIT_INDEX["browOuterUpLeft"]].astype(np.float32)
    raises = np.sum((brow[1:] >= 0.15) & (brow[:-1] < 0.15))
    assert 2 <= raises / minutes <= 25


def test_every_phone_is_covered(train):
    symbols = set(train.phone_symbols)
    assert set(ARPABET) <= symbols


def test_redraw_free_motion_keeps_the_speech_and_redraws_the_rest():
    own = synth.generate_utterance(3, "val", 0).utterance
    redrawn = synth.redraw_free_motion(3, "val", 0, draws=2)
    assert redrawn.shape == (2, *own.weights.shape)
    for name in ("jawOpen", "mouthClose", "mouthFunnel"):  # speech-driven
        assert np.array_equal(redrawn[:, :, ARKIT_INDEX[name]], np.stack([own.weights[:, ARKIT_INDEX[name]]] * 2))
    for name in ("eyeLookOutLeft", "browInnerUp", "mouthSmileLeft"):  # gaze; idle micro-motion
        column = ARKIT_INDEX[name]
        assert not np.array_equal(redrawn[0, :, column], own.weights[:, column])
        assert not np.array_equal(redrawn[0, :, column], redrawn[1, :, column])


def test_lower_face_in_style_is_the_speech_part_in_that_style():
    from model.data.coarticulation import ArticulationStyle

    own = synth.generate_utterance(3, "val", 0).utterance
    speaker = synth.draw_speaker(3, "val", own.speaker)
    as_spoken = synth.lower_face_in_style(3, "val", 0, speaker.articulation)
    restyled = synth.lower_face_in_style(3, "val", 0, ArticulationStyle(gain=1.5 * speaker.articulation.gain))
    jaw = ARKIT_INDEX["jawOpen"]
    assert np.array_equal(as_spoken[:, jaw], own.weights[:, jaw])
    assert restyled[:, jaw].max() > as_spoken[:, jaw].max()
    assert np.all(as_spoken[:, ARKIT_INDEX["eyeBlinkLeft"]] == 0)  # no free motion


def test_festival_share_voices_some_train_speakers_and_leaves_the_others_as_they_were():
    plain = [synth.draw_speaker(3, "train", i) for i in range(60)]
    mixed = [synth.draw_speaker(3, "train", i, festival_share=0.3) for i in range(60)]
    voiced = [(m, p) for m, p in zip(mixed, plain) if m.engine != synth.ESPEAK]
    assert 8 <= len(voiced) <= 30
    assert {m.engine for m, _ in voiced} == set(festival.TRAINING_VOICES)
    assert all(m.name.startswith(f"festival-{m.engine}#") for m, _ in voiced)
    assert all(replace(m, name=p.name, engine=synth.ESPEAK) == p for m, p in voiced)  # same rate, pitch, style
    assert all(m == p for m, p in zip(mixed, plain) if m.engine == synth.ESPEAK)
    for split in ("val", "test"):  # held out: eSpeak only, whatever the share
        assert all(synth.draw_speaker(3, split, i, festival_share=1.0).engine == synth.ESPEAK for i in range(20))


@pytest.mark.skipif(shutil.which("festival") is None, reason="festival is not installed")
def test_a_festival_speakers_ground_truth_follows_festivals_phones(template):
    speaker = next(i for i in range(100) if synth.draw_speaker(3, "train", i, 0.5).engine != synth.ESPEAK)
    said = (synth.generate_utterance(3, "train", 12 * speaker + k, festival_share=0.5).utterance for k in range(12))
    u = next(u for u in said if any(symbol in BILABIALS for symbol, _, _ in u.phones))
    seconds = len(u.audio) / SAMPLE_RATE
    assert u.phones[0][0] == u.phones[-1][0] == "SIL" and u.phones[0][1] == 0.0
    assert u.phones[-1][2] == pytest.approx(seconds, abs=0.01)
    assert len(u.weights) == num_frames(len(u.audio), synth.FPS)
    gap = lip_gap_mm(template, template.blend(u.weights))
    bilabials = [(a, b) for symbol, a, b in u.phones if symbol in BILABIALS]
    sealed_at = [min(int(round((a + 0.35 * (b - a)) * synth.FPS)), len(gap) - 1) for a, b in bilabials]
    assert bilabials and all(gap[t] < 1.5 for t in sealed_at)
    speech = [(a, b) for symbol, a, b in u.phones if symbol != "SIL"]
    assert np.abs(u.audio[int(speech[0][0] * SAMPLE_RATE):int(speech[-1][1] * SAMPLE_RATE)]).mean() > 0.005


def test_preview_writes_a_labelled_sheet_an_animation_and_the_audio(tmp_path):
    from PIL import Image

    from model.audio import load_audio
    from model.data.preview import _find_preview_utterance, _pick_frames

    synth.main(["--preview", "--out", str(tmp_path), "--seed", "0"])
    generated = _find_preview_utterance(0)
    labels = [label for _, label in _pick_frames(generated)]
    assert any("sealed" in label for label in labels) and any("open" in label for label in labels)
    assert any(label.startswith("blink") for label in labels)
    sheet = Image.open(tmp_path / "preview.png")
    assert sheet.width >= 4 * 256 and sheet.height >= 2 * 256
    gif = Image.open(tmp_path / "preview.gif")
    assert gif.n_frames == len(generated.utterance.weights)
    audio = load_audio(tmp_path / "preview.wav")
    assert abs(len(audio) - len(generated.utterance.audio)) <= 1
