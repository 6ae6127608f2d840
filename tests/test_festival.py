"""Festival speech with phone timing (model/data/festival.py): parsing always, synthesis where festival is installed."""

import shutil

import numpy as np
import pytest

from model.data import festival

SEGMENTS = ("pau 0.220000 0\nb 0.312658 1\naa 0.432231 1\nb 0.498331 1\nm 0.938209 0\nax 1.000000 0\n"
            "pau 1.351275 0\n")
needs_festival = pytest.mark.skipif(shutil.which("festival") is None, reason="festival is not installed")


def test_segments_become_contiguous_upper_case_phones():
    phones = festival.parse_segments("a banner line\nSIOD ERROR: x\n" + SEGMENTS)
    assert [p.symbol for p in phones] == ["SIL", "B", "AA", "B", "M", "AH", "SIL"]
    assert phones[0].start == 0.0 and phones[-1].end == pytest.approx(1.351275)
    assert all(a.end == b.start and a.start < a.end for a, b in zip(phones, phones[1:]))
    assert [p.stressed for p in phones] == [False, False, True, False, False, False, False]  # vowels only


def test_unknown_voice_and_missing_festival_say_what_to_do(monkeypatch):
    with pytest.raises(festival.FestivalError, match="choose from kal, ked, slt"):
        festival.synthesize("hello", "nobody")
    with pytest.raises(festival.FestivalError, match="diphone voices kal, ked only"):
        festival.synthesize("hello", "slt", festival.Prosody(1.0, 120.0, 20.0))
    monkeypatch.setattr(festival.shutil, "which", lambda _: None)
    with pytest.raises(festival.FestivalError, match="apt-get install festival"):
        festival.synthesize("hello", "kal")


@needs_festival
def test_festival_speaks_with_phone_timing():
    audio, phones = festival.synthesize('Bob bought a "map", Pam.', "kal")
    symbols = [p.symbol for p in phones]
    assert {"B", "M", "P", "AE"} <= set(symbols) and symbols[0] == symbols[-1] == "SIL"
    assert abs(len(audio) / 16000 - phones[-1].end) < 0.1 and audio.std() > 0.01
    assert any(p.stressed for p in phones)


@needs_festival
def test_prosody_sets_the_rate_and_the_pitch():
    text = "Mary and Bob may move the boat by noon."
    slow, slow_phones = festival.synthesize(text, "ked", festival.Prosody(1.4, 90.0, 10.0))
    fast, fast_phones = festival.synthesize(text, "ked", festival.Prosody(0.8, 160.0, 10.0))
    assert [p.symbol for p in slow_phones] == [p.symbol for p in fast_phones]
    assert len(slow) / len(fast) == pytest.approx(1.4 / 0.8, rel=0.15)

    def median_pitch_hz(audio):  # from the autocorrelation peak in 60-300 Hz of voiced 40 ms frames
        frames = audio[: len(audio) // 640 * 640].reshape(-1, 640)
        frames = frames[np.abs(frames).mean(1) > np.abs(audio).mean()]
        lags = np.arange(16000 // 300, 16000 // 60)
        corr = np.array([[np.dot(f[:-lag], f[lag:]) for lag in lags] for f in frames])
        return float(np.median(16000 / lags[corr.argmax(1)]))

    assert median_pitch_hz(slow) < 110 < 140 < median_pitch_hz(fast)
