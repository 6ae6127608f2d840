"""Audio front end: load speech, resample to 16 kHz, log-mel features, per-frame windows.

Runtime path: torch, numpy and the standard library only (this module runs inside Blender,
where librosa does not exist). `soundfile` is used for reading when it is installed; without it,
WAV files are parsed here. Features match librosa's log-mel (see tests/test_audio.py).
"""

import math
import os
import struct
from fractions import Fraction
from functools import lru_cache
from typing import Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000
N_MELS = 80
HOP_LENGTH = 160
MEL_FPS = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second: 10 ms hop
WIN_LENGTH = 800
N_FFT = 1024
F_MAX = 8000.0
LOG_FLOOR = 1e-10
TARGET_MEAN_ABS = 0.01  # loudness normalisation: whole clip scaled to mean |x| = 0.01
DEFAULT_PAST_S = 0.5
DEFAULT_FUTURE_S = 0.1

SILENCE_PEAK = 1e-4  # -80 dBFS

# Resampling filter: Kaiser-windowed sinc, cutoff at ROLLOFF x the lower Nyquist frequency,
# RESAMPLE_ZERO_CROSSINGS sinc zero crossings per side. Measured from 44.1 kHz to 16 kHz:
# -0.02 dB at 7 kHz, -80 dB from 8.2 kHz.
RESAMPLE_ROLLOFF = 0.945
RESAMPLE_ZERO_CROSSINGS = 32
RESAMPLE_KAISER_BETA = 8.6
_RESAMPLE_MIN_PHASES = 64  # outputs computed per matrix row, so short ratios still use wide matmuls
_RESAMPLE_ROWS_PER_CHUNK = 16384  # bounds the memory of one matmul's input copy

_MAX_FPS_DENOMINATOR = 1_000_000  # fps 29.97 -> 2997/100, 30000/1001 stays exact

_WAV_PCM, _WAV_FLOAT, _WAV_EXTENSIBLE = 1, 3, 0xFFFE


class AudioError(ValueError):
    """A user-facing problem with an audio input; the message says what is wrong and what to do."""


