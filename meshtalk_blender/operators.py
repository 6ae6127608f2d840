"""Operators: scriptable, undoable, one clear message per failure."""

import bpy

from .head import add_head
from .model.template import load_template


class MESHTALK_OT_add_head(bpy.types.Operator):
    """Add the MeshTalk template head (Face Cap head by Niels Jansson), with eyes and teeth"""

    bl_idname = "meshtalk.add_head"
    bl_label = "Add MeshTalk Head"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        try:
            template = load_template()
        except FileNotFoundError as error:
            self.report({"ERROR"}, f"{error}; reinstall the MeshTalk extension")
            return {"CANCELLED"}
        head = add_head(template, context.collection, context.scene.cursor.location)
        for obj in context.selected_objects:
            obj.select_set(False)
        head.select_set(True)
        context.view_layer.objects.active = head
        return {"FINISHED"}


CLASSES = (MESHTALK_OT_add_head,)
