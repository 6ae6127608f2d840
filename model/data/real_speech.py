"""Real human speech with forced phone alignments, for scoring lip sync where no meshes exist.

    python -m model.data.real_speech --out data/real_speech

Source: five LibriVox recordings (public domain; *Sense and Sensibility*, chapter 1, 28 s in
all, 16 kHz mono) with word and phone alignments made by CMU PocketSphinx's forced aligner. They
ship as test data inside the PocketSphinx 5.1.1 source package on PyPI, which is fetched once
from the package registry and checked against its pinned SHA-256. Writes `OUT/<name>.wav`,
`OUT/<name>.txt` (transcript) and `OUT/<name>.phone.json` (the aligner's output).
"""

import argparse
import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from ..audio import load_audio

SOURCE_URL = ("https://files.pythonhosted.org/packages/61/e7/13e0e787ff467218de880310d79cba14424f13b87171ac44af0bde1e428c/"
              "pocketsphinx-5.1.1.tar.gz")
SOURCE_SHA256 = "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355"
MEMBER_PREFIX = "pocketsphinx-5.1.1/test/data/librivox/"
SUFFIXES = (".wav", ".txt", ".phone.json")
SILENCE = "SIL"


def download_package(url: str, sha256: str) -> bytes:
    """The bytes at `url` (a source package on the registry), checked against their pinned SHA-256."""
    try:
        with urllib.request.urlopen(url, timeout=300) as response:
            payload = response.read()
    except OSError as error:
        raise SystemExit(f"could not fetch {url} ({error}): this needs the package registry "
                         "(files.pythonhosted.org)") from error
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{url} has SHA-256 {digest}, expected {sha256}")
    return payload


def fetch(out: Path) -> list[Path]:
    """Download the source package, verify it, and extract the aligned clips into `out`."""
    payload = download_package(SOURCE_URL, SOURCE_SHA256)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = member.name[len(MEMBER_PREFIX):]
            if member.name.startswith(MEMBER_PREFIX) and "/" not in name and name.endswith(SUFFIXES):
                (out / name).write_bytes(archive.extractfile(member).read())
                written.append(out / name)
    return sorted(written)


def phones(alignment: dict) -> list[tuple[str, float, float]]:
    """(ARPAbet symbol, start s, end s) for every aligned phone, pauses as SIL, in time order."""
    result = []
    for word in alignment["w"]:
        for phone in word.get("w", []):
            start = float(phone["b"])
            result.append((phone["t"].upper(), start, start + float(phone["d"])))
    return result


def load_real_speech(folder: Path) -> list[tuple[str, np.ndarray, list[tuple[str, float, float]]]]:
    """[(clip name, 16 kHz mono loudness-normalised samples [N], phones)] for every clip in `folder`."""
    clips = []
    for alignment_path in sorted(folder.glob("*.phone.json")):
        name = alignment_path.name[: -len(".phone.json")]
        alignment = json.loads(alignment_path.read_text())
        clips.append((name, load_audio(folder / f"{name}.wav"), phones(alignment)))
    if not clips:
        raise SystemExit(f"no aligned clips (*.phone.json beside *.wav) in {folder}: make the evaluation clips with "
                         f"python -m model.data.real_speech --out {folder}, or recordings to train on with "
                         f"python -m model.data.recordings --out {folder}")
    return clips


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch real speech with forced phone alignments.")
    parser.add_argument("--out", type=Path, default=Path("data/real_speech"))
    args = parser.parse_args(argv)
    for path in fetch(args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
