"""Animate a mesh from speech and bake the motion as shape keys; switch, re-roll, mix and remove it.

The bpy glue of the extension, shared by the operators and the `blender -c meshtalk` command:
the math (resampling, region scaling, the compact key basis) is in `model.bake`, the network in
`model.animate`. Everything MeshTalk adds to a mesh is named with PREFIX: the shape keys, their
curves and the action MeshTalk creates when the mesh had none, so a re-bake or a removal touches
nothing of the user's own shape keys and their animation.

Public entry points (all raise MeshTalkError with one message that says what to do, and leave
the scene as it was):
    animate_object(context, obj, audio_path, ...)    sample and bake (synchronous)
    prepare_animation / prepare_reroll -> Request; Request.run(progress) (any thread, no bpy);
    apply_animation(request, animation)               the three steps of the modal operator
    rebake(context, obj, ...)                         switch or mix variants, re-bake intensities
    remove_animation(obj)
"""

import base64
import dataclasses
import os
from dataclasses import dataclass
from typing import Callable

import bpy
import numpy as np

from .audio import read_audio
from .model.animate import Animation, animate, decode
from .model.audio import AudioError
from .model.bake import COMPACT_TOLERANCE_M, compact_basis, resample_to_scene, scale_regions, scene_frame_count
from .model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from .model.template import Template, load_template

PREFIX = "MT_"
BASIS_NAME = "Basis"
COMPACT_KEY_NAME = PREFIX + "basis_{:03d}"  # COMPACT layout: key b of the clip's basis
EXACT_KEY_NAME = PREFIX + "frame_{:05d}"  # EXACT layout: the key of one scene frame
CURVE_GROUP = "MeshTalk"
OWNED_ACTION = "meshtalk_owned"  # custom property marking an action MeshTalk created
# Blender stores shape keys as absolute float32 positions and subtracts the basis when it
# evaluates them; the compact basis keeps this much of the 0.1 mm budget for that rounding.
STORAGE_HEADROOM_M = 1e-5
KEY_PATH_START = f'key_blocks["{PREFIX}'
CODES_DTYPE = np.dtype("<i2")  # the categorical codes (0 .. classes - 1) as stored on the object

Progress = Callable[[float], None]


class MeshTalkError(Exception):
    """A user-facing failure; str(error) is one message saying what to do. The scene is unchanged."""


class Cancelled(MeshTalkError):
    def __init__(self):
        super().__init__("Animate from Speech was cancelled; the scene is unchanged.")


@dataclass
class AudioSource:
    path: str  # absolute path of the audio file
    start_frame: int  # scene frame of the audio's first sample
    add_strip: bool  # the file is not in the Video Sequencer yet: add it as a sound strip


@dataclass
class Request:
    """A validated animation job. Built on the main thread from bpy data; `run` needs no bpy."""

    scene_name: str
    object_name: str
    template: Template  # the mesh's basis shape as the model's template
    samples: np.ndarray  # float32 [N] 16 kHz mono
    audio: AudioSource
    variants: int
    seed: int
    temperature: float
    device: str
    lip_intensity: float
    upper_intensity: float
    layout: str  # "COMPACT" | "EXACT"
    lips_codes: np.ndarray | None = None  # int [T, H]: keep these lips (re-roll), else sample new ones
    warnings: list[str] = dataclasses.field(default_factory=list)  # filled by apply_animation

    def run(self, progress: Progress | None = None) -> Animation:
        """Sample the animation (seconds to minutes). Safe off the main thread; progress may raise
        Cancelled."""
        try:
            lips_from = None
            if self.lips_codes is not None:
                lips_from = decode(self.lips_codes[None], self.device, DEFAULT_CHECKPOINT, self.template)[0]
            return animate(self.samples, self.variants, self.seed, self.temperature, device=self.device,
                           template=self.template, lips_from=lips_from, progress=progress)
        except MeshTalkError:
            raise
        except (AudioError, CheckpointError) as error:
            raise MeshTalkError(str(error)) from error
        except (RuntimeError, ValueError) as error:  # e.g. CUDA asked for but missing, out of memory
            raise MeshTalkError(f"The MeshTalk model failed: {error}") from error


