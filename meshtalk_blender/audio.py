"""Read speech inside Blender with its own `aud` module: any file Blender plays, as 16 kHz mono.

(There is no librosa or soundfile inside Blender; `model.audio.load_audio` reads only WAV there,
which is the fallback for Blender builds without audaspace, such as PyPI's bpy 4.2.)"""

import os

import numpy as np

from .model.audio import SAMPLE_RATE, SILENCE_PEAK, AudioError, load_audio

try:
    import aud
except ImportError:
    aud = None

RESAMPLE_QUALITY = 3  # aud's resampler: 0 fastest .. 3 best


def read_audio(path: str) -> np.ndarray:
    """Samples float32 [N] at SAMPLE_RATE Hz, channels mixed to mono (loudness-normalised only
    without aud).

    Raises AudioError (the message says what to do) for a missing, empty, unreadable or silent file."""
    if not os.path.isfile(path):
        raise AudioError(f"Audio file not found: {path}; check the path.")
    if os.path.getsize(path) == 0:
        raise AudioError(f"Audio file {path} is empty (0 bytes); choose a file that contains speech.")
    if aud is None:
        return load_audio(path)
    sound = aud.Sound(path)
    try:
        sound.specs  # opens the file; aud reports an unreadable file here (Sound.data() would abort Blender)
    except aud.error as error:
        raise AudioError(f"Could not read {path} as audio ({error}); convert it to WAV, FLAC or MP3.") from error
    samples = sound.resample(SAMPLE_RATE, RESAMPLE_QUALITY).rechannel(1).data()
    if samples.size == 0:
        raise AudioError(f"Audio file {path} contains no audio samples; choose a file that contains speech.")
    mono = np.ascontiguousarray(samples[:, 0], dtype=np.float32)
    if np.abs(mono).max() < SILENCE_PEAK:
        raise AudioError(f"In {path} the audio is silent (peak below -80 dBFS); choose a recording with speech.")
    return mono
