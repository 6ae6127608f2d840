"""The MeshTalk sidebar tab in the 3D Viewport (N-panel)."""

import bpy


class MESHTALK_PT_main(bpy.types.Panel):
    bl_label = "MeshTalk"
    bl_idname = "MESHTALK_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MeshTalk"

    def draw(self, context):
        self.layout.operator("meshtalk.add_head", icon="MESH_MONKEY")


CLASSES = (MESHTALK_PT_main,)