# ---------------------------------------------------------------------------------------------
# Validation: everything is checked before anything is modified.

def target_object(context, name: str = "") -> bpy.types.Object:
    """The object named `name`, else the panel's target, else the active object: a mesh in Object Mode."""
    if name:
        obj = bpy.data.objects.get(name)
        if obj is None:
            raise MeshTalkError(f'No object named "{name}"; check the name.')
    else:
        obj = context.scene.meshtalk.target or context.active_object
    if obj is None:
        raise MeshTalkError("No mesh selected: select the face mesh to animate (or add one with Add MeshTalk Head).")
    check_mesh(obj)
    return obj


def check_mesh(obj: bpy.types.Object) -> None:
    """A mesh in Object Mode (shape keys written in Edit Mode would be overwritten on leaving it)."""
    if obj.type != "MESH":
        raise MeshTalkError(f'"{obj.name}" is a {obj.type.lower()}, not a mesh: select the face mesh to animate.')
    if obj.mode != "OBJECT":
        raise MeshTalkError(f'"{obj.name}" is in {obj.mode.replace("_", " ").title()} Mode: switch to Object Mode.')


def mesh_template(obj: bpy.types.Object) -> Template:
    """The MeshTalk template with the mesh's rest shape (its Basis key, else its vertices) as the
    neutral head: a sculpted head of the same topology is animated as itself."""
    try:
        template = load_template()
    except FileNotFoundError as error:
        raise MeshTalkError(f"{error}; reinstall the MeshTalk extension.") from error
    count = len(obj.data.vertices)
    if count != template.num_vertices:
        raise MeshTalkError(
            f'"{obj.name}" has {count} vertices, but MeshTalk animates its own head topology '
            f"({template.num_vertices} vertices). Add the head with Add MeshTalk Head, animate it, and transfer "
            "the motion onto your mesh with a Surface Deform modifier bound to the MeshTalk head.")
    return dataclasses.replace(template, vertices=rest_coordinates(obj))


def rest_coordinates(obj: bpy.types.Object) -> np.ndarray:
    """float32 [V, 3] mesh-space positions of the reference (Basis) key, else of the vertices."""
    mesh = obj.data
    source = mesh.shape_keys.reference_key.data if mesh.shape_keys else mesh.vertices
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    source.foreach_get("co", co)
    return co.reshape(-1, 3)


def check_weights() -> None:
    if not DEFAULT_CHECKPOINT.is_file():
        raise MeshTalkError(f"MeshTalk's model weights are missing ({DEFAULT_CHECKPOINT}); "
                            "reinstall the MeshTalk extension.")


def _strips_all(scene) -> list:
    editor = scene.sequence_editor
    if editor is None:
        return []
    return list(editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all)  # 4.2-4.3: sequences


def sound_strip(scene):
    """The active sound strip of the Video Sequencer, else the first selected one, else None."""
    editor = scene.sequence_editor
    active = editor.active_strip if editor else None
    if active is not None and active.type == "SOUND":
        return active
    return next((s for s in _strips_all(scene) if s.type == "SOUND" and s.select), None)


def audio_from_strip(scene) -> AudioSource:
    strip = sound_strip(scene)
    if strip is None:
        raise MeshTalkError("No sound strip: select one in the Video Sequencer, or choose an audio file.")
    if strip.sound is None:
        raise MeshTalkError(f'Sound strip "{strip.name}" has no sound; choose an audio file instead.')
    if strip.sound.packed_file is not None:
        raise MeshTalkError(f'The sound of strip "{strip.name}" is packed into the .blend file: unpack it '
                            "(File > External Data > Unpack Resources) or choose an audio file.")
    path = os.path.normpath(bpy.path.abspath(strip.sound.filepath, library=strip.sound.library))
    return AudioSource(path, round(strip.frame_start), add_strip=False)


