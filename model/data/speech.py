"""Speech synthesis with exact phone timing, through libespeak-ng's C API (ctypes).

The PyPI package `espeakng-loader` bundles libespeak-ng 1.52 and its data (8 English accents,
about 100 voice variants). Initialised with phoneme events, espeak reports every phoneme it
synthesises with the index of the audio sample where the phoneme's sound begins; those sample
indices, scaled from 22050 Hz to seconds, are the phone boundaries, with three corrections,
all measured on espeak's own output (tests/test_speech.py checks them):

1. Vowels after a liquid or nasal (espeak types phLIQUID/phNASAL: l r w j ; m n N ...) are
   reported late: espeak emits their event after the "vowel start", the formant sequence that
   carries the consonant into the vowel (nasal murmur or glide, then transition), i.e. at the
   vowel's steady part, typically 15-50 ms (up to 100 ms at slow rates) after the boundary.
   The boundary is put back at the spectral change point between the consonant's state (its
   first third) and the vowel's state (at the reported event): the nasal release, or the
   middle of a glide's transition.
2. Digital silence (exact zero samples) at the end of a phone is espeak's pause before the next
   phone (stop closure, word gap); it is given to the next phone, so a stop includes its closure
   and a vowel ends where its sound ends.
3. espeak's linking glide ";" (IPA ʲ, between a front vowel and the next vowel) is synthesised
   as a [j]-like glide of 40-60 ms, so it is labelled Y.

Pauses (mnemonics starting with "_") and the silence before the first phoneme are SIL.

libespeak-ng keeps wavegen state in function-static variables, so the library is loaded afresh
for every utterance (about 1 ms) and its noise generator is seeded: the same text and voice
always give the same samples and events.

Mnemonic to ARPAbet (stress marks ' and , are stripped first; ' marks Phone.stressed).
ARPAbet symbols name the phoneme as CMUdict would for the word (lexical set), not the accent's
exact vowel quality. Only en-us is rhotic in espeak (IPA ɚ, ɑːɹ, ɛɹ ...): there the r-coloured
vowels become vowel + R (or ER); other accents drop the R (Scottish has its own "r" phoneme).
Two-phone entries split the phoneme's interval in half.

| espeak | ARPAbet | espeak | ARPAbet | espeak | ARPAbet |
|---|---|---|---|---|---|
| @ @2 @5 @# @- 02 V | AH | a a2 a#2 A# aa a/ | AE | a# | AH (IPA ɐ) |
| A: 0 0# A~ | AA | O O: O2 O~ | AO | E E# E2 e# | EH |
| e e: eI | EY | I I# I2 I2# | IH | i i: | IY |
| o o: oU oU# | OW | OI | OY | U | UH |
| u: | UW | aU | AW | aI aI2 | AY |
| 3: IR VR | ER | 3 | AH (en-us ER) | i@ | IY AH |
| A@ | AA (en-us AA R) | O@ o@ | AO (en-us AO R) | e@ | EH (en-us EH R) |
| i@3 | IH (en-us IH R) | U@ | UH (en-us UH R) | aI@ | AY AH |
| aI3 | AY AH (en-us AY ER) | aU@ | AW AH (en-us AW ER) | @L l- | AH L |
| m- | AH M | n- | AH N | p b t d k g | P B T D K G |
| t2 | T | t# (US flap) | T (as CMUdict) | ? (glottal stop) | T |
| d# | D | f v s z | F V S Z | z# z/2 | Z |
| T D | TH DH | t[ d[ (en-029 θ ð) | TH DH | S Z | SH ZH |
| h C | HH | x (Scots "loch") | K | tS dZ | CH JH |
| m n N | M N NG | l l/2 | L | r r/ r- | R |
| w w# | W | j ; | Y | _ _: _! ... | SIL |
"""

import _ctypes
import ctypes
import re
import string
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import espeakng_loader
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..audio import resample

