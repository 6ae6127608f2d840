"""Real 4D face captures: the folder format training reads them from, its reader and a writer.

Training runs on the synthetic corpus by default (`model.data.corpus`); a user with captured
data (meshes registered to the template head, with the speech recorded alongside) puts it in a
folder laid out like this and trains on it instead:

    CAPTURES/
      speakers/<speaker>.npy     float32 [V, 3]     the speaker's neutral (rest) head
      <sequence>/audio.wav       16 kHz mono PCM    the speech
      <sequence>/vertices.npy    float32 [T, V, 3]  the face at each frame
      <sequence>/info.json       {"speaker": "<speaker>", "fps": 30}

- Meshes are in metres on Blender's axes (Z up, the face looking toward -Y) and in the template
  head's topology: V vertices in the order of `weights/template.npz` (2659 for the shipped head).
  Data in another topology (for example MeshTalk's 6172-vertex face, in millimetres, +Y up) must
  be retargeted (registered) onto the template first; the reader refuses other vertex counts and
  heads whose size is not plausible in metres.
- Frame t of a sequence shows the face at t / fps seconds after the first audio sample. T must
  match the audio's length to within one frame: T = ceil(duration * fps), plus or minus one.
- All sequences share one fps (give it in each info.json).
- audio.wav may also be another sample rate, stereo, 24-bit or float: `model.audio.load_audio`
  resamples it to 16 kHz mono on every read, so store 16 kHz mono to train fast.
- `.npy` files are plain arrays (loaded with allow_pickle=False). vertices.npy is memory-mapped,
  so sequences larger than memory are fine; only the frames a training window needs are read.
- Folders other than `speakers/` are sequences; names starting with "." are ignored.

`load_captures(root, template)` checks a folder and returns a `CaptureSet`, which reads like a
`Corpus` (so `model.data.loader.WindowDataset` trains on either); `write_capture` writes one
sequence, for converters and tests.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, load_audio, num_frames, write_wav
from ..template import Template

SPEAKERS_DIR = "speakers"
AUDIO_FILE = "audio.wav"
VERTICES_FILE = "vertices.npy"
INFO_FILE = "info.json"
SEQUENCE_FILES = (AUDIO_FILE, VERTICES_FILE, INFO_FILE)
HEAD_SIZE_RANGE_M = (0.05, 1.0)  # largest bounding-box side of a head in metres
FORMAT_HELP = "see the capture folder format in model/data/captures.py"
INFO_EXAMPLE = '{"speaker": "<speaker>", "fps": 30}'


@dataclass(frozen=True)
class CaptureSet:
    """A checked capture folder: U sequences of S speakers, read with the `Corpus` interface."""

    template: Template
    root: Path
    sequence_names: tuple[str, ...]  # [U] folder names
    speaker: np.ndarray  # int64 [U]: row of speaker_templates
    speaker_names: tuple[str, ...]  # [S]
    speaker_templates: np.ndarray  # float32 [S, V, 3] neutral heads, metres
    frame_counts: np.ndarray  # int64 [U]: T of each sequence
    fps: float
    sample_rate: int = SAMPLE_RATE

    def __len__(self) -> int:
        return len(self.sequence_names)

    def num_frames(self, u: int) -> int:
        return int(self.frame_counts[u])

    def utterance_audio(self, u: int) -> np.ndarray:
        """float32 [N] at 16 kHz, loudness-normalised by `load_audio` (mean |x| = 0.01)."""
        return load_audio(self._sequence_dir(u) / AUDIO_FILE)

    def utterance_template(self, u: int) -> np.ndarray:
        """float32 [V, 3] metres: the sequence's speaker's neutral head."""
        return self.speaker_templates[self.speaker[u]]

    def vertices(self, u: int, frames: slice = slice(None)) -> np.ndarray:
        """float32 [T, V, 3] metres for the sequence's frames; reads only those frames from disk."""
        track = np.load(self._sequence_dir(u) / VERTICES_FILE, mmap_mode="r", allow_pickle=False)
        return np.array(track[frames], dtype=np.float32)

    def _sequence_dir(self, u: int) -> Path:
        return self.root / self.sequence_names[u]


