"""Build `weights/template.npz` from the Face Cap head in the pinned PyPI wheel `openfacefx==0.24.0`.

    pip install openfacefx==0.24.0 meshopt
    python -m model.data.build_template [--out weights/template.npz]

The glTF (`facecap.glb`) is meshopt-compressed and quantised; this script decodes it, applies the
node transforms, converts glTF axes (Y up, face toward +Z, decimetres) to Blender's (Z up, face
toward -Y, metres), welds the UV-seam duplicates, and derives the region data of the contract.
Face Cap head by Niels Jansson (Bannaflak), used with credit as its author allows.
"""

import argparse
import importlib.resources
import json
import struct
from pathlib import Path

import numpy as np

from ..template import ARKIT_INDEX, ARKIT_NAMES, TEMPLATE_PATH, Template

GLB_RESOURCE = ("openfacefx", "studio_web/assets/facecap.glb")
# The glTF scene is in decimetres: the eye centres are 0.66 units apart (a typical 63-66 mm).
METRES_PER_UNIT = 0.1
_COMPONENT = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
MOVED_M = 1e-4  # a blendshape "moves" a vertex by more than 0.1 mm
MOUTH_SHAPES = [n for n in ARKIT_NAMES if n.startswith(("jaw", "mouth", "cheekPuff"))]
UPPER_SHAPES = [n for n in ARKIT_NAMES if n.startswith(("brow", "eyeBlink", "eyeSquint", "eyeWide"))]


class Gltf:
    """Just enough of a glTF 2.0 binary reader for this asset (meshopt compression, quantisation)."""

    def __init__(self, blob: bytes):
        import meshopt

        self._meshopt = meshopt
        offset, chunks = 12, []
        while offset < len(blob):
            length, _ = struct.unpack_from("<II", blob, offset)
            chunks.append(blob[offset + 8 : offset + 8 + length])
            offset += 8 + length
        self.json, self.bin = json.loads(chunks[0]), chunks[1]
        self.parent = {c: i for i, n in enumerate(self.json["nodes"]) for c in n.get("children", [])}

    def _view(self, index: int) -> tuple[bytes, int | None]:
        view = self.json["bufferViews"][index]
        packed = view.get("extensions", {}).get("EXT_meshopt_compression")
        if packed is None:
            start = view.get("byteOffset", 0)
            return self.bin[start : start + view["byteLength"]], view.get("byteStride")
        start = packed.get("byteOffset", 0)
        rows = self._meshopt.decode_gltf_buffer(
            self.bin[start : start + packed["byteLength"]], packed["count"], packed["byteStride"],
            packed["mode"], packed.get("filter"),
        )
        return np.ascontiguousarray(rows).tobytes(), packed["byteStride"]

    def accessor(self, index: int) -> np.ndarray:
        acc = self.json["accessors"][index]
        data, stride = self._view(acc["bufferView"])
        dtype, width = np.dtype(_COMPONENT[acc["componentType"]]), _WIDTH[acc["type"]]
        stride = stride or dtype.itemsize * width
        out = np.ndarray((acc["count"], width), dtype, data, acc.get("byteOffset", 0), (stride, dtype.itemsize))
        out = out.astype(np.float64)
        if acc.get("normalized"):
            out /= np.iinfo(dtype).max
        return out

    def world_matrix(self, node: int) -> np.ndarray:
        matrix = np.eye(4)
        while node is not None:
            matrix = _local_matrix(self.json["nodes"][node]) @ matrix
            node = self.parent.get(node)
        return matrix


def _local_matrix(node: dict) -> np.ndarray:
    x, y, z, w = node.get("rotation", (0, 0, 0, 1))
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * np.asarray(node.get("scale", (1, 1, 1)))
    matrix[:3, 3] = node.get("translation", (0, 0, 0))
    return matrix


def to_blender(points: np.ndarray) -> np.ndarray:
    """glTF (x, y up, z forward) in scene units -> Blender (x, -z, y) in metres."""
    return np.stack([points[:, 0], -points[:, 2], points[:, 1]], axis=1) * METRES_PER_UNIT


