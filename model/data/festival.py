"""Speech from other synthesizers, with exact phone timing: the Festival speech system's voices.

The model is trained on eSpeak NG's formant-synthesised voices only. Festival's diphone voices
(kal, ked: units cut from recorded human speech) and its HTS voice (slt: a statistical
parametric female voice) sound different, and Festival reports where every phone ends, so lip
sync can be scored on them with exact timing and many more events than the real clips hold
(`python -m model.evaluate --festival kal,slt`). The corpus generator also speaks some training
speakers with the diphone voices (TRAINING_VOICES; model/data/synth.py --festival-share), so the
model hears speech cut from human recordings, while slt stays held out. Festival comes from
Debian's packages:

    apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
"""

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import load_audio
from .speech import SILENCE, VOWELS, Phone

VOICES = {"kal": "voice_kal_diphone", "ked": "voice_ked_diphone", "slt": "voice_cmu_us_slt_arctic_hts"}
TRAINING_VOICES = ("kal", "ked")  # diphone voices, whose prosody Prosody sets; slt is held out
TIMEOUT_S = 120
# Festival's radio phone set is ARPAbet plus the reduced vowel "ax", which CMUdict writes AH0.
_PHONE_NAMES = {"pau": SILENCE, "ax": "AH"}


@dataclass(frozen=True)
class Prosody:
    """A diphone voice's prosody: its timing and the linear-regression intonation's F0 targets."""

    stretch: float  # duration multiplier; 1 = Festival's phone durations, larger is slower
    f0_mean: float  # Hz
    f0_std: float  # Hz


class FestivalError(RuntimeError):
    """Festival is missing, or a voice is, or it failed; the message says what to do."""


def parse_segments(output: str) -> list[Phone]:
    """Contiguous phones from lines "<phone> <end s> <syllable stress>" in order, as the Scheme in
    `synthesize` prints them. Symbols are upper-cased ARPAbet (Festival's radio phone set is
    ARPAbet in lower case; "ax" becomes AH); its pause "pau" becomes SILENCE. A vowel is stressed
    when its syllable is; word indices are not kept (-1)."""
    phones, start = [], 0.0
    for line in output.splitlines():
        fields = line.split()
        if len(fields) != 3 or not fields[1].replace(".", "", 1).isdigit():
            continue  # anything else Festival prints
        name, end = fields[0], float(fields[1])
        symbol = _PHONE_NAMES.get(name, name.upper())
        phones.append(Phone(symbol, start, end, symbol in VOWELS and fields[2] == "1", -1))
        start = end
    return phones


def synthesize(text: str, voice: str, prosody: Prosody | None = None) -> tuple[np.ndarray, list[Phone]]:
    """(16 kHz mono loudness-normalised samples [N], phones) of `text` spoken by VOICES[voice],
    with the voice's own prosody or `prosody` (diphone voices only)."""
    if voice not in VOICES:
        raise FestivalError(f"unknown Festival voice {voice!r}; choose from {', '.join(VOICES)}")
    if prosody is not None and voice not in TRAINING_VOICES:
        raise FestivalError(f"prosody can be set for the diphone voices {', '.join(TRAINING_VOICES)} only")
    if shutil.which("festival") is None:
        raise FestivalError("festival is not installed: apt-get install festival festvox-kallpc16k "
                            "festvox-kdlpc16k festvox-us-slt-hts")
    quoted = text.replace("\\", " ").replace('"', " ")
    setup = "" if prosody is None else (
        f"(Parameter.set 'Duration_Stretch {prosody.stretch:.4f})\n"
        f"(set! int_lr_params '((target_f0_mean {prosody.f0_mean:.2f}) (target_f0_std {prosody.f0_std:.2f}) "
        "(model_f0_mean 170) (model_f0_std 34)))\n")
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "speech.wav"
        script = (f'({VOICES[voice]})\n{setup}(set! utt (SynthText "{quoted}"))\n'
                  f'(utt.save.wave utt "{wav}" \'riff)\n'
                  '(mapcar (lambda (s) (format t "%s %f %s\\n" (item.name s) (item.feat s "end")\n'
                  '                            (item.feat s "R:SylStructure.parent.stress")))\n'
                  "        (utt.relation.items utt 'Segment))\n")
        result = subprocess.run(["festival", "-b", "/dev/stdin"], input=script, capture_output=True, text=True,
                                timeout=TIMEOUT_S)
        if result.returncode != 0 or not wav.is_file():
            raise FestivalError(f"festival could not speak with {VOICES[voice]} (is its voice package installed?): "
                                f"{result.stderr.strip()[-300:]}")
        return load_audio(wav), parse_segments(result.stdout)