def audio_from_file(scene, path: str) -> AudioSource:
    """A file, playing from its sound strip when the scene has one, else from the current frame
    (where the strip will be added)."""
    path = os.path.normpath(bpy.path.abspath(path))
    for strip in _strips_all(scene):
        if strip.type == "SOUND" and strip.sound and strip.sound.packed_file is None and os.path.normpath(
                bpy.path.abspath(strip.sound.filepath, library=strip.sound.library)) == path:
            return AudioSource(path, round(strip.frame_start), add_strip=False)
    return AudioSource(path, scene.frame_current, add_strip=True)


def _read_samples(path: str) -> np.ndarray:
    try:
        return read_audio(path)
    except AudioError as error:
        raise MeshTalkError(str(error)) from error


def prepare_animation(context, obj, audio_path: str = "", variants: int = 1, seed: int = 0,
                      temperature: float = 1.0, lip_intensity: float = 1.0, upper_intensity: float = 1.0,
                      device: str = "auto", layout: str = "COMPACT") -> Request:
    """Validate and read everything an animation needs. audio_path: a file (it will be added as a
    sound strip), or "" for the scene's active or selected sound strip."""
    template = mesh_template(obj)
    check_weights()
    scene = context.scene
    audio = audio_from_file(scene, audio_path) if audio_path else audio_from_strip(scene)
    samples = _read_samples(audio.path)
    if variants < 1:
        raise MeshTalkError(f"Variants must be at least 1, got {variants}.")
    if temperature <= 0:
        raise MeshTalkError(f"Temperature must be positive, got {temperature}.")
    return Request(scene.name, obj.name, template, samples, audio, variants, seed, temperature, device, lip_intensity,
                   upper_intensity, layout)


def prepare_reroll(context, obj, seed: int, device: str = "auto") -> Request:
    """A new sample of the upper face of every variant, keeping the baked lips (same audio,
    intensities and layout as the bake)."""
    state = obj.meshtalk
    if not is_baked(obj):
        raise MeshTalkError(f'"{obj.name}" has no MeshTalk animation: use Animate from Speech first.')
    template = mesh_template(obj)
    check_weights()
    samples = _read_samples(state.audio_path)
    audio = AudioSource(state.audio_path, state.start_frame, add_strip=False)
    return Request(context.scene.name, obj.name, template, samples, audio, state.codes_shape[0], seed,
                   state.temperature, device, state.lip_intensity, state.upper_intensity, state.layout,
                   lips_codes=stored_codes(obj)[1])


# ---------------------------------------------------------------------------------------------
# Applying results (main thread).

def apply_animation(request: Request, animation: Animation) -> bpy.types.Object:
    """Bake variant 0 of a finished request and store what switching variants needs; returns the object."""
    obj = bpy.data.objects.get(request.object_name)
    scene = bpy.data.scenes.get(request.scene_name)
    if scene is None or obj is None or obj.type != "MESH" or len(obj.data.vertices) != request.template.num_vertices:
        raise MeshTalkError(f'The mesh "{request.object_name}" or its scene was removed or changed while MeshTalk '
                            "ran; run Animate from Speech again.")
    check_mesh(obj)
    keys = _shape_key_data(scene, request.template, animation.vertices[0], animation.fps, request.lip_intensity,
                           request.upper_intensity, request.layout)
    if request.audio.add_strip:
        _add_sound_strip(scene, request)
    state = obj.meshtalk
    _write(obj, keys, request.audio.start_frame, request.layout)
    last_frame = request.audio.start_frame + scene_frame_count(animation.vertices.shape[1], animation.fps,
                                                               scene_fps(scene)) - 1
    scene.frame_end = max(scene.frame_end, last_frame)  # playback covers the whole clip
    lips_codes = animation.codes[0] if request.lips_codes is None else request.lips_codes
    _store_codes(obj, animation.codes, lips_codes)
    state.audio_path = request.audio.path
    state.start_frame = request.audio.start_frame
    state.model_fps = animation.fps
    state.seed, state.temperature, state.model_version = animation.seed, animation.temperature, animation.model_version
    state.variant = 0
    state.lip_intensity, state.upper_intensity, state.layout = (request.lip_intensity, request.upper_intensity,
                                                                 request.layout)
    return obj


