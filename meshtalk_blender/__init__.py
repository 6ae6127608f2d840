"""MeshTalk: speech-driven face animation. bpy glue only; the logic lives in the bundled `model`."""

from . import operators, panel, properties

_CLASSES = (*properties.CLASSES, *operators.CLASSES, *panel.CLASSES)


def register():
    import bpy

    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    properties.register()
    # The `blender -c meshtalk ...` command (meshtalk_blender/cli.py) registers here.


def unregister():
    import bpy

    properties.unregister()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
