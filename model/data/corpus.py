"""Compact corpus storage: per-frame ARKit weights and 16-bit audio, not vertices.

A corpus split is one file, `DIR/<split>.npz`, holding U utterances of S speakers back to back:

| key | dtype, shape | meaning |
|---|---|---|
| `audio` | int16 [sum N] | 16 kHz speech, full scale 32767 |
| `audio_offsets` | int64 [U+1] | utterance u is audio[audio_offsets[u]:audio_offsets[u+1]] |
| `weights` | float16 [sum T, 52] | ARKit weights at `fps`, ARKIT_NAMES order |
| `frame_offsets` | int64 [U+1] | utterance u is weights[frame_offsets[u]:frame_offsets[u+1]] |
| `speaker` | int32 [U] | row of `speaker_templates` |
| `speaker_templates` | float32 [S, V, 3] | each speaker's neutral head, metres |
| `speaker_names` | str [S] | e.g. "en-us+m3#12" |
| `phone_symbols` | str [P] | ARPAbet or SIL, all utterances back to back |
| `phone_times` | float32 [P, 2] | start, end in seconds from the utterance's first sample |
| `phone_offsets` | int64 [U+1] | utterance u's phones |
| `texts` | str [U] | the sentence spoken |
| `fps`, `sample_rate`, `seed` | scalars | |
| `split` | str | train, val or test |

Frame t of an utterance is at t / fps seconds from its first audio sample. The file is written
without timestamps, so the same content gives the same bytes; it loads with allow_pickle=False.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..npz import save_npz
from ..template import Template

AUDIO_SCALE = 32767.0


@dataclass
class Utterance:
    """One utterance as the generator makes it and the loader reads it."""

    audio: np.ndarray  # float32 [N] 16 kHz, in [-1, 1]
    weights: np.ndarray  # float32 [T, 52] ARKit weights at the corpus fps
    speaker: int
    phones: list[tuple[str, float, float]]  # (symbol, start s, end s)
    text: str


@dataclass
class Corpus:
    """A loaded corpus split; `vertices(u)` expands weights to meshes on demand."""

    template: Template
    audio: np.ndarray
    audio_offsets: np.ndarray
    weights: np.ndarray
    frame_offsets: np.ndarray
    speaker: np.ndarray
    speaker_templates: np.ndarray
    speaker_names: np.ndarray
    phone_symbols: np.ndarray
    phone_times: np.ndarray
    phone_offsets: np.ndarray
    texts: np.ndarray
    fps: float
    sample_rate: int
    split: str
    seed: int  # the generator's (model.data.synth): utterance u is a function of (seed, split, u)

    def __len__(self) -> int:
        return len(self.speaker)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate

    def num_frames(self, u: int) -> int:
        return int(self.frame_offsets[u + 1] - self.frame_offsets[u])

    def utterance_audio(self, u: int) -> np.ndarray:
        """float32 [N] in [-1, 1] at `sample_rate`."""
        return self.audio[self.audio_offsets[u] : self.audio_offsets[u + 1]].astype(np.float32) / AUDIO_SCALE

    def utterance_weights(self, u: int) -> np.ndarray:
        """float32 [T, 52]."""
        return self.weights[self.frame_offsets[u] : self.frame_offsets[u + 1]].astype(np.float32)

    def utterance_template(self, u: int) -> np.ndarray:
        """float32 [V, 3] metres: the speaker's neutral head."""
        return self.speaker_templates[self.speaker[u]]

    def vertices(self, u: int, frames: slice = slice(None)) -> np.ndarray:
        """float32 [T, V, 3] metres for the utterance's frames."""
        return self.template.blend(self.utterance_weights(u)[frames], self.utterance_template(u))

    def phones(self, u: int) -> list[tuple[str, float, float]]:
        lo, hi = self.phone_offsets[u], self.phone_offsets[u + 1]
        return [(str(s), float(a), float(b)) for s, (a, b) in zip(self.phone_symbols[lo:hi], self.phone_times[lo:hi])]