def load_captures(root: Path | str, template: Template) -> CaptureSet:
    """Check the capture folder `root` (format in the module docstring) and open it for reading.

    Reads every speaker head, info.json and audio file once and the header of every vertices.npy.
    Raises FileNotFoundError for missing folders or files and ValueError for content that breaks
    the format (wrong vertex count, unit or shape; frames that do not match the audio; mixed fps).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"capture folder {root} not found; {FORMAT_HELP}")
    speaker_names, speaker_templates = _read_speakers(root / SPEAKERS_DIR, template.num_vertices)
    sequence_dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name != SPEAKERS_DIR
                           and not p.name.startswith("."))
    if not sequence_dirs:
        raise ValueError(f"capture folder {root} holds no sequence folders; {FORMAT_HELP}")
    infos = [_read_sequence(folder, template.num_vertices, speaker_names) for folder in sequence_dirs]
    fps = _common_fps({folder.name: info["fps"] for folder, info in zip(sequence_dirs, infos)})
    return CaptureSet(
        template=template,
        root=root,
        sequence_names=tuple(folder.name for folder in sequence_dirs),
        speaker=np.array([speaker_names.index(info["speaker"]) for info in infos], dtype=np.int64),
        speaker_names=speaker_names,
        speaker_templates=speaker_templates,
        frame_counts=np.array([info["frames"] for info in infos], dtype=np.int64),
        fps=fps,
    )


def _read_speakers(folder: Path, n_vertices: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Speaker names (sorted file stems) and their heads float32 [S, V, 3] from speakers/*.npy."""
    paths = sorted(folder.glob("*.npy")) if folder.is_dir() else []
    if not paths:
        raise FileNotFoundError(f"no speaker heads in {folder}: put each speaker's neutral head there as "
                                f"<speaker>.npy, float32 [V, 3] metres; {FORMAT_HELP}")
    heads = [np.load(path, allow_pickle=False) for path in paths]
    for path, head in zip(paths, heads):
        _check_mesh_shape(head.shape, n_vertices, path, "[V, 3]")
        _check_metres(head, path)
    return tuple(path.stem for path in paths), np.stack(heads).astype(np.float32)


def _read_sequence(folder: Path, n_vertices: int, speaker_names: tuple[str, ...]) -> dict:
    """Check one sequence folder; returns its info.json with "frames" (T) added."""
    missing = [name for name in SEQUENCE_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"sequence {folder} is missing {', '.join(missing)}; each sequence folder "
                                f"holds {', '.join(SEQUENCE_FILES)} ({FORMAT_HELP})")
    info = _read_info(folder / INFO_FILE, speaker_names)
    track = np.load(folder / VERTICES_FILE, mmap_mode="r", allow_pickle=False)
    if track.ndim != 3:
        raise ValueError(f"{folder / VERTICES_FILE} has shape {track.shape}; expected float32 [T, V, 3]")
    _check_mesh_shape(track.shape[1:], n_vertices, folder / VERTICES_FILE, "[T, V, 3]")
    if not np.issubdtype(track.dtype, np.floating):
        raise ValueError(f"{folder / VERTICES_FILE} holds {track.dtype}; expected float32 positions in metres")
    n_samples = len(load_audio(folder / AUDIO_FILE))
    _check_duration(folder, len(track), n_samples, info["fps"])
    return {**info, "frames": len(track)}


