"""The template head: neutral mesh, ARKit blendshapes and the region data of the animation contract.

Everything is in metres on Blender's axes (Z up, the face looking toward -Y). The asset is the
Face Cap head by Niels Jansson (Bannaflak), converted by `python -m model.data.build_template`.
numpy only: this module also runs inside Blender.
"""

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .npz import save_npz

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "weights" / "template.npz"

# The 52 ARKit blendshapes in Apple's documented order; weights arrays [..., 52] follow it.
ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward",
    "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft",
    "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft",
    "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft",
    "noseSneerRight", "tongueOut",
)
ARKIT_INDEX = {name: i for i, name in enumerate(ARKIT_NAMES)}


@dataclass(frozen=True)
class Template:
    """The template head. V vertices, F triangles; all positions in metres."""

    vertices: np.ndarray  # float32 [V, 3] neutral head
    faces: np.ndarray  # int32 [F, 3]
    uvs: np.ndarray  # float32 [F, 3, 2] per-corner texture coordinates
    blendshapes: np.ndarray  # float32 [52, V, 3] deltas from the neutral, ARKIT_NAMES order
    lip_upper_inner: np.ndarray  # int32 [L] inner-lip contour, upper lip, corner to corner
    lip_lower_inner: np.ndarray  # int32 [L] the lower-lip vertex facing each upper one
    eyelid_upper_L: np.ndarray  # int32 [E] subject's left eye (+X), upper lid margin
    eyelid_lower_L: np.ndarray  # int32 [E]
    eyelid_upper_R: np.ndarray  # int32 [E] subject's right eye (-X)
    eyelid_lower_R: np.ndarray  # int32 [E]
    mouth_weights: np.ndarray  # float32 [V] in [0, 1]: lips, jaw and cheeks (driven by audio)
    upper_face_weights: np.ndarray  # float32 [V] in [0, 1]: eyes, brows, forehead
    eyelid_mask: np.ndarray  # bool [V]: vertices a blink moves
    eyes_vertices: np.ndarray  # float32 [Ve, 3] both eyeballs, a display mesh
    eyes_faces: np.ndarray  # int32 [Fe, 3]
    teeth_vertices: np.ndarray  # float32 [Vt, 3] upper teeth, a display mesh
    teeth_faces: np.ndarray  # int32 [Ft, 3]

    @property
    def num_vertices(self) -> int:
        return len(self.vertices)

    def blend(self, weights: np.ndarray, vertices: np.ndarray | None = None) -> np.ndarray:
        """ARKit weights [..., 52] -> vertices [..., V, 3] metres, on `vertices` (default: the neutral)."""
        base = self.vertices if vertices is None else vertices
        flat = np.asarray(weights, dtype=np.float32) @ self.blendshapes.reshape(len(ARKIT_NAMES), -1)
        return flat.reshape(*flat.shape[:-1], *self.vertices.shape) + base

    def save(self, path: Path) -> None:
        save_npz(path, {f.name: getattr(self, f.name) for f in fields(self)})


def load_template(path: Path | str = TEMPLATE_PATH) -> Template:
    """Read a template written by `Template.save` (no pickles)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"template head not found at {path}; rebuild it with `python -m model.data.build_template`"
        )
    with np.load(path, allow_pickle=False) as data:
        return Template(**{f.name: data[f.name] for f in fields(Template)})
