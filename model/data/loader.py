"""Training windows: random fixed-length segments of a corpus or a capture set, as model inputs.

An item is a segment of `segment_frames` consecutive frames of one utterance: for each frame the
log-mel window it hears (`model.audio.frame_windows`), its mesh, and the speaker's neutral head.
Item i is a pure function of (seed, i), so runs repeat exactly with any number of workers.

The audio path is the runtime one: the whole utterance is loudness-normalised, then (when
`Augment.enabled`) the waveform is augmented, then log-mel features are computed (and, if asked
for, some of their mel bands masked). Only the stretch of audio the segment's windows read is
transformed, so an item costs about the same for a 2 s utterance and a 2 min capture.
"""

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..audio import (DEFAULT_FUTURE_S, DEFAULT_PAST_S, HOP_LENGTH, MEL_FPS, N_FFT, SAMPLE_RATE, frame_windows,
                     log_mel, normalize_loudness, window_size)

STFT_REACH_SAMPLES = N_FFT // 2  # a mel frame reads samples up to this far from its centre
STFT_REACH_ROWS = math.ceil(STFT_REACH_SAMPLES / HOP_LENGTH)
REVERB_DECAY_DB = 60.0  # by definition, a room's response falls this far over its RT60


class WindowSource(Protocol):
    """What WindowDataset reads; `Corpus` and `CaptureSet` both provide it."""

    fps: float
    sample_rate: int
    speaker: np.ndarray  # int [U]

    def __len__(self) -> int: ...
    def num_frames(self, u: int) -> int: ...
    def utterance_audio(self, u: int) -> np.ndarray: ...  # float32 [N] at sample_rate
    def utterance_template(self, u: int) -> np.ndarray: ...  # float32 [V, 3] metres
    def vertices(self, u: int, frames: slice) -> np.ndarray: ...  # float32 [T, V, 3] metres


# --- audio augmentation: float [N] waveforms at SAMPLE_RATE in, float64 [N] out -----------------