def load_audio(path: Union[str, os.PathLike]) -> np.ndarray:
    """Read an audio file as 16 kHz mono, loudness-normalised to mean |x| = TARGET_MEAN_ABS.

    Any format `soundfile` reads (WAV, FLAC, OGG, MP3, ...) when it is installed; otherwise
    PCM WAV (8/16/24/32-bit integer, 32/64-bit float). Channels are averaged.

    Returns float32 [N] samples at SAMPLE_RATE. Raises AudioError for a missing, unreadable,
    empty or silent file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"Audio file not found: {path}; check the path.")
    if os.path.getsize(path) == 0:
        raise AudioError(f"Audio file {path} is empty (0 bytes); choose a file that contains speech.")
    samples, sr = _read(path)
    if samples.size == 0:
        raise AudioError(f"Audio file {path} contains no audio samples; choose a file that contains speech.")
    mono = samples.mean(axis=1)
    if np.abs(mono).max() < SILENCE_PEAK:
        raise AudioError(f"In {path} the audio is silent (peak below -80 dBFS); choose a recording with speech.")
    return normalize_loudness(resample(mono, sr, SAMPLE_RATE))


def write_wav(path: Union[str, os.PathLike], audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono float samples [N] in [-1, 1] as a 16-bit PCM WAV (clipped to full scale)."""
    import wave

    pcm = np.round(np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(os.fspath(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def _read(path: str) -> Tuple[np.ndarray, int]:
    """Decode a file to float32 [N, channels] samples and its sample rate in Hz."""
    try:
        import soundfile
    except (ImportError, OSError):  # not installed (Blender), or libsndfile missing
        return _read_wav(path)
    try:
        samples, sr = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, TypeError, ValueError) as e:  # soundfile.LibsndfileError is a RuntimeError
        raise AudioError(f"Could not read {path} as audio ({e}); convert it to WAV or FLAC.") from e
    return samples, sr


def _read_wav(path: str) -> Tuple[np.ndarray, int]:
    """Parse a RIFF WAV file (PCM or IEEE float) into float32 [N, channels] and its rate in Hz.

    Parsed by hand rather than with the `wave` module, which refuses float and extensible WAVs.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError(
            f"Could not read {path}: without the soundfile package only WAV files can be read; "
            "convert it to 16-bit PCM WAV."
        )
    chunks = {}
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        chunks.setdefault(chunk_id, data[pos + 8 : pos + 8 + size])
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    fmt, body = chunks.get(b"fmt "), chunks.get(b"data")
    if fmt is None or body is None or len(fmt) < 16:
        raise AudioError(f"Could not read {path}: the WAV file is damaged (no fmt or data chunk); re-export it.")
    tag, channels, sr, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _WAV_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # first two bytes of the sub-format GUID
    width = block_align // channels if channels else 0  # bytes per sample
    body = body[: len(body) - len(body) % block_align] if block_align else b""  # whole frames only
    decoded = _decode_wav_samples(body, tag, width)
    if decoded is None or sr == 0:
        raise AudioError(
            f"Could not read {path}: unsupported WAV encoding (format {tag}, {bits}-bit, {channels} channels); "
            "convert it to 16-bit PCM WAV."
        )
    return decoded.reshape(-1, channels), sr


def _decode_wav_samples(body: bytes, tag: int, width: int):
    """Interleaved WAV sample bytes -> float32 in [-1, 1], or None for an unsupported encoding."""
    if tag == _WAV_FLOAT and width in (4, 8):
        return np.frombuffer(body, f"<f{width}").astype(np.float32)
    if tag != _WAV_PCM:
        return None
    if width == 1:  # 8-bit WAV is unsigned
        return (np.frombuffer(body, np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 3:  # shift each 24-bit sample into the top of an int32
        padded = np.zeros((len(body) // 3, 4), np.uint8)
        padded[:, 1:] = np.frombuffer(body, np.uint8).reshape(-1, 3)
        return padded.view("<i4")[:, 0].astype(np.float32) / 2.0**31
    if width in (2, 4):
        return np.frombuffer(body, f"<i{width}").astype(np.float32) / 2.0 ** (8 * width - 1)
    return None


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of float [..., N] samples from orig_sr to target_sr Hz.

    Windowed-sinc polyphase filter, exact for the rational ratio target_sr / orig_sr. Output
    sample n lies at time n / target_sr, like input sample k at k / orig_sr; the output has
    ceil(N * target_sr / orig_sr) samples. Returns float32 [..., ceil(N * target_sr / orig_sr)].
    """
    x = np.asarray(x, dtype=np.float32)
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return x.copy()
    up, down, pad, plan = _resample_plan(orig_sr, target_sr)
    n_in = x.shape[-1]
    n_out = -(-n_in * target_sr // orig_sr)
    rows = -(-n_out // up)  # output [rows, up]: row j starts at input sample j * down
    signal = torch.from_numpy(x.reshape(-1, n_in))
    signal = F.pad(signal, (pad, rows * down + pad - n_in))  # padded[i] = x[i - pad]
    out = torch.empty(signal.shape[0], rows, up)
    for first, start, kernel in plan:
        frames = signal[:, start:].unfold(-1, kernel.shape[0], down)[:, :rows]  # [B, rows, n_taps] view
        for r in range(0, rows, _RESAMPLE_ROWS_PER_CHUNK):
            chunk = slice(r, r + _RESAMPLE_ROWS_PER_CHUNK)
            out[:, chunk, first : first + kernel.shape[1]] = frames[:, chunk] @ kernel
    return out.reshape(*x.shape[:-1], rows * up)[..., :n_out].numpy()


@lru_cache(maxsize=16)
def _resample_plan(orig_sr: int, target_sr: int):
    """(up, down, pad, [(first phase, first input tap, kernel [n_taps, phases])]) for a rate pair;
    cached because building the filters costs as much as resampling a short clip."""
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g  # `up` outputs every `down` inputs
    periods = -(-_RESAMPLE_MIN_PHASES // up)
    up, down = up * periods, down * periods
    cutoff = 0.5 * min(1.0, target_sr / orig_sr) * RESAMPLE_ROLLOFF  # cycles per input sample
    half_width = RESAMPLE_ZERO_CROSSINGS / (2.0 * cutoff)  # filter half-length, input samples
    pad = math.ceil(half_width)
    # Phases whose taps span about one filter length share a matmul; more would multiply zeros.
    group = max(1, int(2 * pad * up / down))
    plan = []
    for first in range(0, up, group):
        phases = torch.arange(first, min(first + group, up), dtype=torch.float64)
        start = first * down // up
        n_taps = int(phases[-1]) * down // up - start + 2 * pad + 1
        # distance in input samples from each phase's output time to each tap
        taps = start - pad + torch.arange(n_taps, dtype=torch.float64)
        kernel = _windowed_sinc(phases[:, None] * down / up - taps, cutoff, half_width)
        plan.append((first, start, kernel.T.float().contiguous()))
    return up, down, pad, plan


def _windowed_sinc(t: torch.Tensor, cutoff: float, half_width: float) -> torch.Tensor:
    """Kaiser-windowed low-pass at `cutoff` cycles/sample, sampled at offsets t; rows sum to 1."""
    window = torch.special.i0(RESAMPLE_KAISER_BETA * torch.sqrt((1 - (t / half_width) ** 2).clamp(min=0)))
    h = torch.where(t.abs() <= half_width, torch.sinc(2 * cutoff * t) * window, 0.0)
    return h / h.sum(dim=-1, keepdim=True)  # unit DC gain for every phase


def normalize_loudness(x):
    """Scale samples (np.ndarray or torch.Tensor, any shape) to mean |x| = TARGET_MEAN_ABS."""
    mean_abs = abs(x).mean()
    if mean_abs == 0:
        raise AudioError("the audio is silent; choose a recording with speech.")
    return x * (TARGET_MEAN_ABS / mean_abs)


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + hz / 700.0)  # HTK formula


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def _mel_edges_hz() -> np.ndarray:
    """N_MELS + 2 mel-spaced frequencies from 0 Hz to F_MAX: band m spans edges m .. m + 2, centred on m + 1."""
    return _mel_to_hz(np.linspace(0.0, _hz_to_mel(F_MAX), N_MELS + 2))


@lru_cache(maxsize=None)
def mel_filters(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """HTK mel filterbank [N_MELS, N_FFT // 2 + 1] from 0 Hz to F_MAX, Slaney-normalised.

    Triangles between mel-spaced edges, each scaled to unit area in Hz (librosa's norm='slaney').
    """
    fft_hz = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    edges = _mel_edges_hz()
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz - lower) / (centre - lower)
    falling = (upper - fft_hz) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))
    return torch.from_numpy(weights.astype(np.float32)).to(device=device, dtype=dtype)


def log_mel(audio: Union[torch.Tensor, np.ndarray]) -> torch.Tensor:
    """Natural-log mel power spectrogram of 16 kHz samples [N] or [B, N].

    Returns [M, N_MELS] or [B, M, N_MELS] with M = 1 + N // HOP_LENGTH; frame m is centred on
    sample m * HOP_LENGTH (time m / MEL_FPS s), the signal zero-padded at both ends.
    """
    audio = torch.as_tensor(audio)
    if not audio.is_floating_point() or audio.dtype in (torch.float16, torch.bfloat16):
        audio = audio.float()
    window = torch.hann_window(WIN_LENGTH, device=audio.device, dtype=audio.dtype)
    stft = torch.stft(
        audio, N_FFT, HOP_LENGTH, WIN_LENGTH, window, center=True, pad_mode="constant", return_complex=True
    )
    power = stft.abs() ** 2  # [..., N_FFT // 2 + 1, M]
    mel = mel_filters(audio.device, audio.dtype) @ power
    return torch.log(mel.clamp(min=LOG_FLOOR)).transpose(-1, -2)


@lru_cache(maxsize=None)
def band_smoothing(width_hz: float) -> torch.Tensor:
    """[N_MELS, N_MELS] weights W that average mel-band power over the bands within width_hz:
    smoothed log-mel = log(exp(log-mel) @ W.T).

    An 800-sample window resolves a voice's pitch harmonics, 100-300 Hz apart, in the bands below
    about 1.5 kHz (22-70 Hz apart), so there the log-mel shows the harmonics' comb and its depth
    changes with the pitch. Averaging power over width_hz (a Hann window of that full width,
    centred on each band, weighted by the bands' spacing) fills the comb in and leaves the
    spectral envelope, which carries the articulation; bands wider than width_hz / 2 keep
    themselves alone. Rows sum to 1.
    """
    if not width_hz > 0:
        raise ValueError(f"width_hz must be positive, got {width_hz}")
    centres = _mel_edges_hz()[1:-1]
    offset = (centres[None, :] - centres[:, None]) / (width_hz / 2)  # [to, from], -1..1 within the window
    weights = np.where(np.abs(offset) < 1, np.cos(np.pi * offset / 2) ** 2, 0.0) * np.gradient(centres)[None, :]
    return torch.from_numpy((weights / weights.sum(1, keepdims=True)).astype(np.float32))


def smooth_bands(log_mel_frames: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Log-mel frames [..., N_MELS] with each band's power averaged by `band_smoothing` weights."""
    return torch.log((torch.exp(log_mel_frames) @ weights.T).clamp(min=LOG_FLOOR))


def _rational(fps: float) -> Fraction:
    """fps as an exact fraction: the closest one with a denominator up to 10^6."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return Fraction(fps).limit_denominator(_MAX_FPS_DENOMINATOR)


def num_frames(n_samples: int, fps: float) -> int:
    """Number of video frames covering n_samples at SAMPLE_RATE: every t with t / fps < duration.

    That is ceil(n_samples / SAMPLE_RATE * fps), computed exactly: 1 s at 30 fps gives 30 frames
    (t = 0 .. 29), one more sample gives 31.
    """
    return math.ceil(Fraction(n_samples, SAMPLE_RATE) * _rational(fps))


def frame_times(n_frames: int, fps: float) -> np.ndarray:
    """Times in seconds of video frames 0 .. n_frames - 1: float64 [n_frames], t / fps."""
    return np.arange(n_frames, dtype=np.float64) / fps


def _mel_frames(seconds: float) -> int:
    """Nearest whole number of mel frames in `seconds` (ties round up)."""
    return math.floor(seconds * MEL_FPS + 0.5)


def window_size(past_s: float = DEFAULT_PAST_S, future_s: float = DEFAULT_FUTURE_S) -> int:
    """Mel frames W in each per-frame window: past_s before the frame plus future_s from it."""
    return _mel_frames(past_s) + _mel_frames(future_s)


def _mel_centres(n_frames: int, fps: float, first_frame: int = 0) -> torch.Tensor:
    """Index of the mel frame nearest to each video frame's time t / fps, for t = first_frame ..
    first_frame + n_frames - 1: int64 [n_frames]."""
    rate = _rational(fps)
    t = torch.arange(first_frame, first_frame + n_frames, dtype=torch.int64)
    # floor(t * MEL_FPS / fps + 1/2) in integers, so long clips do not drift
    return (2 * t * MEL_FPS * rate.denominator + rate.numerator) // (2 * rate.numerator)


def frame_windows(
    mel: torch.Tensor,
    n_frames: int,
    fps: float,
    past_s: float = DEFAULT_PAST_S,
    future_s: float = DEFAULT_FUTURE_S,
    first_frame: int = 0,
) -> torch.Tensor:
    """Cut one window of mel frames per video frame, for frames first_frame .. first_frame + n_frames - 1.

    mel: [M, N_MELS] or [B, M, N_MELS] from log_mel. For video frame t (time t / fps) with
    nearest mel frame c, the window holds mel frames c - round(past_s * MEL_FPS) ..
    c + round(future_s * MEL_FPS) - 1; frames outside the clip read as silence, log(LOG_FLOOR).
    Returns [n_frames, W, N_MELS] or [B, n_frames, W, N_MELS], W = window_size(past_s, future_s).
    """
    past, future = _mel_frames(past_s), _mel_frames(future_s)
    if past < 0 or future < 0 or past + future == 0:
        raise ValueError(f"window must be non-empty and non-negative, got past_s={past_s}, future_s={future_s}")
    centres = _mel_centres(n_frames, fps, first_frame).to(mel.device)
    beyond_end = int(centres[-1]) + future - mel.shape[-2] if n_frames else 0
    padded = F.pad(mel, (0, 0, past, max(0, beyond_end)), value=math.log(LOG_FLOOR))
    index = centres[:, None] + torch.arange(future + past, device=mel.device)  # padded rows [T, W]
    return padded[..., index, :]


def audio_features(
    audio: Union[str, os.PathLike, np.ndarray, torch.Tensor],
    fps: float,
    past_s: float = DEFAULT_PAST_S,
    future_s: float = DEFAULT_FUTURE_S,
) -> Tuple[torch.Tensor, int]:
    """Model input for a clip: a path, or 16 kHz mono loudness-normalised samples [N].

    Returns (windows [T, W, N_MELS], T) with T = num_frames(N, fps) video frames at fps.
    """
    if isinstance(audio, (str, os.PathLike)):
        audio = load_audio(audio)
    audio = torch.as_tensor(audio, dtype=torch.float32)
    n_frames = num_frames(audio.shape[-1], fps)
    return frame_windows(log_mel(audio), n_frames, fps, past_s, future_s), n_frames