def animate_object(context, obj, audio_path: str = "", variants: int = 1, seed: int = 0, temperature: float = 1.0,
                   lip_intensity: float = 1.0, upper_intensity: float = 1.0, device: str = "auto",
                   layout: str = "COMPACT", progress: Progress | None = None) -> Animation:
    """Animate `obj` from speech and bake variant 0 (synchronous: the scripting and CLI entry point).

    audio_path: any file Blender plays, added as a sound strip at the current frame unless one
    plays it already; "" uses the active or selected sound strip. The bake starts at the strip's
    first frame, at the scene's frame rate. progress(fraction) is called during sampling and may
    raise Cancelled. Returns the model's output (all variants, at its own fps)."""
    request = prepare_animation(context, obj, audio_path, variants, seed, temperature, lip_intensity,
                                upper_intensity, device, layout)
    animation = request.run(progress)
    apply_animation(request, animation)
    return animation


def rebake(context, obj, variant: int | None = None, lips_variant: int | None = None,
           lip_intensity: float | None = None, upper_intensity: float | None = None, layout: str | None = None,
           device: str = "auto") -> None:
    """Re-bake from the stored codes without sampling: the upper face of `variant`, the lips of
    variant `lips_variant`'s own sample (None: keep the current lips), new intensities or layout."""
    state = obj.meshtalk
    if not is_baked(obj):
        raise MeshTalkError(f'"{obj.name}" has no MeshTalk animation: use Animate from Speech first.')
    count = state.codes_shape[0]
    for index in (variant, lips_variant):
        if index is not None and not 0 <= index < count:
            raise MeshTalkError(f"Variant {index} does not exist: choose 0 to {count - 1}.")
    template = mesh_template(obj)
    check_weights()
    variant = state.variant if variant is None else variant
    codes, lips_codes = stored_codes(obj)
    lips_codes = lips_codes if lips_variant is None else codes[lips_variant]
    settings = (state.lip_intensity if lip_intensity is None else lip_intensity,
                state.upper_intensity if upper_intensity is None else upper_intensity,
                state.layout if layout is None else layout)
    try:
        lips = decode(lips_codes[None], device, DEFAULT_CHECKPOINT, template)[0]
        vertices = decode(codes[variant:variant + 1], device, DEFAULT_CHECKPOINT, template, lips_from=lips)[0]
    except CheckpointError as error:
        raise MeshTalkError(str(error)) from error
    except (RuntimeError, ValueError) as error:
        raise MeshTalkError(f"The MeshTalk model failed: {error}") from error
    keys = _shape_key_data(context.scene, template, vertices, state.model_fps, *settings)
    _write(obj, keys, state.start_frame, settings[2])
    _store_codes(obj, codes, lips_codes)
    state.variant = variant
    state.lip_intensity, state.upper_intensity, state.layout = settings


def remove_animation(obj) -> bool:
    """Remove MeshTalk's shape keys, curves and stored state from `obj` (the user's own shape keys
    and their curves stay). Returns whether there was anything to remove."""
    had_keys = _remove_keys(obj)
    state = obj.meshtalk
    was_baked = is_baked(obj)
    if state.created_basis and obj.data.shape_keys and len(obj.data.shape_keys.key_blocks) == 1:
        obj.shape_key_clear()
    for name in ("audio_path", "codes_base64", "lips_codes_base64", "model_version"):
        setattr(state, name, "")
    state.created_basis = False
    return had_keys or was_baked


def is_baked(obj) -> bool:
    """Whether `obj` holds a MeshTalk bake (its codes are stored)."""
    return bool(obj.meshtalk.codes_base64)