def coloured_noise(n_samples: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Noise float64 [n_samples] with mean square 1: "white" (flat spectrum) or "pink" (power ~ 1/f)."""
    white = rng.standard_normal(n_samples)
    if colour == "white":
        noise = white
    elif colour == "pink":
        spectrum = np.fft.rfft(white)
        bins = np.arange(len(spectrum))
        spectrum[0] = 0.0
        spectrum[1:] /= np.sqrt(bins[1:])  # amplitude ~ 1/sqrt(f): power ~ 1/f
        noise = np.fft.irfft(spectrum, n_samples)
    else:
        raise ValueError(f"noise colour must be 'white' or 'pink', got {colour!r}")
    return noise / np.sqrt(np.mean(noise**2))


def add_noise(audio: np.ndarray, snr_db: float, colour: str, rng: np.random.Generator,
              signal_power: float | None = None) -> np.ndarray:
    """audio plus noise `snr_db` dB below `signal_power` (mean square; default the audio's own)."""
    power = np.mean(np.square(audio, dtype=np.float64)) if signal_power is None else signal_power
    return audio + coloured_noise(len(audio), colour, rng) * np.sqrt(power * 10.0 ** (-snr_db / 10.0))


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """audio scaled by gain_db decibels."""
    return audio * 10.0 ** (gain_db / 20.0)


def reverb_impulse_response(rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: noise decaying REVERB_DECAY_DB over rt60_s, float64 [rt60_s * SAMPLE_RATE], unit energy."""
    t = np.arange(round(rt60_s * SAMPLE_RATE)) / SAMPLE_RATE
    response = rng.standard_normal(len(t)) * 10.0 ** (-REVERB_DECAY_DB / 20.0 * t / rt60_s)
    return response / np.linalg.norm(response)


def add_reverb(audio: np.ndarray, rt60_s: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """(1 - wet) * audio + wet * audio convolved with `reverb_impulse_response(rt60_s)` (causal, same length)."""
    response = reverb_impulse_response(rt60_s, rng)
    n_fft = 1 << (len(audio) + len(response) - 2).bit_length()  # a power of two >= the full convolution
    spectrum = np.fft.rfft(audio, n_fft) * np.fft.rfft(response, n_fft)
    return (1.0 - wet) * audio + wet * np.fft.irfft(spectrum, n_fft)[: len(audio)]


def band_limit(audio: np.ndarray, highpass_hz: float, lowpass_hz: float) -> np.ndarray:
    """audio with everything below highpass_hz and above lowpass_hz removed (FFT mask)."""
    spectrum = np.fft.rfft(audio)
    hz = np.fft.rfftfreq(len(audio), 1.0 / SAMPLE_RATE)
    spectrum[(hz < highpass_hz) | (hz > lowpass_hz)] = 0.0
    return np.fft.irfft(spectrum, len(audio))


@dataclass(frozen=True)
class Augment:
    """Random degradations of 16 kHz speech, applied before features; nothing happens unless `enabled`.

    When enabled, each effect happens with its probability, in the order of a recording chain:
    room reverb, background noise, a band-limited channel, gain. Each (low, high) range is drawn
    uniformly. All randomness comes from the generator passed in, so a seed fixes the result.
    """

    enabled: bool = False
    reverb_prob: float = 0.3
    reverb_rt60_s: tuple[float, float] = (0.1, 0.6)  # seconds for the room's response to fall 60 dB
    reverb_wet: tuple[float, float] = (0.1, 0.5)  # share of reverberant sound in the mix
    noise_prob: float = 0.5
    noise_snr_db: tuple[float, float] = (10.0, 40.0)  # relative to the utterance's mean square
    pink_noise_prob: float = 0.5  # chance that the noise is pink rather than white
    band_limit_prob: float = 0.3
    highpass_hz: tuple[float, float] = (50.0, 300.0)
    lowpass_hz: tuple[float, float] = (3000.0, 8000.0)
    gain_prob: float = 0.5
    gain_db: tuple[float, float] = (-6.0, 6.0)
    # After the features: SpecAugment's frequency masking, so that no few mel bands alone can
    # carry a cue (off unless band_mask_prob > 0; `mask_bands`).
    band_mask_prob: float = 0.0
    band_masks: int = 2  # 1 .. this many masks in a masked segment
    band_mask_bins: int = 12  # each 1 .. this many adjacent mel bands wide
    # On the meshes: the share of segments whose speaker's head moves toward the template's neutral
    # (off unless identity_mix_prob > 0 and the dataset has a neutral; `mix_identity`).
    identity_mix_prob: float = 0.0

    @property
    def lead_in_s(self) -> float:
        """Seconds of audio before a stretch that its augmented version depends on (a reverb tail)."""
        return self.reverb_rt60_s[1] if self.enabled and self.reverb_prob > 0 else 0.0

    def __call__(self, audio: np.ndarray, rng: np.random.Generator, signal_power: float | None = None) -> np.ndarray:
        """Augmented float32 [N] copy of audio [N]; `audio` itself when not enabled.

        signal_power: the mean square the noise SNR refers to (that of the whole utterance when
        `audio` is a stretch of it); default the mean square of `audio` after reverb.
        """
        if not self.enabled:
            return audio
        out = np.asarray(audio, dtype=np.float64)
        if rng.random() < self.reverb_prob:
            out = add_reverb(out, rng.uniform(*self.reverb_rt60_s), rng.uniform(*self.reverb_wet), rng)
        if rng.random() < self.noise_prob:
            colour = "pink" if rng.random() < self.pink_noise_prob else "white"
            out = add_noise(out, rng.uniform(*self.noise_snr_db), colour, rng, signal_power)
        if rng.random() < self.band_limit_prob:
            out = band_limit(out, rng.uniform(*self.highpass_hz), rng.uniform(*self.lowpass_hz))
        if rng.random() < self.gain_prob:
            out = apply_gain(out, rng.uniform(*self.gain_db))
        return out.astype(np.float32)

    def mask_bands(self, windows: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Log-mel windows [..., M] of one segment; with probability band_mask_prob (when enabled),
        a copy with 1 .. band_masks runs of up to band_mask_bins adjacent mel bands each set to the
        band's mean over the segment: its level stays, its changes over time are gone. Draws
        nothing from rng when off, so items are as without it."""
        if not (self.enabled and self.band_mask_prob > 0) or rng.random() >= self.band_mask_prob:
            return windows
        windows = windows.clone()
        bands = windows.shape[-1]
        for _ in range(int(rng.integers(1, self.band_masks + 1))):
            width = int(rng.integers(1, min(self.band_mask_bins, bands) + 1))
            low = int(rng.integers(0, bands - width + 1))
            masked = windows[..., low : low + width]
            masked[:] = masked.reshape(-1, width).mean(0)
        return windows

    def mix_identity(self, vertices: np.ndarray, head: np.ndarray, neutral: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(vertices [T, V, 3], head [V, 3]) of one segment, metres; with probability
        identity_mix_prob (when enabled), both moved by the same offset, which takes the head a
        uniform share of the way back to `neutral` [V, 3]: the motion (vertices - head) stays.

        The synthetic corpus's heads all differ from the template by the same 1.5 mm RMS plus a
        scale (model.data.identity), so no training head lies near the template that users
        animate; a model trained without this sealed 21 % of eSpeak's p/b/m on the template and
        98.6 % on its speakers' heads (weights/README.md). Draws nothing from rng when off."""
        if not (self.enabled and self.identity_mix_prob > 0) or rng.random() >= self.identity_mix_prob:
            return vertices, head
        offset = (rng.uniform() - 1.0) * (head - neutral)  # head + offset = neutral + share * (head - neutral)
        return (vertices + offset).astype(np.float32), (head + offset).astype(np.float32)


# --- features of one segment from only the audio its windows read ----------------------------

@dataclass(frozen=True)
class AudioSpan:
    """The audio a segment's windows read: rows [first_row, end_row) of the whole clip's log-mel.

    Those rows are computed exactly from samples [first_sample, end_sample) of the clip;
    first_sample is a multiple of HOP_LENGTH, so the span's mel frames line up with the clip's.
    """

    first_row: int
    end_row: int
    first_sample: int
    end_sample: int


def segment_span(n_samples: int, start_frame: int, n_frames: int, fps: float,
                 past_s: float = DEFAULT_PAST_S, future_s: float = DEFAULT_FUTURE_S) -> AudioSpan:
    """The span of an n_samples clip that frames start_frame .. start_frame + n_frames - 1 read."""
    total_rows = 1 + n_samples // HOP_LENGTH  # log_mel's frame count
    # A frame's window is centred within half a mel frame of t * MEL_FPS / fps; one row of slack
    # each side keeps the span safe from rounding.
    first_centre = math.floor(start_frame * MEL_FPS / fps) - 1
    last_centre = math.ceil((start_frame + n_frames - 1) * MEL_FPS / fps) + 1
    first_row = min(max(0, first_centre - window_size(past_s, 0.0)), total_rows)
    end_row = min(last_centre + window_size(0.0, future_s), total_rows)
    return AudioSpan(
        first_row=first_row,
        end_row=end_row,
        first_sample=max(0, first_row - STFT_REACH_ROWS) * HOP_LENGTH,
        end_sample=min(n_samples, (end_row - 1) * HOP_LENGTH + STFT_REACH_SAMPLES),
    )


def segment_windows(span_audio: np.ndarray, span: AudioSpan, start_frame: int, n_frames: int, fps: float,
                    past_s: float = DEFAULT_PAST_S, future_s: float = DEFAULT_FUTURE_S) -> torch.Tensor:
    """Log-mel windows float32 [n_frames, W, N_MELS] of a segment, from its span's samples only.

    span_audio = audio[span.first_sample:span.end_sample] of a 16 kHz clip `audio`. The result
    equals frame_windows(log_mel(audio), start_frame + n_frames, fps, past_s, future_s)[start_frame:].
    """
    mel = log_mel(torch.from_numpy(np.ascontiguousarray(span_audio, dtype=np.float32)))
    first = span.first_row - span.first_sample // HOP_LENGTH  # the span's row for clip row first_row
    rows = mel[first : first + span.end_row - span.first_row]
    clip_rows = F.pad(rows, (0, 0, span.first_row, 0))  # row r is clip row r; the segment reads none below first_row
    return frame_windows(clip_rows, n_frames, fps, past_s, future_s, first_frame=start_frame)


# --- the dataset ----------------------------------------------------------------------------

class WindowDataset(Dataset):
    """Segments of `segment_frames` frames, each drawn at random from a `Corpus` or `CaptureSet`.

    Item i draws, from a generator seeded with (seed, i), one of all segment positions in the
    source uniformly: utterances come up in proportion to their length, start frames uniformly.
    It is a dict of tensors:
      audio        float32 [T, W, N_MELS]  log-mel window of each frame (W = 60 by default)
      vertices     float32 [T, V, 3]       meshes, metres
      template     float32 [V, 3]          the speaker's neutral head, metres
      speaker, utterance, start_frame      int64 scalars
    Every pass over the dataset gives the same items; pass another seed for other ones.
    `neutral` [V, 3] metres (the template's) is what `Augment.mix_identity` moves heads toward.
    """

    def __init__(self, source: WindowSource, segment_frames: int = 32, past_s: float = DEFAULT_PAST_S,
                 future_s: float = DEFAULT_FUTURE_S, augment: Augment = Augment(), seed: int = 0,
                 items_per_epoch: int | None = None, neutral: np.ndarray | None = None):
        """items_per_epoch: the dataset's length; default one segment per segment_frames frames of source."""
        if source.sample_rate != SAMPLE_RATE:
            raise ValueError(f"the source's audio is {source.sample_rate} Hz; the model needs {SAMPLE_RATE} Hz")
        if segment_frames < 1:
            raise ValueError(f"segment_frames must be at least 1, got {segment_frames}")
        self.source = source
        self.segment_frames = segment_frames
        self.past_s = past_s
        self.future_s = future_s
        self.augment = augment
        self.seed = seed
        self.neutral = neutral
        lengths = np.array([source.num_frames(u) for u in range(len(source))], dtype=np.int64)
        positions = np.maximum(0, lengths - segment_frames + 1)
        self._segment_offsets = np.concatenate([[0], np.cumsum(positions)])  # int64 [U + 1]
        if self._segment_offsets[-1] == 0:
            raise ValueError(f"no utterance is {segment_frames} frames ({segment_frames / source.fps:.2f} s) long; "
                             "use shorter segments")
        self.items_per_epoch = items_per_epoch or max(1, int(lengths.sum()) // segment_frames)

    def __len__(self) -> int:
        return self.items_per_epoch

    def segment(self, i: int) -> tuple[int, int]:
        """(utterance, start frame) of item i."""
        return self._draw_segment(self._rng(i))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} items")
        rng = self._rng(i)
        u, start = self._draw_segment(rng)
        windows = self._audio_windows(u, start, rng)
        vertices = self.source.vertices(u, slice(start, start + self.segment_frames))
        head = self.source.utterance_template(u)
        if self.neutral is not None:
            vertices, head = self.augment.mix_identity(vertices, head, self.neutral, rng)
        return {
            "audio": windows,
            "vertices": torch.from_numpy(vertices),
            "template": torch.tensor(head, dtype=torch.float32),
            "speaker": torch.tensor(int(self.source.speaker[u]), dtype=torch.int64),
            "utterance": torch.tensor(u, dtype=torch.int64),
            "start_frame": torch.tensor(start, dtype=torch.int64),
        }

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, i])

    def _draw_segment(self, rng: np.random.Generator) -> tuple[int, int]:
        k = int(rng.integers(self._segment_offsets[-1]))
        u = int(np.searchsorted(self._segment_offsets, k, side="right")) - 1
        return u, k - int(self._segment_offsets[u])

    def _audio_windows(self, u: int, start: int, rng: np.random.Generator) -> torch.Tensor:
        """float32 [T, W, N_MELS]: the segment's windows of the normalised, augmented utterance audio."""
        audio = normalize_loudness(self.source.utterance_audio(u))
        span = segment_span(len(audio), start, self.segment_frames, self.source.fps, self.past_s, self.future_s)
        lead = min(span.first_sample, round(self.augment.lead_in_s * SAMPLE_RATE))
        stretch = audio[span.first_sample - lead : span.end_sample]
        augmented = self.augment(stretch, rng, signal_power=float(np.mean(np.square(audio, dtype=np.float64))))
        windows = segment_windows(augmented[lead:], span, start, self.segment_frames, self.source.fps,
                                  self.past_s, self.future_s)
        return self.augment.mask_bands(windows, rng)


def make_loader(source: WindowSource, batch_size: int = 8, segment_frames: int = 32, augment: Augment = Augment(),
                seed: int = 0, num_workers: int = 0, past_s: float = DEFAULT_PAST_S,
                future_s: float = DEFAULT_FUTURE_S, items_per_epoch: int | None = None,
                neutral: np.ndarray | None = None) -> DataLoader:
    """Batches of WindowDataset items: audio [B, T, W, N_MELS], vertices [B, T, V, 3], template [B, V, 3],
    speaker / utterance / start_frame [B] int64.

    Items come in index order (each is already a random draw), so the batches depend only on the
    arguments, not on num_workers. The last batch is smaller when items_per_epoch is not a
    multiple of batch_size.
    """
    dataset = WindowDataset(source, segment_frames, past_s, future_s, augment, seed, items_per_epoch, neutral)
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0,
                      worker_init_fn=one_thread if num_workers > 0 else None)


def one_thread(*_) -> None:
    """A worker process's initializer: its work is one item's (or one utterance's), and torch's
    and the BLAS library's thread pools (OpenBLAS starts one thread per core) would only fight
    the other workers for the cores. On a 16-core machine 15 batch workers made 9 batches/s with
    numpy's default pool and 170 with one thread each."""
    from threadpoolctl import threadpool_limits  # a training dependency, not the extension's

    torch.set_num_threads(1)
    threadpool_limits(1)