def _mesh(gltf: Gltf, node_name: str) -> tuple[np.ndarray, np.ndarray, dict, int]:
    """World-space positions [V, 3] (Blender, metres), triangles [F, 3], the primitive and its node."""
    nodes = gltf.json["nodes"]
    named = next(i for i, n in enumerate(nodes) if n.get("name") == node_name)
    node = nodes[named]["children"][0]
    primitive = gltf.json["meshes"][nodes[node]["mesh"]]["primitives"][0]
    matrix = gltf.world_matrix(node)
    positions = gltf.accessor(primitive["attributes"]["POSITION"]) @ matrix[:3, :3].T + matrix[:3, 3]
    faces = gltf.accessor(primitive["indices"]).reshape(-1, 3).astype(np.int64)
    return to_blender(positions), faces, primitive, node


def _uvs(gltf: Gltf, primitive: dict) -> np.ndarray:
    """Per-vertex UVs [V, 2] with the material's texture transform, V flipped to Blender's convention."""
    uv = gltf.accessor(primitive["attributes"]["TEXCOORD_0"])
    texture = gltf.json["materials"][primitive["material"]]["pbrMetallicRoughness"]["baseColorTexture"]
    transform = texture.get("extensions", {}).get("KHR_texture_transform", {})
    uv = uv * transform.get("scale", (1, 1)) + transform.get("offset", (0, 0))
    return np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1)


def _weld(positions: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """Index of the kept vertex for each vertex: duplicates agree in position and every blendshape."""
    key = np.concatenate([positions, shapes.transpose(1, 0, 2).reshape(len(positions), -1)], axis=1)
    _, first, inverse = np.unique(np.round(key, 7), axis=0, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)]


