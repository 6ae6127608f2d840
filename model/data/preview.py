"""Preview of the synthetic ground truth: a labelled contact sheet and a GIF of one utterance.

The sheet shows the frames a reviewer needs to judge the corpus: every bilabial (lips sealed),
the widest open vowels, a blink, a brow raise and rest, each labelled with its phone, word and time.
"""

from pathlib import Path

import numpy as np

from ..audio import write_wav
from .coarticulation import BILABIALS
from .render import contact_sheet, render_mesh, save_gif, save_png
from .synth import FPS, Generated, generate_utterance
from ..template import ARKIT_INDEX, load_template

PREVIEW_SPLIT = "train"
OPEN_VOWELS = ("AA", "AE", "AO", "AW", "AY")
TILE = (256, 256)
GIF_SIZE = (200, 200)


def _find_preview_utterance(seed: int) -> Generated:
    """The first utterance with a bilabial, an open vowel, a blink and a brow raise."""
    for index in range(500):
        g = generate_utterance(seed, PREVIEW_SPLIT, index)
        symbols = {p[0] for p in g.utterance.phones}
        if symbols & BILABIALS and symbols & set(OPEN_VOWELS) and g.blinks and g.brow_raises:
            return g
    raise RuntimeError("no utterance with every feature in the first 500")


def _pick_frames(g: Generated) -> list[tuple[int, str]]:
    """(frame, label) for the sheet, in time order."""
    w, phones = g.utterance.weights, g.utterance.phones
    n = len(w)
    frame_at = lambda t: int(np.clip(round(t * FPS), 0, n - 1))  # noqa: E731
    picks = []
    for symbol, start, end in phones:
        if symbol in BILABIALS:
            picks.append((frame_at(start + 0.35 * (end - start)), f"{symbol} {start:.2f}s sealed"))
    jaw = w[:, ARKIT_INDEX["jawOpen"]]
    vowels = [(jaw[frame_at((s + e) / 2)], sym, s, e) for sym, s, e in phones if sym in OPEN_VOWELS]
    for _, symbol, start, end in sorted(vowels, reverse=True)[:3]:
        picks.append((frame_at((start + end) / 2), f"{symbol} {start:.2f}s open"))
    blink = int(np.argmax(w[:, ARKIT_INDEX["eyeBlinkLeft"]]))
    picks.append((blink, f"blink {blink / FPS:.2f}s"))
    brow = int(np.argmax(w[:, ARKIT_INDEX["browOuterUpLeft"]]))
    picks.append((brow, f"brow raise {brow / FPS:.2f}s"))
    picks.append((n - 1, f"rest {(n - 1) / FPS:.2f}s"))
    return sorted(set(picks))


def _face_crop(template) -> tuple[float, float, float, float]:
    """(x_min, x_max, z_min, z_max) metres around brows, eyes, mouth and chin; one framing for
    every frame, so nothing jumps."""
    face = template.vertices[(template.mouth_weights > 0.5) | (template.upper_face_weights > 0.5)]
    (x0, _, z0), (x1, _, z1) = face.min(0), face.max(0)
    half = 0.55 * max(x1 - x0, z1 - z0)
    cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
    return cx - half, cx + half, cz - half, cz + half


def write_preview(out: Path, seed: int = 0) -> list[Path]:
    """Write `preview.png` (contact sheet), `preview.gif` and `preview.wav` under `out`."""
    template = load_template()
    g = _find_preview_utterance(seed)
    frames = _pick_frames(g)
    head = template.blend(g.utterance.weights)
    extras = [(template.eyes_vertices, template.eyes_faces, (0.85, 0.85, 0.82)),
              (template.teeth_vertices, template.teeth_faces, (0.95, 0.93, 0.88))]
    crop = _face_crop(template)
    tiles = [render_mesh(head[f], template.faces, size=TILE, extra_meshes=extras, crop=crop) for f, _ in frames]
    sheet = contact_sheet(tiles, [label for _, label in frames], columns=4,
                          title=f'"{g.utterance.text}"')
    paths = [out / "preview.png", out / "preview.gif", out / "preview.wav"]
    save_png(paths[0], sheet)
    gif = [render_mesh(v, template.faces, size=GIF_SIZE, extra_meshes=extras, crop=crop) for v in head]
    save_gif(paths[1], gif, FPS)
    write_wav(paths[2], g.utterance.audio)
    return paths