def _read_info(path: Path, speaker_names: tuple[str, ...]) -> dict:
    """{"speaker": str, "fps": float} from info.json, with the speaker known and fps positive."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); write {INFO_EXAMPLE}") from e
    if not isinstance(info, dict):
        raise ValueError(f"{path} must hold a JSON object such as {INFO_EXAMPLE}")
    speaker, fps = info.get("speaker"), info.get("fps")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"{path} needs \"fps\": a positive number of frames per second, got {fps!r}")
    if speaker not in speaker_names:
        raise ValueError(f"{path} names speaker {speaker!r}, which has no head in {SPEAKERS_DIR}/ "
                         f"(known: {', '.join(speaker_names)}); add {SPEAKERS_DIR}/{speaker}.npy")
    return {"speaker": speaker, "fps": float(fps)}


def _check_mesh_shape(shape: tuple[int, ...], n_vertices: int, path: Path, expected: str) -> None:
    """Raise unless `shape`, one mesh's [V, 3], matches the template; `expected` names the file's layout."""
    if len(shape) != 2 or shape[1] != 3:
        raise ValueError(f"{path} has meshes of shape {tuple(shape)}; expected float32 {expected} positions")
    if shape[0] != n_vertices:
        raise ValueError(
            f"{path} has {shape[0]} vertices but the template head has {n_vertices}: captures must use the "
            "template's topology. Retarget (register) your meshes onto the template head first "
            f"(weights/template.npz); {FORMAT_HELP}")


def _check_metres(head: np.ndarray, path: Path) -> None:
    """Raise unless the head's largest bounding-box side is a plausible size in metres."""
    size = float(np.ptp(head, axis=0).max())
    low, high = HEAD_SIZE_RANGE_M
    if not low <= size <= high:
        raise ValueError(f"{path}: the head spans {size:g} units; meshes must be in metres "
                         f"(a head is {low}-{high} m), so convert millimetres or centimetres first")


def _check_duration(folder: Path, n_frames: int, n_samples: int, fps: float) -> None:
    """Raise unless n_frames at `fps` cover the audio's n_samples to within one frame."""
    expected = num_frames(n_samples, fps)
    if abs(n_frames - expected) > 1:
        raise ValueError(
            f"in {folder}, {VERTICES_FILE} has {n_frames} frames ({n_frames / fps:.3f} s at {fps:g} fps) but "
            f"{AUDIO_FILE} lasts {n_samples / SAMPLE_RATE:.3f} s ({expected} frames); they must agree to "
            "within one frame: check info.json's fps and that audio and meshes are trimmed alike")


def _common_fps(fps_by_sequence: dict[str, float]) -> float:
    """The one fps every sequence uses; ValueError naming an example of each rate otherwise."""
    rates = {}
    for name, fps in fps_by_sequence.items():
        rates.setdefault(fps, name)
    if len(rates) > 1:
        examples = ", ".join(f"{fps:g} fps ({name})" for fps, name in rates.items())
        raise ValueError(f"capture sequences use different frame rates: {examples}; all sequences must share "
                         "one fps, so resample the meshes of the others")
    return next(iter(rates))


def write_capture(root: Path | str, name: str, audio_16k: np.ndarray, vertices: np.ndarray,
                  speaker: str, speaker_template: np.ndarray, fps: float) -> Path:
    """Write one sequence (and its speaker's head, if new) into the capture folder `root`.

    audio_16k: float [N] at 16 kHz in [-1, 1], stored as 16-bit PCM. vertices: float [T, V, 3]
    metres. speaker_template: float [V, 3] metres; a speaker already in the folder must keep the
    same head. Returns the sequence folder.
    """
    root = Path(root)
    vertices = np.asarray(vertices, dtype=np.float32)
    speaker_template = np.asarray(speaker_template, dtype=np.float32)
    for label in (name, speaker):
        if not label or label.startswith(".") or Path(label).name != label or label == SPEAKERS_DIR:
            raise ValueError(f"{label!r} cannot name a sequence or speaker: use a plain folder name")
    if speaker_template.ndim != 2 or vertices.ndim != 3 or vertices.shape[1:] != speaker_template.shape:
        raise ValueError(f"vertices {vertices.shape} and speaker_template {speaker_template.shape} must be "
                         "[T, V, 3] and [V, 3] with the same V")
    head_path = root / SPEAKERS_DIR / f"{speaker}.npy"
    if head_path.exists() and not np.array_equal(np.load(head_path, allow_pickle=False), speaker_template):
        raise ValueError(f"speaker {speaker!r} already has a different head in {head_path}")
    head_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(head_path, speaker_template)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / AUDIO_FILE, audio_16k, SAMPLE_RATE)
    np.save(folder / VERTICES_FILE, vertices)
    (folder / INFO_FILE).write_text(json.dumps({"speaker": speaker, "fps": float(fps)}) + "\n", encoding="utf-8")
    return folder
