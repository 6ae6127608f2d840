"""MeshTalk: speech-driven face animation. bpy glue only; the logic lives in the bundled `model`."""

from . import cli, operators, panel, properties

_CLASSES = (*properties.CLASSES, *operators.CLASSES, *panel.CLASSES)
_cli_command = None  # handle of `blender -c meshtalk`


def register():
    import bpy

    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    properties.register()
    global _cli_command
    _cli_command = bpy.utils.register_cli_command("meshtalk", cli.main)


def unregister():
    import bpy

    bpy.utils.unregister_cli_command(_cli_command)
    properties.unregister()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
