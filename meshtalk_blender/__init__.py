"""MeshTalk: speech-driven face animation. bpy glue only; the logic lives in the bundled `model`."""

from . import operators, panel

_CLASSES = (*operators.CLASSES, *panel.CLASSES)


def register():
    import bpy

    for cls in _CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    import bpy

    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
