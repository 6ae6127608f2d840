"""Speech synthesis timing (model/data/speech.py) and sentence generation (model/data/text.py)."""

from collections import Counter

import numpy as np
import pytest

from model.data import speech
from model.data.speech import (
    ACCENTS, ARPABET, SAMPLE_RATE, SILENCE, VOWELS, UnknownMnemonicError, Voice, synthesize,
    voice_variants,
)
from model.data.text import (
    MAX_WORDS, MIN_WORDS, coverage_table, phone_coverage, sentences, split_of,
)

VARIANT = "m3"  # an echo-free variant: its pauses are silent
TIMING_VARIANTS = ("m3", "klatt3", "iven2", "whisper", "Mr serious", "f1")  # echo-free, varied
TIMING_ACCENTS = ("en-us", "en-gb", "en-gb-scotland")
TIMING_RATES = (130, 240)  # words per minute
TIMING_SENTENCES = (  # each has a pause inside, plus the one before its first word
    "Wow, what a pleasant word!",
    "Look! The thing is big!",
    "When the hut reached the boy, Jasmine reached the zebra.",
    "Now, she washed the mountain.",
    "Please, Maria, eat the apple. Then go home.",
    "Yes, the fish is cheap; the cheese is not.",
)

FRAME = SAMPLE_RATE // 200  # 5 ms energy frames
ONSET_LEVEL_DB = 55.0  # speech starts at the first frame within this of the loudest frame
# (40 dB misses quiet word-initial consonants of variants that attenuate them, e.g. iven2)
MIN_PAUSE_S = 0.05  # a word "follows a pause" when the SIL before it is at least this long
MAX_ONSET_ERROR_S = 0.020
RESAMPLER_EDGE_S = 0.003  # the 22.05 -> 16 kHz filter smears sound this far into a SIL
MIN_SILENCE_DROP_DB = 40.0  # SIL audio must be this far below the speech's RMS

STOP_SENTENCES = ("The happy kitten ate the apple pie.", "A cup of tea, or a pot of coffee?")
STOPS = ("P", "T", "K", "B", "D", "G", "CH", "JH")
TAIL_S = 0.005  # the last 5 ms of a vowel before a stop ...
MIN_TAIL_RMS = 1e-3  # ... still carry sound (digital silence is under 1e-4 after resampling)

NASAL_SKIP_S = 0.015  # the nasal's own onset is not its release
NASAL_RISE_S = 0.010  # release = largest 500-4000 Hz energy rise over this interval
NASAL_WINDOW = SAMPLE_RATE // 100  # 10 ms analysis window, 1 ms hop
NASAL_BAND_HZ = (500.0, 4000.0)

# words that bring out rarer espeak phonemes: syllabic l/n, centring and r-coloured vowels,
# glottal stops, flaps, "loch", numbers and abbreviations
HARD_TEXT = (
    "The loch is huge, and the button's little idea was a fire in an hour on tour.",
    "Mr. Smith paid 42 dollars on the 3rd of June, 1999; it's 7:30 now.",
    "Their poor, pure cure: sure, the hour is ours, here and there, for her, or four.",
    "Where were you when the whale's wheel went wrong? Oh, the orange, the apple.",
    "Garden party, water bottle, kitten mitten, bitter butter, thirty dirty birds.",
)


def _frame_db(audio: np.ndarray) -> np.ndarray:
    """RMS level in dB of consecutive FRAME-sample frames."""
    n = len(audio) // FRAME
    rms = np.sqrt((audio[: n * FRAME].astype(np.float64) ** 2).reshape(n, FRAME).mean(axis=1))
    return 20 * np.log10(rms + 1e-12)


def _sample(t: float) -> int:
    return int(round(t * SAMPLE_RATE))


@pytest.fixture(scope="module")
def utterances() -> list[speech.Utterance]:
    return [
        synthesize(text, Voice(accent, variant, rate, 50, 50))
        for text, variant in zip(TIMING_SENTENCES, TIMING_VARIANTS)
        for accent in TIMING_ACCENTS
        for rate in TIMING_RATES
    ]


def test_accents_and_variants_exist():
    assert len(ACCENTS) == 8
    assert set(ACCENTS) <= set(speech._get_engine().voice_ids)
    variants = voice_variants()
    assert len(variants) >= 100 and VARIANT in variants and "Mr serious" in variants
    quiet = voice_variants(include_echo=False)
    assert set(quiet) < set(variants) and VARIANT in quiet and "f2" not in quiet


def test_voice_is_validated():
    assert Voice("en-us", "m3", 175, 50, 50).name == "en-us+m3"
    for bad in (("en", "m3", 175, 50, 50), ("en-us", "nobody", 175, 50, 50),
                ("en-us", "m3", 20, 50, 50), ("en-us", "m3", 175, 101, 50)):
        with pytest.raises(ValueError):
            Voice(*bad)


