"""Tests for model/audio.py: the torch front end against librosa, windowing, loading, errors."""

import math
import struct
import sys
import wave
from fractions import Fraction

import numpy as np
import pytest
import torch

from model import audio
from model.audio import AudioError

LOG_FLOOR = math.log(audio.LOG_FLOOR)


def librosa_log_mel(y):
    librosa = pytest.importorskip("librosa")
    mel = librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=1024, hop_length=160, win_length=800, n_mels=80, fmax=8000, htk=True, power=2.0
    )
    return np.log(np.maximum(mel, 1e-10)).T


def chirp_plus_noise(seconds=3.0, seed=0):
    """A 100 Hz -> 7 kHz exponential chirp plus white noise, with a 0.5 s digital-silence gap."""
    n = int(seconds * audio.SAMPLE_RATE)
    t = np.arange(n) / audio.SAMPLE_RATE
    freq = 100.0 * 70.0 ** (t / seconds)
    y = np.sin(2 * np.pi * np.cumsum(freq) / audio.SAMPLE_RATE)
    y += 0.05 * np.random.default_rng(seed).standard_normal(n)
    y[n // 2 : n // 2 + audio.SAMPLE_RATE // 2] = 0.0
    return audio.normalize_loudness(y.astype(np.float32))


def tones(sr, seconds, parts):
    """Sum of amplitude * sin(2 pi f t) for (f, amplitude) in parts, sampled at sr Hz: float64."""
    t = np.arange(int(sr * seconds)) / sr
    return sum(a * np.sin(2 * np.pi * f * t) for f, a in parts)


def vowel(f0, seconds=1.0, formants=((700, 90), (1200, 110), (2600, 160))):
    """A steady vowel: a glottal pulse train at f0 Hz through two-pole resonators at (Hz, bandwidth Hz)."""
    n = int(seconds * audio.SAMPLE_RATE)
    y = np.zeros(n)
    y[(np.arange(0, seconds, 1.0 / f0) * audio.SAMPLE_RATE).astype(int)] = 1.0
    for hz, bandwidth in formants:
        r = np.exp(-np.pi * bandwidth / audio.SAMPLE_RATE)
        a1, a2 = 2 * r * np.cos(2 * np.pi * hz / audio.SAMPLE_RATE), -r * r
        out = np.zeros(n)
        for i in range(n):
            out[i] = y[i] + a1 * out[i - 1] + a2 * out[i - 2] if i >= 2 else y[i]
        y = out
    return audio.normalize_loudness(y.astype(np.float32))


# ---- log-mel ----


def test_log_mel_matches_librosa():
    y = chirp_plus_noise()
    ours = audio.log_mel(torch.from_numpy(y)).numpy()
    ref = librosa_log_mel(y)
    assert ours.shape == ref.shape == (1 + len(y) // audio.HOP_LENGTH, audio.N_MELS)
    energetic = ref > math.log(1e-6)
    assert energetic.mean() > 0.5
    assert np.abs(ours - ref)[energetic].max() < 1e-3
    # the digital-silence gap sits exactly on the floor in both
    gap = slice(len(ref) // 2 + 10, len(ref) // 2 + 40)
    np.testing.assert_array_equal(ours[gap], LOG_FLOOR)
    np.testing.assert_allclose(ours[gap], ref[gap], atol=1e-6)


def test_log_mel_matches_librosa_on_a_tone_with_odd_length():
    y = audio.normalize_loudness(tones(16000, 0.7, [(1234.5, 1.0)]).astype(np.float32)[:11111])
    ours = audio.log_mel(y).numpy()  # numpy input is accepted too
    ref = librosa_log_mel(y)
    energetic = ref > math.log(1e-6)
    assert np.abs(ours - ref)[energetic].max() < 1e-3


def test_log_mel_frame_count_and_batch():
    for n in (160, 1000, 16000, 16159):
        assert audio.log_mel(torch.zeros(n)).shape == (1 + n // 160, 80)
    batch = torch.from_numpy(np.stack([chirp_plus_noise(1.0, seed=s) for s in range(2)]))
    out = audio.log_mel(batch)
    assert out.shape == (2, 101, 80)
    torch.testing.assert_close(out[1], audio.log_mel(batch[1]), atol=1e-5, rtol=0)


def test_log_mel_frame_is_centred_on_hop_multiples():
    y = np.zeros(16000, np.float32)
    y[5000] = 1.0  # click at sample 5000 = mel frame 31.25
    energy = audio.log_mel(y)[:, :40].mean(dim=1)
    assert int(energy.argmax()) == 31


# ---- resampling ----


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_resample_matches_librosa_in_passband(sr):
    librosa = pytest.importorskip("librosa")
    x = tones(sr, 1.0, [(440, 0.5), (3000, 0.3)]).astype(np.float32)
    ours = audio.resample(x, sr, 16000)
    ref = librosa.resample(x, orig_sr=sr, target_sr=16000)
    assert ours.dtype == np.float32 and len(ours) == len(ref) == 16000
    interior = slice(200, -200)  # both filters see zero padding near the ends
    assert np.abs(ours - ref)[interior].max() < 1e-4 * 0.8
    exact = tones(16000, 1.0, [(440, 0.5), (3000, 0.3)])
    assert np.abs(ours - exact)[interior].max() < 1e-4


@pytest.mark.parametrize("sr", [44100, 48000])
def test_resample_rejects_tones_above_nyquist(sr):
    out = audio.resample(tones(sr, 1.0, [(9000, 1.0)]), sr, 16000)[500:-500]  # skip the onset clicks
    assert out.std() < 1e-4 / math.sqrt(2)  # 9 kHz would alias to 7 kHz: below -80 dB
    kept = audio.resample(tones(sr, 1.0, [(6000, 1.0)]), sr, 16000)
    assert kept[500:-500].std() == pytest.approx(1 / math.sqrt(2), rel=1e-3)


def test_resample_lengths_batch_and_identity():
    for n, sr in [(1001, 44100), (1, 48000), (999, 22050), (7, 8000)]:
        assert audio.resample(np.ones(n), sr, 16000).shape == (math.ceil(n * 16000 / sr),)
    x = np.random.default_rng(1).standard_normal((2, 4410)).astype(np.float32)
    batch = audio.resample(x, 44100, 16000)
    np.testing.assert_allclose(batch[1], audio.resample(x[1], 44100, 16000), atol=1e-6)
    same = audio.resample(x[0], 16000, 16000)
    np.testing.assert_array_equal(same, x[0])
    assert same is not x[0]


def test_resample_keeps_dc():
    out = audio.resample(np.full(44100, 0.25), 44100, 16000)
    np.testing.assert_allclose(out[100:-100], 0.25, rtol=1e-5)


# ---- frames and windows ----


def nearest_mel_frame(t, fps):
    """Reference: round-half-up of t * 100 / fps with exact rational arithmetic."""
    return math.floor(Fraction(t) * 100 / Fraction(fps).limit_denominator(10**6) + Fraction(1, 2))


def ramp_mel(n_mel, width=80):
    """mel[m, k] = m: every value names the mel frame it came from."""
    return torch.arange(n_mel, dtype=torch.float32)[:, None].expand(n_mel, width).contiguous()


@pytest.mark.parametrize("fps", [30, 24, 29.97])
def test_frame_windows_hold_the_mel_frames_around_each_video_frame(fps):
    n_samples = 2 * 16000 + 123
    n_mel = 1 + n_samples // 160
    n_frames = audio.num_frames(n_samples, fps)
    windows = audio.frame_windows(ramp_mel(n_mel), n_frames, fps)
    assert windows.shape == (n_frames, 60, 80)
    for t in range(n_frames):
        centre = nearest_mel_frame(t, fps)
        want = [m if 0 <= m < n_mel else LOG_FLOOR for m in range(centre - 50, centre + 10)]
        np.testing.assert_array_equal(windows[t, :, 7].numpy(), np.float32(want))
        if centre < n_mel:  # the first future row is the frame nearest to t / fps seconds
            assert abs(float(windows[t, 50, 0]) / 100 - t / fps) <= 0.005 + 1e-9


def test_frame_windows_pad_with_silence_at_both_ends():
    n_mel = 101
    mel = torch.randn(n_mel, 80)
    windows = audio.frame_windows(mel, audio.num_frames(16000, 25), 25)
    assert windows.shape == (25, 60, 80)
    assert torch.all(windows[0, :50] == LOG_FLOOR)
    torch.testing.assert_close(windows[0, 50:], mel[:10])
    # frame 24 is at 0.96 s -> mel 96: rows 96..100 real, 101..105 padding
    torch.testing.assert_close(windows[24, 50:55], mel[96:101])
    assert torch.all(windows[24, 55:] == LOG_FLOOR)
    # more video frames than audio: windows entirely past the end are silence
    assert torch.all(audio.frame_windows(mel, 40, 25)[39] == LOG_FLOOR)


def test_frame_windows_batch_and_custom_window():
    mel = torch.randn(2, 300, 80)
    windows = audio.frame_windows(mel, 60, 20, past_s=1.0, future_s=0.25)
    assert audio.window_size(1.0, 0.25) == 125
    assert windows.shape == (2, 60, 125, 80)
    torch.testing.assert_close(windows[1], audio.frame_windows(mel[1], 60, 20, 1.0, 0.25))
    assert audio.window_size() == 60
    with pytest.raises(ValueError):
        audio.frame_windows(mel, 60, 20, past_s=0.0, future_s=0.0)


@pytest.mark.parametrize("fps", [24, 25, 29.97, 30000 / 1001, 30, 60])
def test_no_drift_over_ten_minutes(fps):
    n_samples = 600 * 16000
    n_frames = audio.num_frames(n_samples, fps)
    assert n_frames == math.ceil(600 * Fraction(fps).limit_denominator(10**6))
    n_mel = 1 + n_samples // 160
    # a one-row window (no past, 10 ms future) is the centre mel frame itself
    centres = audio.frame_windows(ramp_mel(n_mel, 1), n_frames, fps, past_s=0.0, future_s=0.01)[:, 0, 0].numpy()
    exact = np.arange(n_frames) * 100 / fps
    assert np.abs(centres - exact).max() <= 0.5 + 1e-6
    assert centres[-1] <= n_mel - 1  # the last video frame still has audio under it
    for t in (n_frames // 3, n_frames - 1):
        assert centres[t] == nearest_mel_frame(t, fps)


def test_num_frames_and_frame_times():
    assert audio.num_frames(16000, 30) == 30  # t / 30 < 1 s for t = 0..29
    assert audio.num_frames(16001, 30) == 31
    assert audio.num_frames(0, 30) == 0
    assert audio.num_frames(16000 * 10, 29.97) == 300  # 299.7 -> 300
    times = audio.frame_times(18000, 30)
    assert times.dtype == np.float64 and times[-1] == 17999 / 30
    np.testing.assert_array_equal(audio.frame_times(3, 24), [0.0, 1 / 24, 2 / 24])
    with pytest.raises(ValueError):
        audio.num_frames(16000, 0)


def test_audio_features():
    y = chirp_plus_noise(1.0)
    windows, n_frames = audio.audio_features(y, 30)
    assert n_frames == 30 and windows.shape == (30, 60, 80)
    mel = audio.log_mel(y)
    torch.testing.assert_close(windows[10, 50], mel[33])  # 10 / 30 s -> mel frame 33


# ---- loudness and loading ----


def test_normalize_loudness():
    x = np.random.default_rng(2).standard_normal(1000).astype(np.float32) * 3
    out = audio.normalize_loudness(x)
    assert np.abs(out).mean() == pytest.approx(0.01, rel=1e-5)
    np.testing.assert_allclose(out / x, out[0] / x[0], rtol=1e-5)  # one gain for the whole clip
    assert float(audio.normalize_loudness(torch.from_numpy(x)).abs().mean()) == pytest.approx(0.01, rel=1e-5)
    with pytest.raises(AudioError, match="silent"):
        audio.normalize_loudness(np.zeros(10))


def write_wav(path, samples, sr, tag=1, bits=16):
    """Write [N, C] samples in [-1, 1] as a RIFF WAV: tag 1 PCM (8/16/24-bit) or 3 float32."""
    samples = np.asarray(samples, np.float64)
    channels = samples.shape[1]
    if tag == 3:
        body = samples.astype("<f4").tobytes()
    elif bits == 8:
        body = np.clip(np.round(samples * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    else:
        ints = np.clip(np.round(samples * 2 ** (bits - 1)), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        body = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, : bits // 8].tobytes()
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, sr, sr * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"LIST" + struct.pack("<I", 5) + b"INFOx\0"  # an odd-sized chunk to skip
    chunks += b"data" + struct.pack("<I", len(body)) + body
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return path


@pytest.fixture(params=["soundfile", "stdlib"])
def reader(request, monkeypatch):
    """Run a test once with soundfile (when installed) and once with the pure-Python WAV reader."""
    if request.param == "soundfile":
        pytest.importorskip("soundfile")
    else:
        monkeypatch.setitem(sys.modules, "soundfile", None)  # makes `import soundfile` fail
    return request.param


def assert_loaded(loaded, expected_16k, tol):
    expected = expected_16k / np.abs(expected_16k).mean() * 0.01
    assert loaded.dtype == np.float32 and loaded.shape == expected.shape
    assert np.abs(loaded).mean() == pytest.approx(0.01, rel=1e-4)
    interior = slice(300, -300)
    assert np.abs(loaded - expected)[interior].max() < tol * np.abs(expected).max()


def test_load_16bit_stereo_44k(tmp_path, reader):
    sr = 44100
    left, right = tones(sr, 1.0, [(440, 0.5)]), tones(sr, 1.0, [(1000, 0.25)])
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as f:  # the stdlib writer, independent of write_wav
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(sr)
        f.writeframes(np.round(np.stack([left, right], 1) * 32767).astype("<i2").tobytes())
    loaded = audio.load_audio(path)
    assert_loaded(loaded, tones(16000, 1.0, [(440, 0.25), (1000, 0.125)]), 1e-3)


def test_load_float32_48k(tmp_path, reader):
    path = write_wav(tmp_path / "float.wav", tones(48000, 0.5, [(300, 0.3)])[:, None], 48000, tag=3, bits=32)
    assert_loaded(audio.load_audio(str(path)), tones(16000, 0.5, [(300, 0.3)]), 1e-4)


@pytest.mark.parametrize("bits, tol", [(8, 3e-2), (24, 1e-4)])
def test_load_8_and_24_bit(tmp_path, reader, bits, tol):
    x = tones(16000, 0.5, [(200, 0.8), (2500, 0.1)])
    path = write_wav(tmp_path / f"pcm{bits}.wav", x[:, None], 16000, bits=bits)
    assert_loaded(audio.load_audio(path), x, tol)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        audio.load_audio(tmp_path / "nope.wav")
    assert issubclass(AudioError, ValueError)


def test_empty_files(tmp_path, reader):
    path = write_wav(tmp_path / "empty.wav", np.zeros((0, 1)), 16000)
    with pytest.raises(AudioError, match="contains no audio samples"):
        audio.load_audio(path)
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="is empty"):
        audio.load_audio(tmp_path / "zero.wav")


def test_silent_file(tmp_path, reader):
    path = write_wav(tmp_path / "silent.wav", np.full((16000, 2), 2e-5), 16000)
    with pytest.raises(AudioError, match="the audio is silent"):
        audio.load_audio(path)


def test_corrupt_file(tmp_path, reader):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match="Could not read"):
        audio.load_audio(path)


def test_stdlib_reader_rejects_unsupported_encoding(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)
    path = write_wav(tmp_path / "alaw.wav", np.zeros((100, 1)), 8000, tag=6, bits=8)
    with pytest.raises(AudioError, match="unsupported WAV encoding"):
        audio.load_audio(path)


@pytest.mark.parametrize("fps", [30, 29.97, 24])
def test_frame_windows_from_a_first_frame_equal_the_slice(fps):
    mel = torch.randn(900, audio.N_MELS)
    full = audio.frame_windows(mel, 250, fps)
    part = audio.frame_windows(mel, 70, fps, first_frame=180)
    assert torch.equal(part, full[180:250])


# ---- band smoothing ----


def test_band_smoothing_averages_neighbouring_bands_and_keeps_wide_ones():
    weights = audio.band_smoothing(400.0)
    assert weights.shape == (80, 80) and (weights >= 0).all()
    assert torch.allclose(weights.sum(1), torch.ones(80))
    assert (weights[:10] > 0).sum(1).min() >= 5  # the narrow low bands mix with their neighbours
    assert torch.equal(weights[-8:], torch.eye(80)[-8:])  # the top bands, over 200 Hz apart, keep themselves
    frames = torch.randn(3, 80) - 5
    flat = torch.full((3, 80), -4.0)
    assert torch.allclose(audio.smooth_bands(flat, weights), flat)  # a flat spectrum stays
    assert torch.allclose(audio.smooth_bands(frames, weights)[:, -8:], frames[:, -8:], atol=1e-5)
    with pytest.raises(ValueError, match="width_hz must be positive"):
        audio.band_smoothing(0.0)


def test_band_smoothing_keeps_the_vowel_and_drops_its_pitch():
    """One vowel at a low and a high voice's pitch: as log-mel their harmonic combs differ by 1.6
    nats a band; smoothed over 400 Hz by under half that, while another vowel stays as far."""
    def spectrum(y, width_hz=None):
        mel = audio.log_mel(y)[20:-20]  # steady frames
        return (mel if width_hz is None else audio.smooth_bands(mel, audio.band_smoothing(width_hz))).mean(0)

    def distance(a, b):
        return float((a - b).abs().mean())

    low, high = vowel(110), vowel(220)
    other = vowel(110, formants=((300, 60), (2300, 120), (3000, 200)))  # /i/ against /a/
    raw_pitch, smooth_pitch = distance(spectrum(low), spectrum(high)), distance(spectrum(low, 400), spectrum(high, 400))
    assert smooth_pitch < raw_pitch / 3
    assert distance(spectrum(low, 400), spectrum(other, 400)) > 0.9 * distance(spectrum(low), spectrum(other))