def _compact(faces: np.ndarray, keep_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remap faces onto kept vertices; returns (new faces, old index of each new vertex)."""
    kept = np.unique(keep_of)
    new_index = np.full(len(keep_of), -1, dtype=np.int64)
    new_index[kept] = np.arange(len(kept))
    return new_index[keep_of[faces]], kept


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Ordered vertex loops along the mesh's open boundaries (holes: mouth, eyes, neck)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    neighbours: dict[int, list[int]] = {}
    for a, b in unique[counts == 1]:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    loops, seen = [], set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        loop, previous, current = [start], -1, start
        seen.add(start)
        while True:
            nxt = [n for n in neighbours[current] if n != previous and n not in seen]
            if not nxt:
                break
            previous, current = current, nxt[0]
            loop.append(current)
            seen.add(current)
        loops.append(np.array(loop))
    return loops


def paired_margins(vertices: np.ndarray, loop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a hole's loop at its leftmost and rightmost vertices into upper and lower margins and
    pair each upper vertex with the lower vertex nearest in X. Corners are shared, so left out."""
    x = vertices[loop, 0]
    a, b = sorted((int(np.argmin(x)), int(np.argmax(x))))
    chain_1, chain_2 = loop[a + 1 : b], np.concatenate([loop[b + 1 :], loop[:a]])
    if vertices[chain_1, 2].mean() < vertices[chain_2, 2].mean():
        chain_1, chain_2 = chain_2, chain_1
    upper, lower = chain_1, chain_2
    upper = upper[np.argsort(vertices[upper, 0])]
    nearest = np.abs(vertices[upper, 0][:, None] - vertices[lower, 0][None, :]).argmin(axis=1)
    return upper.astype(np.int32), lower[nearest].astype(np.int32)


def _hole(vertices: np.ndarray, loops: list[np.ndarray], shape: np.ndarray) -> np.ndarray:
    """The boundary loop whose vertices the given blendshape moves the most."""
    motion = np.linalg.norm(shape, axis=1)
    return max(loops, key=lambda loop: motion[loop].mean() if len(loop) > 12 else -1.0)


def region_weights(shapes: np.ndarray, names: list[str], faces: np.ndarray, smoothing_steps: int = 4) -> np.ndarray:
    """Soft [V] weights in [0, 1]: how much the named blendshapes move each vertex, saturating at a
    quarter of their largest motion, then smoothed over the mesh so the border is gradual."""
    motion = np.max([np.linalg.norm(shapes[ARKIT_INDEX[n]], axis=1) for n in names], axis=0)
    weights = np.clip(motion / (0.25 * motion.max()), 0.0, 1.0)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    degree = np.bincount(edges[:, 0], minlength=len(weights))
    for _ in range(smoothing_steps):
        weights = 0.5 * weights + 0.5 * np.bincount(edges[:, 0], weights[edges[:, 1]], len(weights)) / degree
    return weights.astype(np.float32)


def build(glb: bytes) -> Template:
    gltf = Gltf(glb)
    positions, faces, primitive, node = _mesh(gltf, "head")
    linear = gltf.world_matrix(node)[:3, :3]
    names = gltf.json["meshes"][gltf.json["nodes"][node]["mesh"]]["extras"]["targetNames"]
    arkit = [n.replace("_L", "Left").replace("_R", "Right") for n in names]
    shapes = np.zeros((len(ARKIT_NAMES), len(positions), 3))
    for target, name in zip(primitive["targets"], arkit):
        shapes[ARKIT_INDEX[name]] = to_blender(gltf.accessor(target["POSITION"]) @ linear.T)
    uv_per_vertex = _uvs(gltf, primitive)
    uvs = uv_per_vertex[faces]
    faces, kept = _compact(faces, _weld(positions, shapes))
    vertices, shapes = positions[kept], shapes[:, kept]

    loops = boundary_loops(faces)
    lip_upper, lip_lower = paired_margins(vertices, _hole(vertices, loops, shapes[ARKIT_INDEX["jawOpen"]]))
    lid = {}
    for side, name in (("L", "eyeBlinkLeft"), ("R", "eyeBlinkRight")):
        lid[side] = paired_margins(vertices, _hole(vertices, loops, shapes[ARKIT_INDEX[name]]))
    blink = shapes[[ARKIT_INDEX["eyeBlinkLeft"], ARKIT_INDEX["eyeBlinkRight"]]]
    eyelid_mask = np.linalg.norm(blink, axis=2).max(axis=0) > 1e-3
    eyelid_mask[np.concatenate([*lid["L"], *lid["R"]])] = True

    eyes = [_mesh(gltf, n) for n in ("eyeLeft", "eyeRight")]
    teeth, teeth_faces, _, _ = _mesh(gltf, "teeth")
    return Template(
        vertices=vertices.astype(np.float32), faces=faces.astype(np.int32), uvs=uvs.astype(np.float32),
        blendshapes=shapes.astype(np.float32),
        lip_upper_inner=lip_upper, lip_lower_inner=lip_lower,
        eyelid_upper_L=lid["L"][0], eyelid_lower_L=lid["L"][1],
        eyelid_upper_R=lid["R"][0], eyelid_lower_R=lid["R"][1],
        mouth_weights=region_weights(shapes, MOUTH_SHAPES, faces),
        upper_face_weights=region_weights(shapes, UPPER_SHAPES, faces),
        eyelid_mask=eyelid_mask,
        eyes_vertices=np.concatenate([eyes[0][0], eyes[1][0]]).astype(np.float32),
        eyes_faces=np.concatenate([eyes[0][1], eyes[1][1] + len(eyes[0][0])]).astype(np.int32),
        teeth_vertices=teeth.astype(np.float32), teeth_faces=teeth_faces.astype(np.int32),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=TEMPLATE_PATH)
    args = parser.parse_args(argv)
    glb = importlib.resources.files(GLB_RESOURCE[0]).joinpath(GLB_RESOURCE[1]).read_bytes()
    template = build(glb)
    template.save(args.out)
    print(f"wrote {args.out}: {template.num_vertices} vertices, {len(template.faces)} triangles, "
          f"{len(template.lip_upper_inner)} lip pairs, {len(template.eyelid_upper_L)} eyelid pairs per eye")


if __name__ == "__main__":
    main()
