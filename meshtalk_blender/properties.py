"""MeshTalk's properties: the panel's settings (per scene), what a bake stored (per object), and the
status of a running bake (per window manager, not saved).

Declarations only, no methods or callbacks: PyPI's bpy 4.2 crashes at exit when a registered
property group holds Python functions (helpers for the stored state are in `bake`)."""

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntProperty, IntVectorProperty,
                       PointerProperty, StringProperty)

AUDIO_SOURCES = (
    ("FILE", "File", "An audio file; it is also added to the Video Sequencer as a sound strip"),
    ("STRIP", "Sound Strip", "The active (or else a selected) sound strip in the Video Sequencer"),
)
DEVICES = (
    ("auto", "Auto", "The CPU, which runs this model faster than a GPU"),
    ("cpu", "CPU", "Run the model on the CPU"),
    ("cuda", "CUDA", "Run the model on an NVIDIA GPU (slower than the CPU for this model)"),
)
LAYOUTS = (
    ("COMPACT", "Compact", "A few shape keys per clip driven by one keyframe per frame (within 0.1 mm)"),
    ("EXACT", "Exact", "One shape key per frame: exactly the model's output, large files"),
)

class MeshTalkSceneSettings(bpy.types.PropertyGroup):
    """The panel's inputs; the operators' properties default to them."""

    audio_source: EnumProperty(name="Audio", items=AUDIO_SOURCES, default="FILE")
    audio_path: StringProperty(name="Audio File", subtype="FILE_PATH",
                               description="Speech audio, any format Blender plays")
    target: PointerProperty(name="Target", type=bpy.types.Object,
                            description="The face mesh to animate; empty: the active object")
    variants: IntProperty(name="Variants", default=1, min=1, max=16,
                          description="Upper-face variants sampled at once (the lips are shared)")
    seed: IntProperty(name="Seed", default=0, min=0, description="Seed of the sampler")
    temperature: FloatProperty(name="Temperature", default=1.0, min=0.05, max=2.0,
                               description="Sampling temperature: lower is calmer")
    lip_intensity: FloatProperty(name="Lips", default=1.0, min=0.0, soft_max=2.0,
                                 description="Scale of the mouth's motion")
    upper_intensity: FloatProperty(name="Upper Face", default=1.0, min=0.0, soft_max=2.0,
                                   description="Scale of the motion of the rest of the face")
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    layout: EnumProperty(name="Bake Layout", items=LAYOUTS, default="COMPACT")


class MeshTalkObjectState(bpy.types.PropertyGroup):
    """What a bake needs to be switched, re-rolled, mixed or re-baked without sampling again.

    The baked motion is mix_regions(decode(lips_codes), decode(codes[variant])): the mouth of
    `lips_codes`, the upper face of variant `variant`."""

    audio_path: StringProperty(name="Audio", subtype="FILE_PATH")
    start_frame: IntProperty(name="Start Frame", description="Scene frame of the audio's first sample")
    model_fps: FloatProperty(name="Model FPS")
    seed: IntProperty(name="Seed")
    temperature: FloatProperty(name="Temperature")
    model_version: StringProperty(name="Model Version")
    codes_base64: StringProperty(description="Sampled codes int16 [K, T, H], base64")
    codes_shape: IntVectorProperty(size=3, description="K, T, H of the sampled codes")
    lips_codes_base64: StringProperty(description="Codes int16 [T, H] of the lips source, base64")
    variant: IntProperty(name="Variant", description="The variant whose upper face is baked")
    lip_intensity: FloatProperty(name="Lips", default=1.0)
    upper_intensity: FloatProperty(name="Upper Face", default=1.0)
    layout: EnumProperty(name="Bake Layout", items=LAYOUTS, default="COMPACT")
    created_basis: BoolProperty(description="MeshTalk added the Basis key; removal takes it away again")


class MeshTalkStatus(bpy.types.PropertyGroup):
    """The panel's status line: progress of a running bake, or how the last one ended."""

    running: BoolProperty()
    progress: FloatProperty(min=0.0, max=1.0)
    message: StringProperty()


CLASSES = (MeshTalkSceneSettings, MeshTalkObjectState, MeshTalkStatus)


def register() -> None:
    bpy.types.Scene.meshtalk = PointerProperty(type=MeshTalkSceneSettings)
    bpy.types.Object.meshtalk = PointerProperty(type=MeshTalkObjectState)
    bpy.types.WindowManager.meshtalk_status = PointerProperty(type=MeshTalkStatus)


def unregister() -> None:
    del bpy.types.WindowManager.meshtalk_status
    del bpy.types.Object.meshtalk
    del bpy.types.Scene.meshtalk
