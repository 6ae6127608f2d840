"""Festival speech with phone timing (model/data/festival.py): parsing always, synthesis where festival is installed."""

import shutil

import pytest

from model.data import festival

SEGMENTS = "pau 0.220000\nb 0.312658\naa 0.432231\nb 0.498331\nm 0.938209\nae 1.076523\npau 1.351275\n"
needs_festival = pytest.mark.skipif(shutil.which("festival") is None, reason="festival is not installed")


def test_segments_become_contiguous_upper_case_phones():
    phones = festival.parse_segments("some banner line\n" + SEGMENTS)
    assert [p[0] for p in phones] == ["SIL", "B", "AA", "B", "M", "AE", "SIL"]
    assert phones[0][1] == 0.0 and phones[-1][2] == pytest.approx(1.351275)
    assert all(a[2] == b[1] and a[1] < a[2] for a, b in zip(phones, phones[1:]))


def test_unknown_voice_and_missing_festival_say_what_to_do(monkeypatch):
    with pytest.raises(festival.FestivalError, match="choose from kal, ked, slt"):
        festival.synthesize("hello", "nobody")
    monkeypatch.setattr(festival.shutil, "which", lambda _: None)
    with pytest.raises(festival.FestivalError, match="apt-get install festival"):
        festival.synthesize("hello", "kal")


@needs_festival
def test_festival_speaks_with_phone_timing():
    audio, phones = festival.synthesize('Bob bought a "map", Pam.', "kal")
    symbols = [p[0] for p in phones]
    assert {"B", "M", "P", "AE"} <= set(symbols) and symbols[0] == symbols[-1] == "SIL"
    assert abs(len(audio) / 16000 - phones[-1][2]) < 0.1 and audio.std() > 0.01
