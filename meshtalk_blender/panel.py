"""The MeshTalk tab of the 3D Viewport's sidebar (N-panel)."""

import bpy

from . import bake


class MESHTALK_PT_main(bpy.types.Panel):
    bl_label = "MeshTalk"
    bl_idname = "MESHTALK_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MeshTalk"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.meshtalk
        status = context.window_manager.meshtalk_status
        layout.operator("meshtalk.add_head", icon="MESH_MONKEY")

        column = layout.column(align=True)
        column.row(align=True).prop(settings, "audio_source", expand=True)
        if settings.audio_source == "FILE":
            column.prop(settings, "audio_path", text="")
        else:
            strip = bake.sound_strip(context.scene)
            column.label(text=strip.name if strip else "No sound strip selected", icon="SOUND")
        layout.prop(settings, "target")

        column = layout.column(align=True)
        column.prop(settings, "variants")
        column.prop(settings, "seed")
        column.prop(settings, "temperature")
        column = layout.column(align=True)
        column.prop(settings, "lip_intensity")
        column.prop(settings, "upper_intensity")
        layout.prop(settings, "device")
        layout.prop(settings, "layout")

        layout.operator("meshtalk.animate_from_speech", icon="PLAY_SOUND")
        if status.running:
            layout.progress(factor=status.progress, type="BAR", text=status.message)
        elif status.message:
            layout.label(text=status.message)


class MESHTALK_PT_variants(bpy.types.Panel):
    """Variants of the target's bake: switch, re-roll, mix, re-bake, remove."""

    bl_label = "Variants"
    bl_idname = "MESHTALK_PT_variants"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MeshTalk"
    bl_parent_id = "MESHTALK_PT_main"

    @classmethod
    def poll(cls, context):
        obj = context.scene.meshtalk.target or context.active_object
        return obj is not None and obj.type == "MESH" and bake.is_baked(obj)

    def draw(self, context):
        layout = self.layout
        state = (context.scene.meshtalk.target or context.active_object).meshtalk
        layout.enabled = not context.window_manager.meshtalk_status.running
        row = layout.row(align=True)
        for index in range(state.codes_shape[0]):
            row.operator("meshtalk.choose_variant", text=str(index), depress=index == state.variant).variant = index
        layout.label(text=f"Seed {state.seed}, temperature {state.temperature:.2f}, model {state.model_version}")
        layout.operator("meshtalk.reroll_upper_face", icon="FILE_REFRESH")
        layout.operator("meshtalk.mix_variants", icon="MOD_MASK")
        layout.operator("meshtalk.rebake", icon="KEYINGSET")
        layout.operator("meshtalk.remove_animation", icon="TRASH")


CLASSES = (MESHTALK_PT_main, MESHTALK_PT_variants)
