"""Speech from other synthesizers, with exact phone timing: the Festival speech system's voices.

The model is trained on eSpeak NG's formant-synthesised voices only. Festival's diphone voices
(kal, ked: units cut from recorded human speech) and its HTS voice (slt: a statistical
parametric female voice) sound different, and Festival reports where every phone ends, so lip
sync can be scored on them with exact timing and many more events than the real clips hold
(`python -m model.evaluate --festival kal,slt`). Festival comes from Debian's packages:

    apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..audio import load_audio
from .real_speech import SILENCE

VOICES = {"kal": "voice_kal_diphone", "ked": "voice_ked_diphone", "slt": "voice_cmu_us_slt_arctic_hts"}
TIMEOUT_S = 120


class FestivalError(RuntimeError):
    """Festival is missing, or a voice is, or it failed; the message says what to do."""


def parse_segments(output: str) -> list[tuple[str, float, float]]:
    """Phones [(symbol, start s, end s)] from lines "<phone> <end s>" in order, as the Scheme in
    `synthesize` prints them. Symbols are upper-cased ARPAbet (Festival's radio phone set is
    ARPAbet in lower case); its pause "pau" becomes SILENCE."""
    phones, start = [], 0.0
    for line in output.splitlines():
        fields = line.split()
        if len(fields) != 2:
            continue
        name, end = fields[0], float(fields[1])
        phones.append((SILENCE if name == "pau" else name.upper(), start, end))
        start = end
    return phones


def synthesize(text: str, voice: str) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """(16 kHz mono loudness-normalised samples [N], phones) of `text` spoken by VOICES[voice]."""
    if voice not in VOICES:
        raise FestivalError(f"unknown Festival voice {voice!r}; choose from {', '.join(VOICES)}")
    if shutil.which("festival") is None:
        raise FestivalError("festival is not installed: apt-get install festival festvox-kallpc16k "
                            "festvox-kdlpc16k festvox-us-slt-hts")
    quoted = text.replace("\\", " ").replace('"', " ")
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "speech.wav"
        script = (f'({VOICES[voice]})\n(set! utt (SynthText "{quoted}"))\n(utt.save.wave utt "{wav}" \'riff)\n'
                  '(mapcar (lambda (s) (format t "%s %f\\n" (item.name s) (item.feat s "end")))\n'
                  "        (utt.relation.items utt 'Segment))\n")
        result = subprocess.run(["festival", "-b", "/dev/stdin"], input=script, capture_output=True, text=True,
                                timeout=TIMEOUT_S)
        if result.returncode != 0 or not wav.is_file():
            raise FestivalError(f"festival could not speak with {VOICES[voice]} (is its voice package installed?): "
                                f"{result.stderr.strip()[-300:]}")
        return load_audio(wav), parse_segments(result.stdout)