def test_every_accent_and_an_odd_variant_synthesise():
    for accent in ACCENTS:
        assert synthesize("Hello there.", Voice(accent, "Mr serious", 175, 50, 50)).words
    # en-us-nyc reports no word event for "Hugo" (it says "jugo")
    hugo = synthesize("Hugo found it.", Voice("en-us-nyc", VARIANT, 130, 50, 50))
    assert [w.text for w in hugo.words] == ["Hugo", "found", "it"]


def test_synthesis_is_deterministic():
    voice = Voice("en-gb", "klatt", 160, 40, 60)
    first = synthesize("The quick brown fox, surely, jumps!", voice)
    synthesize("Something else in between.", Voice("en-us", "f2", 200, 70, 30))
    second = synthesize("The quick brown fox, surely, jumps!", voice)
    assert first.audio.dtype == np.float32 and first.audio.tobytes() == second.audio.tobytes()
    assert first.phones == second.phones and first.words == second.words


def test_phones_tile_the_audio(utterances):
    for u in utterances:
        assert u.phones[0].start == 0.0 and u.phones[-1].end == u.duration
        for a, b in zip(u.phones, u.phones[1:]):
            assert a.end == b.start
            assert not (a.symbol == SILENCE and b.symbol == SILENCE)
        for p in u.phones:
            assert p.end > p.start
            assert p.symbol in ARPABET or p.symbol == SILENCE
            assert (p.word == -1) == (p.symbol == SILENCE)
            assert not p.stressed or p.symbol in VOWELS
        assert any(p.stressed for p in u.phones)
        for i, word in enumerate(u.words):
            own = [p for p in u.phones if p.word == i]
            assert word.text in u.text and (word.start, word.end) == (own[0].start, own[-1].end)


def test_silences_are_quiet(utterances):
    edge = _sample(RESAMPLER_EDGE_S)
    for u in utterances:
        silent = np.zeros(len(u.audio), bool)
        speaking = np.ones(len(u.audio), bool)
        for p in u.phones:
            if p.symbol == SILENCE:
                silent[_sample(p.start) + edge : _sample(p.end) - edge] = True
                speaking[_sample(p.start) : _sample(p.end)] = False
        speech_rms = np.sqrt(np.mean(u.audio[speaking].astype(np.float64) ** 2))
        silence_rms = np.sqrt(np.mean(u.audio[silent].astype(np.float64) ** 2))
        assert 20 * np.log10(silence_rms / speech_rms + 1e-12) < -MIN_SILENCE_DROP_DB, u.text


def _words_after_pauses(u: speech.Utterance) -> dict[int, float]:
    """Word index -> time (s) to search its onset from: the first word, and each word after a
    SIL of MIN_PAUSE_S or more (searched from the middle of that SIL)."""
    first = next(p for p in u.phones if p.symbol != SILENCE)
    found = {first.word: 0.0}
    for pause, phone in zip(u.phones, u.phones[1:]):
        if pause.symbol == SILENCE and pause.end - pause.start >= MIN_PAUSE_S:
            found.setdefault(phone.word, (pause.start + pause.end) / 2)
    return found


