"""Write the bundled sample speech: `python tools/make_sample_speech.py` ->
meshtalk_blender/assets/sample_speech.wav (16 kHz mono 16-bit, about 7 s, shipped in the extension).

Synthesised with eSpeak NG (model.data.speech); the same text and voice give byte-identical audio,
so running this again reproduces the committed file exactly. The sentence has lip closures
(p, b, m), open vowels (father, barn, palm) and pauses between phrases.
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.audio import write_wav  # noqa: E402
from model.data.speech import SAMPLE_RATE, Voice, synthesize  # noqa: E402

TEXT = "Bob bought a map of Memphis. Open the big barn, Pam! Father made a warm apple pie, by the palm tree."
VOICE = Voice(accent="en-us", variant="m3", rate=160, pitch=50, pitch_range=60)
PEAK = 0.9  # full scale
OUT = ROOT / "meshtalk_blender" / "assets" / "sample_speech.wav"


def write_sample_speech(path: Path = OUT) -> Path:
    audio = synthesize(TEXT, VOICE).audio
    write_wav(path, audio * (PEAK / np.abs(audio).max()), SAMPLE_RATE)
    return path


def main() -> None:
    path = write_sample_speech()
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