def _offsets(lengths: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def write_corpus(path: Path, utterances: list[Utterance], speaker_templates: np.ndarray,
                 speaker_names: list[str], fps: float, sample_rate: int, seed: int, split: str) -> None:
    """Write one split file (see the module docstring)."""
    phones = [p for u in utterances for p in u.phones]
    save_npz(path, {
        "audio": np.concatenate([np.round(np.clip(u.audio, -1, 1) * AUDIO_SCALE) for u in utterances]).astype(np.int16),
        "audio_offsets": _offsets([len(u.audio) for u in utterances]),
        "weights": np.concatenate([u.weights for u in utterances]).astype(np.float16),
        "frame_offsets": _offsets([len(u.weights) for u in utterances]),
        "speaker": np.array([u.speaker for u in utterances], dtype=np.int32),
        "speaker_templates": np.asarray(speaker_templates, dtype=np.float32),
        "speaker_names": np.array(speaker_names, dtype=str),
        "phone_symbols": np.array([p[0] for p in phones], dtype=str),
        "phone_times": np.array([p[1:] for p in phones], dtype=np.float32).reshape(-1, 2),
        "phone_offsets": _offsets([len(u.phones) for u in utterances]),
        "texts": np.array([u.text for u in utterances], dtype=str),
        "fps": np.float64(fps), "sample_rate": np.int64(sample_rate), "seed": np.int64(seed),
        "split": np.array(split),
    })


def join_corpora(first: Corpus, *others: Corpus) -> Corpus:
    """One corpus holding the utterances of all (same template, fps and sample rate), in order; it
    keeps the first's split name and seed."""
    parts = (first, *others)
    if not all(isinstance(part, Corpus) for part in parts):
        raise ValueError("only splits of the synthetic corpus (.npz) can be joined, not capture folders")
    for other in others:
        if (other.fps, other.sample_rate) != (first.fps, first.sample_rate) or other.template is not first.template:
            raise ValueError(f"cannot join corpus split {other.split!r} ({other.fps} fps, {other.sample_rate} Hz) "
                             f"to {first.split!r} ({first.fps} fps, {first.sample_rate} Hz, same template needed)")

    def offsets(name: str) -> np.ndarray:
        shifted, base = [np.zeros(1, np.int64)], 0
        for part in parts:
            shifted.append(getattr(part, name)[1:] + base)
            base += int(getattr(part, name)[-1])
        return np.concatenate(shifted)

    speaker_base = np.cumsum([0] + [len(p.speaker_templates) for p in parts[:-1]])
    return Corpus(
        template=first.template,
        audio=np.concatenate([p.audio for p in parts]), audio_offsets=offsets("audio_offsets"),
        weights=np.concatenate([p.weights for p in parts]), frame_offsets=offsets("frame_offsets"),
        speaker=np.concatenate([p.speaker + b for p, b in zip(parts, speaker_base)]).astype(np.int32),
        speaker_templates=np.concatenate([p.speaker_templates for p in parts]),
        speaker_names=np.concatenate([p.speaker_names for p in parts]),
        phone_symbols=np.concatenate([p.phone_symbols for p in parts]),
        phone_times=np.concatenate([p.phone_times for p in parts]), phone_offsets=offsets("phone_offsets"),
        texts=np.concatenate([p.texts for p in parts]),
        fps=first.fps, sample_rate=first.sample_rate, split=first.split, seed=first.seed,
    )


def load_corpus(path: Path | str, template: Template) -> Corpus:
    """Read a split file written by `write_corpus`."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return Corpus(
        template=template,
        **{k: arrays[k] for k in (
            "audio", "audio_offsets", "weights", "frame_offsets", "speaker", "speaker_templates",
            "speaker_names", "phone_symbols", "phone_times", "phone_offsets", "texts")},
        fps=float(arrays["fps"]), sample_rate=int(arrays["sample_rate"]), split=str(arrays["split"]),
        seed=int(arrays["seed"]),
    )