SAMPLE_RATE = 16000  # Hz, of Utterance.audio
ESPEAK_SAMPLE_RATE = 22050  # Hz, espeak's native rate

ACCENTS: tuple[str, ...] = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-us-nyc",
)
RHOTIC_ACCENTS = frozenset({"en-us"})
RATE_RANGE = (80, 450)  # words per minute accepted by espeak
PERCENT_RANGE = (0, 100)  # pitch and pitch range

ARPABET: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH",
)
VOWELS = frozenset({
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
})
SILENCE = "SIL"

# espeak vowel mnemonics (type phVOWEL) -> ARPAbet; see the module docstring.
_VOWEL_PHONES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("@", "@2", "@5", "@#", "@-", "02", "V", "a#", "3"), ("AH",)),
    **dict.fromkeys(("a", "a2", "a#2", "A#", "aa", "a/"), ("AE",)),
    **dict.fromkeys(("A:", "0", "0#", "A~", "A@"), ("AA",)),
    **dict.fromkeys(("O", "O:", "O2", "O~", "O@", "o@"), ("AO",)),
    **dict.fromkeys(("E", "E#", "E2", "e#", "e@"), ("EH",)),
    **dict.fromkeys(("e", "e:", "eI"), ("EY",)),
    **dict.fromkeys(("I", "I#", "I2", "I2#", "i@3"), ("IH",)),
    **dict.fromkeys(("i", "i:"), ("IY",)),
    **dict.fromkeys(("o", "o:", "oU", "oU#"), ("OW",)),
    **dict.fromkeys(("3:", "IR", "VR"), ("ER",)),
    **dict.fromkeys(("aI", "aI2"), ("AY",)),
    "OI": ("OY",), "U": ("UH",), "U@": ("UH",), "u:": ("UW",), "aU": ("AW",),
    "i@": ("IY", "AH"), "aI@": ("AY", "AH"), "aI3": ("AY", "AH"), "aU@": ("AW", "AH"),
    "@L": ("AH", "L"), "l-": ("AH", "L"), "m-": ("AH", "M"), "n-": ("AH", "N"),
}
# r-coloured vowels in RHOTIC_ACCENTS
_RHOTIC_VOWEL_PHONES: dict[str, tuple[str, ...]] = {
    "3": ("ER",), "A@": ("AA", "R"), "O@": ("AO", "R"), "o@": ("AO", "R"), "e@": ("EH", "R"),
    "i@3": ("IH", "R"), "U@": ("UH", "R"), "aI3": ("AY", "ER"), "aU@": ("AW", "ER"),
}
# espeak liquids and nasals (types phLIQUID, phNASAL): a vowel after one is reported late
_LIQUIDS_AND_NASALS: dict[str, tuple[str, ...]] = {
    "m": ("M",), "n": ("N",), "N": ("NG",), "l": ("L",), "l/2": ("L",), "r": ("R",),
    "r/": ("R",), "r-": ("R",), "w": ("W",), "j": ("Y",), ";": ("Y",),
}
_OTHER_CONSONANT_PHONES: dict[str, tuple[str, ...]] = {
    "p": ("P",), "b": ("B",), "t": ("T",), "t2": ("T",), "t#": ("T",), "?": ("T",),
    "d": ("D",), "d#": ("D",), "k": ("K",), "x": ("K",), "g": ("G",), "f": ("F",), "v": ("V",),
    "s": ("S",), "z": ("Z",), "z#": ("Z",), "z/2": ("Z",), "T": ("TH",), "t[": ("TH",),
    "D": ("DH",), "d[": ("DH",), "S": ("SH",), "Z": ("ZH",), "h": ("HH",), "C": ("HH",),
    "tS": ("CH",), "dZ": ("JH",), "w#": ("W",),
}
_PAUSE_PREFIX = "_"  # espeak pause phonemes: _ _: _:: _! _| _;_ _^_ ...
_PRIMARY_STRESS = "'"
_STRESS_MARKS = "',"