def stored_codes(obj) -> tuple[np.ndarray, np.ndarray]:
    """The bake's sampled codes int64 [K, T, H] and the lips source's codes int64 [T, H]."""
    state = obj.meshtalk
    shape = tuple(state.codes_shape)
    codes = np.frombuffer(base64.b64decode(state.codes_base64), CODES_DTYPE).reshape(shape)
    lips = np.frombuffer(base64.b64decode(state.lips_codes_base64), CODES_DTYPE).reshape(shape[1:])
    return codes.astype(np.int64), lips.astype(np.int64)


def _store_codes(obj, codes: np.ndarray, lips_codes: np.ndarray) -> None:
    """codes int [K, T, H], lips_codes int [T, H] as base64 text on the object (compact, saved in the .blend)."""
    state = obj.meshtalk
    state.codes_base64 = base64.b64encode(np.ascontiguousarray(codes, CODES_DTYPE).tobytes()).decode()
    state.codes_shape = codes.shape
    state.lips_codes_base64 = base64.b64encode(np.ascontiguousarray(lips_codes, CODES_DTYPE).tobytes()).decode()


# ---------------------------------------------------------------------------------------------
# Shape keys and curves.

@dataclass
class ShapeKeyData:
    """What one bake writes: relative keys (mesh-space displacements from the basis) and the
    value of each key at each scene frame of the clip."""

    names: list[str]
    displacements: np.ndarray  # float32 [B, V, 3] metres
    frames: list[np.ndarray]  # per key: frame offsets from the clip's first frame, float [n]
    values: list[np.ndarray]  # per key: the key's value at those frames, float [n]


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


def _shape_key_data(scene, template: Template, vertices: np.ndarray, model_fps: float, lip_intensity: float,
                    upper_intensity: float, layout: str) -> ShapeKeyData:
    """Model vertices [T, V, 3] at model_fps -> the keys of `layout` at the scene's frame rate."""
    frames = resample_to_scene(vertices, model_fps, scene_fps(scene))  # [N, V, 3]
    frames = scale_regions(frames, template.vertices, template.mouth_weights, lip_intensity, upper_intensity)
    displacements = frames - template.vertices
    count = len(displacements)
    if layout == "EXACT":  # key n is 1 at frame n, 0 at its neighbours: evaluation is the model output
        names = [EXACT_KEY_NAME.format(n) for n in range(count)]
        offsets = [np.array([n - 1.0, n, n + 1.0]) for n in range(count)]
        return ShapeKeyData(names, displacements, offsets, [np.array([0.0, 1.0, 0.0])] * count)
    basis, weights = compact_basis(displacements, COMPACT_TOLERANCE_M - STORAGE_HEADROOM_M)
    basis, weights = _unit_weight_range(basis, weights)
    # zero at the frames either side of the clip: outside it the face rests, as with EXACT
    padded = np.concatenate([np.zeros((1, len(basis)), np.float32), weights, np.zeros((1, len(basis)), np.float32)])
    offsets = np.arange(-1.0, count + 1.0)
    return ShapeKeyData([COMPACT_KEY_NAME.format(b) for b in range(len(basis))], basis,
                        [offsets] * len(basis), list(padded.T))