def _onset_errors(u: speech.Utterance) -> list[float]:
    """Word start minus energy onset (s) for each word of _words_after_pauses."""
    level = _frame_db(u.audio)
    threshold = level.max() - ONSET_LEVEL_DB
    errors = []
    for index, search_from in _words_after_pauses(u).items():
        word = u.words[index]
        first = _sample(search_from) // FRAME
        loud = np.flatnonzero(level[first : _sample(word.end) // FRAME] > threshold)
        errors.append(word.start - (first + loud[0]) * FRAME / SAMPLE_RATE)
    return errors


def test_word_onsets_after_pauses_match_energy_onsets(utterances):
    errors = np.array([e for u in utterances for e in _onset_errors(u)])
    assert len(errors) >= 2 * len(utterances)
    assert np.abs(errors).max() <= MAX_ONSET_ERROR_S


def test_stop_closures_belong_to_the_stop():
    """A vowel ends where its sound ends; the silent closure after it is the stop's."""
    tail = _sample(TAIL_S)
    for text in STOP_SENTENCES:
        for accent in TIMING_ACCENTS[:2]:
            u = synthesize(text, Voice(accent, VARIANT, 175, 50, 50))
            pairs = zip(u.phones, u.phones[1:])
            vowels = [a for a, b in pairs if a.symbol in VOWELS and b.symbol in STOPS]
            assert vowels
            for vowel in vowels:
                end = _sample(vowel.end)
                tail_rms = np.sqrt(np.mean(u.audio[end - tail : end] ** 2))
                assert tail_rms > MIN_TAIL_RMS, (text, vowel)


def _band_level_db(audio: np.ndarray) -> np.ndarray:
    """NASAL_BAND_HZ energy (dB) of NASAL_WINDOW windows every 1 ms, centred on each ms."""
    x = np.pad(audio.astype(np.float64), NASAL_WINDOW // 2)
    hop = SAMPLE_RATE // 1000
    frames = np.lib.stride_tricks.sliding_window_view(x, NASAL_WINDOW)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(NASAL_WINDOW), axis=1)) ** 2
    freqs = np.fft.rfftfreq(NASAL_WINDOW, 1.0 / SAMPLE_RATE)
    band = (freqs >= NASAL_BAND_HZ[0]) & (freqs < NASAL_BAND_HZ[1])
    return 10 * np.log10(power[:, band].sum(axis=1) + 1e-12)


def test_vowels_after_nasals_start_at_the_release():
    """espeak reports such vowels 20-60 ms late; speech.py must move them to the nasal release."""
    errors = []
    for i, text in enumerate(sentences(8, 40)):
        u = synthesize(text, Voice(ACCENTS[i % len(ACCENTS)], VARIANT, TIMING_RATES[i % 2], 50, 50))
        level = _band_level_db(u.audio)
        rise_ms = round(NASAL_RISE_S * 1000)
        for nasal, vowel in zip(u.phones, u.phones[1:]):
            if nasal.symbol in ("M", "N") and vowel.symbol in VOWELS and nasal.word == vowel.word:
                lo = round((nasal.start + NASAL_SKIP_S) * 1000)
                hi = round((vowel.start + vowel.end) / 2 * 1000)
                rise = level[lo + rise_ms : hi + rise_ms] - level[lo:hi]
                release = (lo + np.argmax(rise) + rise_ms / 2) / 1000
                errors.append(vowel.start - release)
    errors = np.abs(errors)
    assert len(errors) >= 20
    assert np.median(errors) <= 0.008 and np.percentile(errors, 80) <= 0.015


def test_every_espeak_mnemonic_is_mapped():
    engine = speech._get_engine()
    texts = sentences(21, 30) + list(HARD_TEXT)
    seen = Counter()
    for accent in ACCENTS:
        for i, text in enumerate(texts):
            _, events = engine.synth(text, Voice(accent, VARIANT, (110, 175, 300)[i % 3], 50, 50))
            for event in events:
                if event.kind == speech._EVENT_PHONEME:
                    mnemonic = event.name.lstrip(speech._STRESS_MARKS)
                    speech._phones_of(mnemonic, accent)  # raises if unmapped
                    seen[mnemonic] += 1
    assert len(seen) >= 60


def test_unknown_mnemonics_raise():
    with pytest.raises(UnknownMnemonicError):
        speech._phones_of("Q^", "en-us")


def test_r_colouring_only_in_rhotic_accents():
    def symbols(accent: str) -> list[str]:
        u = synthesize("The car", Voice(accent, VARIANT, 175, 50, 50))
        return [p.symbol for p in u.phones if p.symbol != SILENCE]

    assert symbols("en-us") == ["DH", "AH", "K", "AA", "R"]
    assert symbols("en-gb") == ["DH", "AH", "K", "AA"]


def _arpabet(text: str, voice: Voice) -> list[str]:
    """The ARPAbet phones espeak speaks for `text` (mapping only: no audio processing)."""
    _, events = speech._get_engine().synth(text, voice)
    phonemes = [e for e in events if e.kind == speech._EVENT_PHONEME]
    mnemonics = [e.name.lstrip(speech._STRESS_MARKS) for e in phonemes]
    return [p for m in mnemonics for p in speech._phones_of(m, voice.accent)]


def test_generated_sentences_cover_every_arpabet_phone():
    four = ACCENTS[:4]
    phones = [
        _arpabet(text, Voice(four[i % 4], VARIANT, 175, 50, 50))
        for i, text in enumerate(sentences(0, 200))
    ]
    counts = phone_coverage(phones)
    assert set(counts) == set(ARPABET)
    assert min(counts.values()) > 0, coverage_table(counts)


def test_sentences_are_deterministic_and_varied():
    batch = sentences(3, 300)
    assert batch == sentences(3, 300) and batch != sentences(4, 300)
    assert all(MIN_WORDS <= len(s.split()) <= MAX_WORDS for s in batch)
    assert len(set(batch)) > 250
    for mark in ",?!.":
        assert sum(mark in s for s in batch) > 20


def test_split_of_is_stable_and_about_80_10_10():
    assert [split_of(k) for k in ("hello", "en-us+m1", "The boy found a coin.")] == [
        "train", "val", "test"
    ]
    counts = Counter(split_of(f"key {i}") for i in range(20000))
    for name, share in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        assert abs(counts[name] / 20000 - share) < 0.01


def test_coverage_table_flags_rare_phones():
    counts = phone_coverage([["AA"] * 999 + ["ZH", SILENCE]])
    table = coverage_table(counts)
    assert counts["AA"] == 999 and counts["ZH"] == 1 and counts["OY"] == 0
    assert "| ZH | 1 | 0.10 **rare** |" in table and "| AA | 999 | 99.90 |" in table