_MIN_PHONE_S = 0.010  # the vowel-onset correction leaves each side at least this long
_MIN_ZERO_RUN_S = 0.002  # trailing exact-zero runs shorter than this are zero crossings
_FEATURE_HOP = 22  # samples at ESPEAK_SAMPLE_RATE (1 ms) between spectral frames
_FEATURE_FFT = 512  # samples (23 ms), spans two pitch periods at 90 Hz
_FEATURE_BANDS = 40  # log-spaced bands from _FEATURE_LOW_HZ to _FEATURE_HIGH_HZ
_FEATURE_LOW_HZ = 100.0
_FEATURE_HIGH_HZ = 8000.0
_FEATURE_FLOOR = 1e-10
_STATE_SKIP_S = 0.005  # the consonant's state starts this long after its reported start
_VOWEL_STATE_HALF_S = 0.003  # the vowel's state: frames this close to its reported event


class UnknownMnemonicError(ValueError):
    """espeak produced a phoneme mnemonic that has no ARPAbet mapping in this module."""


# --- libespeak-ng C API constants (speak_lib.h, API revision 12) ---
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_BUFFER_MS = 0  # 0: espeak's default callback buffer (60 ms)
_EE_OK = 0
_NOISE_SEED = 1
_INT16_FULL_SCALE = 32768.0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT; 40 bytes on 64-bit (user_data and id are 8-aligned at offsets 24, 32)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character index in the text
        ("length", ctypes.c_int),  # word length in characters (WORD events)
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # sample index at ESPEAK_SAMPLE_RATE from the start
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _VoiceInfo(ctypes.Structure):
    """espeak_VOICE, as listed by espeak_ListVoices."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, zero-terminated name)*, then a zero byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class _RawEvent:
    """A WORD or PHONEME event: kind, 1-based text position, length (chars), sample, name."""

    kind: int
    text_position: int
    length: int
    sample: int  # at ESPEAK_SAMPLE_RATE
    name: str  # phoneme mnemonic with stress marks; "" for words


def _declare(lib: ctypes.CDLL) -> None:
    """Set the ctypes signatures of the C functions used."""
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceInfo))
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = ctypes.c_int
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = ctypes.c_int


def _languages(address: int) -> list[str]:
    """Decode an espeak_VOICE languages list: (priority byte, name, NUL)* then NUL."""
    names = []
    while ctypes.c_ubyte.from_address(address).value != 0:
        name = ctypes.string_at(address + 1)
        names.append(name.decode("utf-8"))
        address += len(name) + 2
    return names


class _Library:
    """One freshly loaded, initialised libespeak-ng instance; a context manager that unloads it.

    libespeak-ng keeps synthesis state in function-static variables (pitch flutter phase, AGC,
    glottal and echo state in wavegen.c) that neither espeak_Initialize nor espeak_Terminate
    resets, so a second synthesis in the same instance gives different samples. Loading the
    library afresh for each utterance (about 1 ms) makes output depend only on text and voice.
    """

    def __init__(self, callback: "_SynthCallback") -> None:
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        _declare(self.lib)
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        data_path = espeakng_loader.get_data_path().encode("utf-8")
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path, options)
        if rate != ESPEAK_SAMPLE_RATE:
            self.close()
            raise RuntimeError(f"espeak_Initialize returned {rate}, expected {ESPEAK_SAMPLE_RATE}")
        self.lib.espeak_SetSynthCallback(callback)

    def close(self) -> None:
        """Terminate espeak and unload the library, so the next load starts from fresh state."""
        self.lib.espeak_Terminate()
        _ctypes.dlclose(self.lib._handle)

    def __enter__(self) -> ctypes.CDLL:
        return self.lib

    def __exit__(self, *exc) -> None:
        self.close()


def _accent_identifiers(lib: ctypes.CDLL) -> dict[str, str]:
    """Voice file identifier (e.g. "gmw/en" for "en-gb") of each bundled voice, by language."""
    voices = lib.espeak_ListVoices(None)
    ids = {}
    i = 0
    while voices[i]:
        info = voices[i].contents
        ids.setdefault(_languages(info.languages)[0], info.identifier.decode("utf-8"))
        i += 1
    return ids


class _Engine:
    """Serialises synthesis (espeak is process-global) and collects what its callback reports."""

    def __init__(self) -> None:
        self._callback = _SynthCallback(self._on_audio)  # referenced here so it is not freed
        self._chunks: list[np.ndarray] = []
        self._events: list[_RawEvent] = []
        self._lock = threading.Lock()
        with _Library(self._callback) as lib:
            self.voice_ids = _accent_identifiers(lib)

    def _on_audio(self, wav, n_samples: int, events) -> int:
        """espeak's synth callback: keep the samples and the WORD/PHONEME events; 0 = go on."""
        if wav and n_samples > 0:
            self._chunks.append(np.frombuffer(ctypes.string_at(wav, 2 * n_samples), np.int16))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type in (_EVENT_WORD, _EVENT_PHONEME):
                name = event.id.string.decode("utf-8") if event.type == _EVENT_PHONEME else ""
                self._events.append(
                    _RawEvent(event.type, event.text_position, event.length, event.sample, name)
                )
            i += 1
        return 0

    def synth(self, text: str, voice: "Voice") -> tuple[np.ndarray, list[_RawEvent]]:
        """int16 audio at ESPEAK_SAMPLE_RATE and the WORD/PHONEME events of `text` in `voice`."""
        spec = f"{self.voice_ids[voice.accent]}+{voice.variant}".encode("utf-8")
        data = text.encode("utf-8")
        params = (
            (_PARAM_RATE, voice.rate), (_PARAM_PITCH, voice.pitch),
            (_PARAM_RANGE, voice.pitch_range),
        )
        with self._lock, _Library(self._callback) as lib:
            _check(lib.espeak_SetVoiceByName(spec), f"espeak_SetVoiceByName({spec!r})")
            for param, value in params:
                _check(lib.espeak_SetParameter(param, value, 0), f"espeak_SetParameter({param})")
            _check(lib.espeak_ng_SetRandSeed(_NOISE_SEED), "espeak_ng_SetRandSeed")
            self._chunks, self._events = [], []
            code = lib.espeak_Synth(
                data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            _check(code, "espeak_Synth")
            _check(lib.espeak_Synchronize(), "espeak_Synchronize")
            chunks, events = self._chunks, self._events
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return audio, events


def _check(code: int, what: str) -> None:
    """Raise if an espeak call returned an error code."""
    if code != _EE_OK:
        raise RuntimeError(f"{what} failed with espeak error {code}")


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _get_engine() -> _Engine:
    """The process's engine, created on first use."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine()
        return _engine


@lru_cache(maxsize=2)
def voice_variants(include_echo: bool = True) -> tuple[str, ...]:
    """Names of the bundled voice variants (espeak-ng-data/voices/!v/*), sorted.

    With include_echo=False, variants whose file adds an echo (a delayed copy of the speech, so
    pauses are not silent: f2..f5, m2, announcer, robosoft*, ...) are left out.
    """
    folder = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return tuple(p.name for p in files if include_echo or not _has_echo(p))


def _has_echo(variant_file: Path) -> bool:
    """Whether a variant file sets "echo <delay ms> <amplitude>" with both nonzero."""
    for line in variant_file.read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.split()
        if words[:1] == ["echo"] and all(int(w) != 0 for w in words[1:3]):
            return True
    return False


@dataclass(frozen=True)
class Voice:
    """An espeak voice: accent (one of ACCENTS), variant (one of voice_variants()), prosody."""

    accent: str
    variant: str
    rate: int  # words per minute, RATE_RANGE (175 is espeak's normal)
    pitch: int  # base pitch, 0..100 (50 is normal)
    pitch_range: int  # pitch range, 0..100 (0 monotone, 50 normal)

    def __post_init__(self) -> None:
        if self.accent not in ACCENTS:
            raise ValueError(f"accent {self.accent!r} is not one of {ACCENTS}")
        if self.variant not in voice_variants():
            raise ValueError(f"variant {self.variant!r} is not a bundled espeak variant")
        for field, value, (low, high) in (
            ("rate", self.rate, RATE_RANGE), ("pitch", self.pitch, PERCENT_RANGE),
            ("pitch_range", self.pitch_range, PERCENT_RANGE),
        ):
            if not low <= value <= high:
                raise ValueError(f"{field} {value} is outside {low}..{high}")

    @property
    def name(self) -> str:
        """e.g. "en-us+m3"."""
        return f"{self.accent}+{self.variant}"


@dataclass(frozen=True)
class Phone:
    """One ARPAbet phone (stress digits dropped) or SILENCE, with its interval in the audio."""

    symbol: str  # one of ARPABET, or SILENCE ("SIL") for a pause
    start: float  # seconds from the first audio sample
    end: float  # seconds
    stressed: bool  # a vowel with primary stress
    word: int  # index into Utterance.words; -1 for SIL


@dataclass(frozen=True)
class Word:
    """A word of the text as spoken, from its first phone's start to its last phone's end."""

    text: str
    start: float  # seconds
    end: float  # seconds


@dataclass
class Utterance:
    """A synthesised sentence: audio and the phones and words that tile it."""

    audio: np.ndarray  # float32 [N] at SAMPLE_RATE, as espeak produced it (not normalised)
    phones: list[Phone]  # contiguous, from 0 to N / SAMPLE_RATE seconds, pauses as SIL
    words: list[Word]
    text: str
    voice: Voice

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return len(self.audio) / SAMPLE_RATE


def _phones_of(mnemonic: str, accent: str) -> tuple[str, ...]:
    """ARPAbet phones of an espeak mnemonic (stress marks stripped) in `accent`; () for a pause.

    Raises UnknownMnemonicError for a mnemonic missing from the tables.
    """
    if mnemonic.startswith(_PAUSE_PREFIX):
        return ()
    if accent in RHOTIC_ACCENTS and mnemonic in _RHOTIC_VOWEL_PHONES:
        return _RHOTIC_VOWEL_PHONES[mnemonic]
    for table in (_VOWEL_PHONES, _LIQUIDS_AND_NASALS, _OTHER_CONSONANT_PHONES):
        if mnemonic in table:
            return table[mnemonic]
    raise UnknownMnemonicError(f"espeak phoneme {mnemonic!r} has no ARPAbet mapping")


@dataclass
class _Segment:
    """One espeak phoneme's interval, in samples at ESPEAK_SAMPLE_RATE."""

    mnemonic: str  # stress marks stripped
    stressed: bool
    start: int
    end: int
    text_position: int  # 1-based character index of its word in the text

    @property
    def is_pause(self) -> bool:
        return self.mnemonic.startswith(_PAUSE_PREFIX)


def _segments(events: list[_RawEvent], n_samples: int) -> list[_Segment]:
    """Phoneme intervals from event to event; the audio before the first is a pause.

    Zero-length intervals (espeak reports "_" at the same sample as the phone after it) are
    dropped.
    """
    phonemes = [e for e in events if e.kind == _EVENT_PHONEME]
    starts = [e.sample for e in phonemes] + [n_samples]
    segments = [_Segment(_PAUSE_PREFIX, False, 0, starts[0], 0)]
    for event, start, end in zip(phonemes, starts, starts[1:]):
        mnemonic = event.name.lstrip(_STRESS_MARKS)
        stressed = event.name.startswith(_PRIMARY_STRESS)
        segments.append(_Segment(mnemonic, stressed, start, end, event.text_position))
    return [s for s in segments if s.end > s.start]


def _spectral_frames(audio: np.ndarray, first: int, last: int) -> np.ndarray:
    """Log band energies [last - first + 1, _FEATURE_BANDS] of frames first..last.

    Frame f is _FEATURE_FFT samples (Hann window) centred on sample f * _FEATURE_HOP.
    """
    half = _FEATURE_FFT // 2
    lo, hi = first * _FEATURE_HOP - half, last * _FEATURE_HOP + half
    x = np.pad(audio[max(lo, 0) : hi].astype(np.float32), (max(-lo, 0), max(hi - len(audio), 0)))
    frames = sliding_window_view(x, _FEATURE_FFT)[::_FEATURE_HOP] * np.hanning(_FEATURE_FFT)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return np.log(power @ _band_matrix() + _FEATURE_FLOOR)


@lru_cache(maxsize=1)
def _band_matrix() -> np.ndarray:
    """[FFT bins, bands] 0/1 matrix pooling FFT bins into log-spaced bands."""
    freqs = np.fft.rfftfreq(_FEATURE_FFT, 1.0 / ESPEAK_SAMPLE_RATE)
    edges = np.geomspace(_FEATURE_LOW_HZ, _FEATURE_HIGH_HZ, _FEATURE_BANDS + 1)
    band = np.searchsorted(edges, freqs, side="right") - 1
    matrix = np.zeros((len(freqs), _FEATURE_BANDS), np.float32)
    inside = (band >= 0) & (band < _FEATURE_BANDS)
    matrix[np.nonzero(inside)[0], band[inside]] = 1.0
    return matrix


def _vowel_onset(audio: np.ndarray, consonant: _Segment, vowel_event: int) -> int:
    """Sample where a liquid/nasal ends and the vowel reported at `vowel_event` begins.

    Frames from `consonant.start` to `vowel_event` are labelled by whether they are nearer
    (Euclidean, log bands) the consonant's state (its first third) or the vowel's state (at its
    event); the boundary is the split with the fewest frames on the wrong side.
    """
    hop = _FEATURE_HOP
    first, last = consonant.start // hop, vowel_event // hop
    skip = round(_STATE_SKIP_S * ESPEAK_SAMPLE_RATE) // hop
    third = max((last - first) // 3, skip + 1)
    half = round(_VOWEL_STATE_HALF_S * ESPEAK_SAMPLE_RATE) // hop
    frames = _spectral_frames(audio, first, last + half)
    consonant_state = frames[skip:third].mean(axis=0)
    vowel_state = frames[last - first - half :].mean(axis=0)
    span = frames[: last - first + 1]
    vowel_like = np.linalg.norm(span - consonant_state, axis=1) > np.linalg.norm(
        span - vowel_state, axis=1
    )
    # errors[b] = vowel-like frames before b + consonant-like frames from b on
    errors = np.concatenate([[0], np.cumsum(vowel_like)]) + np.concatenate(
        [np.cumsum(~vowel_like[::-1])[::-1], [0]]
    )
    min_frames = round(_MIN_PHONE_S * ESPEAK_SAMPLE_RATE) // hop
    lo, hi = min_frames, len(span) - min_frames
    return (first + lo + int(np.argmin(errors[lo : hi + 1]))) * hop


def _realign_vowel_onsets(segments: list[_Segment], audio: np.ndarray) -> None:
    """Move each vowel that follows a liquid or nasal back to its acoustic onset (in place)."""
    min_span = 2 * round(_MIN_PHONE_S * ESPEAK_SAMPLE_RATE) + 2 * _FEATURE_HOP
    for consonant, vowel in zip(segments, segments[1:]):
        if (
            consonant.mnemonic in _LIQUIDS_AND_NASALS
            and vowel.mnemonic in _VOWEL_PHONES
            and vowel.start - consonant.start >= min_span
        ):
            consonant.end = vowel.start = _vowel_onset(audio, consonant, vowel.start)


def _give_trailing_silence_to_next(segments: list[_Segment], audio: np.ndarray) -> None:
    """Move exact-zero samples at the end of a non-pause phoneme to the next one (in place)."""
    min_run = round(_MIN_ZERO_RUN_S * ESPEAK_SAMPLE_RATE)
    for current, following in zip(segments, segments[1:]):
        if current.is_pause:
            continue
        nonzero = np.flatnonzero(audio[current.start : current.end])
        if len(nonzero) and current.end - (current.start + nonzero[-1] + 1) >= min_run:
            current.end = following.start = current.start + int(nonzero[-1]) + 1


def _word_spans(events: list[_RawEvent], text: str) -> dict[int, str]:
    """Text of each word espeak reported, by its 1-based character position."""
    return {
        e.text_position: text[e.text_position - 1 : e.text_position - 1 + e.length]
        for e in events
        if e.kind == _EVENT_WORD
    }


def _word_at(text: str, position: int, reported: dict[int, str]) -> tuple[int, str]:
    """(1-based start, text) of the word at character `position`.

    espeak reports each word's span, but not always (en-us-nyc drops the first word's event when
    it turns "Hugo" into "jugo"; its phonemes then carry position 0): unreported positions fall
    back to the whitespace-separated token there, without surrounding punctuation.
    """
    if position in reported:
        return position, reported[position]
    index = max(position - 1, 0)
    for token in re.finditer(r"\S+", text):
        if token.end() > index:
            return token.start() + 1, token.group().strip(string.punctuation) or token.group()
    raise ValueError(f"espeak phoneme at character {position} is past the end of {text!r}")


def _labelled(
    segments: list[_Segment], accent: str, text: str, word_spans: dict[int, str], duration: float
) -> tuple[list[Phone], list[Word]]:
    """Phones (pauses merged into single SILs, last phone ending at `duration`) and words."""
    phones: list[Phone] = []
    words: list[Word] = []
    word_of_position: dict[int, int] = {}
    for segment in segments:
        start, end = segment.start / ESPEAK_SAMPLE_RATE, segment.end / ESPEAK_SAMPLE_RATE
        symbols = _phones_of(segment.mnemonic, accent)
        if not symbols:
            if phones and phones[-1].symbol == SILENCE:
                start = phones.pop().start
            phones.append(Phone(SILENCE, start, end, False, -1))
            continue
        position, word_text = _word_at(text, segment.text_position, word_spans)
        if position not in word_of_position:
            word_of_position[position] = len(words)
            words.append(Word(word_text, start, end))
        word = word_of_position[position]
        words[word] = Word(words[word].text, words[word].start, end)
        bounds = [start + (end - start) * i / len(symbols) for i in range(len(symbols))] + [end]
        for symbol, a, b in zip(symbols, bounds, bounds[1:]):
            phones.append(Phone(symbol, a, b, segment.stressed and symbol in VOWELS, word))
    last = phones[-1]
    phones[-1] = Phone(last.symbol, last.start, duration, last.stressed, last.word)
    if last.word >= 0:
        words[last.word] = Word(words[last.word].text, words[last.word].start, duration)
    return phones, words


def synthesize(text: str, voice: Voice) -> Utterance:
    """Speak `text` (UTF-8, plain text) with `voice`; audio at SAMPLE_RATE with phone timing.

    Raises UnknownMnemonicError if espeak uses a phoneme this module cannot map to ARPAbet.
    """
    audio, events = _get_engine().synth(text, voice)
    if not any(e.kind == _EVENT_PHONEME for e in events):
        raise ValueError(f"espeak produced no phonemes for {text!r}")
    segments = _segments(events, len(audio))
    _realign_vowel_onsets(segments, audio)
    _give_trailing_silence_to_next(segments, audio)
    scaled = audio.astype(np.float32) / np.float32(_INT16_FULL_SCALE)
    audio_16k = resample(scaled, ESPEAK_SAMPLE_RATE, SAMPLE_RATE)
    duration = len(audio_16k) / SAMPLE_RATE
    phones, words = _labelled(segments, voice.accent, text, _word_spans(events, text), duration)
    return Utterance(np.asarray(audio_16k, np.float32), phones, words, text, voice)