def _unit_weight_range(basis: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale each key so its weights span [-1, 1] (shape-key values are clamped to the slider
    range, at most +-10): basis [B, V, 3], weights [N, B] -> the same product."""
    scale = np.abs(weights).max(axis=0)
    scale[scale == 0] = 1.0
    return basis * scale[:, None, None], weights / scale


def _write(obj, keys: ShapeKeyData, start_frame: int, layout: str) -> None:
    """Replace MeshTalk's keys and curves on `obj` with `keys`, the clip starting at start_frame."""
    _remove_keys(obj)
    if obj.data.shape_keys is None:
        obj.shape_key_add(name=BASIS_NAME, from_mix=False)
        obj.meshtalk.created_basis = True
    rest = rest_coordinates(obj)
    fcurves, group = _meshtalk_fcurves(obj.data.shape_keys)
    linear = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value
    for name, displacement, offsets, values in zip(keys.names, keys.displacements, keys.frames, keys.values):
        block = obj.shape_key_add(name=name, from_mix=False)
        block.data.foreach_set("co", (rest + displacement).ravel())
        block.slider_min, block.slider_max = -1.0, 1.0
        curve = fcurves.new(f'key_blocks["{name}"].value')
        curve.group = group
        points = curve.keyframe_points
        points.add(len(values))
        points.foreach_set("co", np.column_stack([start_frame + offsets, values]).astype(np.float32).ravel())
        points.foreach_set("interpolation", [linear] * len(values))
        curve.update()
    obj.data.update()


def _meshtalk_fcurves(key: bpy.types.Key):
    """(F-curve collection, MeshTalk's curve group) for the shape keys of `key`: in the user's
    action when it has one, else in a new action MeshTalk owns."""
    animation = key.animation_data or key.animation_data_create()
    if animation.action is None:
        action = bpy.data.actions.new(PREFIX + key.user.name)
        action[OWNED_ACTION] = True
        if hasattr(action, "id_root"):
            action.id_root = "KEY"
        animation.action = action
    action = animation.action
    if hasattr(action, "slots"):  # Blender 4.4+: slotted actions, curves live in channelbags
        from bpy_extras import anim_utils

        if animation.action_slot is None:
            animation.action_slot = action.slots.new(id_type="KEY", name=key.name)
        bag = anim_utils.action_ensure_channelbag_for_slot(action, animation.action_slot)
        fcurves, groups = bag.fcurves, bag.groups
    else:  # Blender 4.2-4.3
        fcurves, groups = action.fcurves, action.groups
    return fcurves, groups.get(CURVE_GROUP) or groups.new(CURVE_GROUP)


def _existing_fcurves(key: bpy.types.Key):
    """(action, F-curve collection, groups) of the shape keys' animation, or None."""
    animation = key.animation_data
    action = animation.action if animation else None
    if action is None:
        return None
    if hasattr(action, "slots"):
        from bpy_extras import anim_utils

        bag = anim_utils.action_get_channelbag_for_slot(action, animation.action_slot)
        return (action, bag.fcurves, bag.groups) if bag else None
    return action, action.fcurves, action.groups


def _remove_keys(obj) -> bool:
    """Remove MeshTalk's shape keys and their curves (and its action once empty); True if any."""
    key = obj.data.shape_keys
    if key is None:
        return False
    existing = _existing_fcurves(key)
    if existing:
        action, fcurves, groups = existing
        for curve in [c for c in fcurves if c.data_path.startswith(KEY_PATH_START)]:
            fcurves.remove(curve)
        group = groups.get(CURVE_GROUP)
        if group is not None and not group.channels:
            groups.remove(group)
        if action.get(OWNED_ACTION) and not len(fcurves):
            key.animation_data.action = None
            bpy.data.actions.remove(action)
    blocks = [block for block in key.key_blocks if block.name.startswith(PREFIX)]
    for block in blocks:
        obj.shape_key_remove(block)
    return bool(blocks)


def _add_sound_strip(scene, request: Request) -> None:
    """Add the audio file as a sound strip at its start frame, on the first channel above the others.
    A Blender built without audio (PyPI's bpy 4.2) cannot: the bake goes on, with a warning."""
    audio = request.audio
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences  # 4.2-4.3: sequences
    channel = max((strip.channel for strip in _strips_all(scene)), default=0) + 1
    try:
        strips.new_sound(os.path.basename(audio.path), audio.path, channel, audio.start_frame)
    except RuntimeError as error:  # "Blender compiled without Audaspace support"
        request.warnings.append(f"The audio could not be added as a sound strip ({str(error).strip()}); "
                                f"the animation starts at frame {audio.start_frame}.")
