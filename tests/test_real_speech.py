"""Parsing the forced alignments of the real-speech clips (the clips themselves are fetched on demand)."""

from model.data.real_speech import phones

ALIGNMENT = {"b": 0.0, "d": 0.9, "t": "much", "w": [
    {"b": 0.0, "d": 0.2, "t": "<sil>", "w": [{"b": 0.0, "d": 0.2, "t": "SIL"}]},
    {"b": 0.2, "d": 0.3, "t": "much", "w": [{"b": 0.2, "d": 0.05, "t": "M"}, {"b": 0.25, "d": 0.15, "t": "ah"},
                                          {"b": 0.4, "d": 0.1, "t": "CH"}]},
    {"b": 0.5, "d": 0.4, "t": "<sil>", "w": [{"b": 0.5, "d": 0.4, "t": "SIL"}]},
]}


def test_phones_are_flattened_in_time_order_with_upper_case_symbols():
    result = phones(ALIGNMENT)
    assert [p[0] for p in result] == ["SIL", "M", "AH", "CH", "SIL"]
    assert result[1][1:] == (0.2, 0.25) and abs(result[2][2] - 0.4) < 1e-9
    assert all(a[2] <= b[1] + 1e-9 for a, b in zip(result, result[1:]))
