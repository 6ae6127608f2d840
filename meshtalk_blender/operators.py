"""Operators: scriptable, undoable, one clear message per failure (the scene then stays as it was).

Animate from Speech and Re-roll Upper Face sample the model (seconds to minutes). From a script
or in background mode (`blender -b`) they run synchronously in execute() and print their progress;
from the UI (invoke) the model runs on a worker thread that never touches bpy, its progress and
result come back through a queue drained by a modal timer, and Esc cancels.
"""

import queue
import threading
import time

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

from . import bake
from .bake import MeshTalkError
from .head import add_head
from .model.bake import scene_frame_count
from .model.template import load_template
from .properties import DEVICES, LAYOUTS

TIMER_INTERVAL_S = 0.1
PRINT_EVERY = 0.1  # fraction of progress between printed lines


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


def _redraw_sidebars(context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


class _ModelOperator:
    """An operator that runs the model (a bake.Request): synchronously in execute(), off the main
    thread from invoke()."""

    def make_request(self, context) -> bake.Request:
        raise NotImplementedError

    def finish(self, request: bake.Request, animation) -> str:
        """Apply the result (main thread); returns the status message."""
        obj = bake.apply_animation(request, animation)
        for warning in request.warnings:
            self.report({"WARNING"}, warning)
        state = obj.meshtalk
        count = scene_frame_count(animation.vertices.shape[1], animation.fps,
                                  bake.scene_fps(bpy.data.scenes[request.scene_name]))
        return (f'Baked variant 0 of {state.codes_shape[0]} onto "{obj.name}": frames {state.start_frame}-'
                f"{state.start_frame + count - 1}, {state.layout.lower()} layout")

    @classmethod
    def poll(cls, context):
        return not context.window_manager.meshtalk_status.running

    def execute(self, context):
        status = context.window_manager.meshtalk_status
        started = time.perf_counter()
        try:
            request = self.make_request(context)
            print(f"MeshTalk: {self.bl_label}: {len(request.samples) / 16000:.1f} s of audio from "
                  f"{request.audio.path}, {request.variants} variant(s), seed {request.seed}", flush=True)
            animation = request.run(_print_progress())
            print("MeshTalk: baking", flush=True)
            message = self.finish(request, animation)
        except MeshTalkError as error:
            return self._fail(status, str(error))
        status.message = message
        print(f"MeshTalk: {message} in {time.perf_counter() - started:.1f} s", flush=True)
        self.report({"INFO"}, message)
        return {"FINISHED"}

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        status = context.window_manager.meshtalk_status
        try:
            self._request = self.make_request(context)
        except MeshTalkError as error:
            return self._fail(status, str(error))
        self._cancel = threading.Event()
        self._results = queue.SimpleQueue()
        threading.Thread(target=self._work, daemon=True).start()
        self._timer = context.window_manager.event_timer_add(TIMER_INTERVAL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        status.running, status.progress, status.message = True, 0.0, f"{self.bl_label}: starting"
        _redraw_sidebars(context)
        return {"RUNNING_MODAL"}

    def _work(self) -> None:
        """The worker thread: no bpy here, only the queue."""
        def progress(fraction):
            if self._cancel.is_set():
                raise bake.Cancelled()
            self._results.put(("progress", fraction))

        try:
            self._results.put(("done", self._request.run(progress)))
        except MeshTalkError as error:
            self._results.put(("error", str(error)))
        except Exception as error:  # a bug: still end the modal operator with a message
            self._results.put(("error", f"MeshTalk failed unexpectedly: {error!r}"))

    def modal(self, context, event):
        status = context.window_manager.meshtalk_status
        if event.type == "ESC":
            self._cancel.set()  # the worker stops at its next progress report; its result is dropped
            return self._end(context, self._fail(status, str(bake.Cancelled())))
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        while True:
            try:
                kind, value = self._results.get_nowait()
            except queue.Empty:
                return {"RUNNING_MODAL"}
            if kind == "progress":
                status.progress = value
                status.message = f"{self.bl_label}: sampling {value:.0%} (Esc cancels)"
                _redraw_sidebars(context)
            elif kind == "error":
                return self._end(context, self._fail(status, value))
            else:
                try:
                    status.message = self.finish(self._request, value)
                except MeshTalkError as error:
                    return self._end(context, self._fail(status, str(error)))
                self.report({"INFO"}, status.message)
                return self._end(context, {"FINISHED"})

    def _end(self, context, result: set) -> set:
        context.window_manager.event_timer_remove(self._timer)
        context.window_manager.meshtalk_status.running = False
        _redraw_sidebars(context)
        return result

    def _fail(self, status, message: str) -> set:
        status.message = message
        self.report({"ERROR"}, message)
        return {"CANCELLED"}


def _print_progress():
    """A progress callback printing a line every PRINT_EVERY of the way."""
    printed = [-1.0]

    def progress(fraction):
        if fraction >= printed[0] + PRINT_EVERY or fraction == 1.0 and printed[0] < 1.0:
            printed[0] = fraction
            print(f"MeshTalk: sampling {fraction:.0%}", flush=True)
    return progress


def _scene_default(operator, settings, name: str):
    """The operator's property `name` when the caller set it, else the panel's setting."""
    return getattr(operator, name) if operator.properties.is_property_set(name) else getattr(settings, name)


class MESHTALK_OT_animate_from_speech(_ModelOperator, bpy.types.Operator):
    """Animate the face mesh from speech: lips from the audio, upper face sampled; baked as shape keys.
    Properties left unset take the MeshTalk panel's settings"""

    bl_idname = "meshtalk.animate_from_speech"
    bl_label = "Animate from Speech"
    bl_options = {"REGISTER", "UNDO"}

    audio_path: StringProperty(name="Audio File", subtype="FILE_PATH",
                               description="Speech audio (added as a sound strip); empty: the panel's audio source")
    object_name: StringProperty(name="Object", description="The mesh to animate; empty: the panel's target, "
                                                           "else the active object")
    variants: IntProperty(name="Variants", default=1, min=1, max=16)
    seed: IntProperty(name="Seed", default=0, min=0)
    temperature: FloatProperty(name="Temperature", default=1.0, min=0.05, max=2.0)
    lip_intensity: FloatProperty(name="Lips", default=1.0, min=0.0, soft_max=2.0)
    upper_intensity: FloatProperty(name="Upper Face", default=1.0, min=0.0, soft_max=2.0)
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    layout: EnumProperty(name="Bake Layout", items=LAYOUTS, default="COMPACT")

    def make_request(self, context) -> bake.Request:
        settings = context.scene.meshtalk
        audio_path = self.audio_path
        if not self.properties.is_property_set("audio_path") and settings.audio_source == "FILE":
            audio_path = settings.audio_path
            if not audio_path:
                raise MeshTalkError("No audio: choose an audio file, or a sound strip as the audio source.")
        values = {name: _scene_default(self, settings, name) for name in
                  ("variants", "seed", "temperature", "lip_intensity", "upper_intensity", "device", "layout")}
        obj = bake.target_object(context, self.object_name)
        return bake.prepare_animation(context, obj, audio_path, **values)


class MESHTALK_OT_reroll_upper_face(_ModelOperator, bpy.types.Operator):
    """Sample the upper face of every variant again, keeping the lips"""

    bl_idname = "meshtalk.reroll_upper_face"
    bl_label = "Re-roll Upper Face"
    bl_options = {"REGISTER", "UNDO"}

    object_name: StringProperty(name="Object", description="Empty: the panel's target, else the active object")
    seed: IntProperty(name="Seed", min=0, description="The new seed; unset: the baked seed + 1")
    device: EnumProperty(name="Device", items=DEVICES, default="auto")

    def make_request(self, context) -> bake.Request:
        obj = bake.target_object(context, self.object_name)
        seed = self.seed if self.properties.is_property_set("seed") else obj.meshtalk.seed + 1
        return bake.prepare_reroll(context, obj, seed, _scene_default(self, context.scene.meshtalk, "device"))


class _Rebakes:
    """Operators that re-bake from the stored codes: fast, no sampling, synchronous."""

    object_name: StringProperty(name="Object", description="Empty: the panel's target, else the active object")

    def rebake(self, context, obj) -> None:
        raise NotImplementedError

    def execute(self, context):
        try:
            obj = bake.target_object(context, self.object_name)
            self.rebake(context, obj)
        except MeshTalkError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        state = obj.meshtalk
        context.window_manager.meshtalk_status.message = (
            f'"{obj.name}": variant {state.variant}, {state.layout.lower()} layout, '
            f"lips {state.lip_intensity:.2f}, upper face {state.upper_intensity:.2f}")
        return {"FINISHED"}


class MESHTALK_OT_choose_variant(_Rebakes, bpy.types.Operator):
    """Bake another sampled variant's upper face (the lips stay)"""

    bl_idname = "meshtalk.choose_variant"
    bl_label = "Choose Variant"
    bl_options = {"REGISTER", "UNDO"}

    variant: IntProperty(name="Variant", min=0)

    def rebake(self, context, obj):
        bake.rebake(context, obj, variant=self.variant, device=context.scene.meshtalk.device)


class MESHTALK_OT_mix_variants(_Rebakes, bpy.types.Operator):
    """Combine the lips sampled for one variant with the upper face of another"""

    bl_idname = "meshtalk.mix_variants"
    bl_label = "Mix Variants"
    bl_options = {"REGISTER", "UNDO"}

    lips_variant: IntProperty(name="Lips From", min=0)
    upper_variant: IntProperty(name="Upper Face From", min=0)

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def rebake(self, context, obj):
        bake.rebake(context, obj, variant=self.upper_variant, lips_variant=self.lips_variant,
                    device=context.scene.meshtalk.device)


class MESHTALK_OT_rebake(_Rebakes, bpy.types.Operator):
    """Re-bake the MeshTalk animation with the panel's lip and upper-face intensity and bake layout"""

    bl_idname = "meshtalk.rebake"
    bl_label = "Re-bake"
    bl_options = {"REGISTER", "UNDO"}

    def rebake(self, context, obj):
        settings = context.scene.meshtalk
        bake.rebake(context, obj, lip_intensity=settings.lip_intensity, upper_intensity=settings.upper_intensity,
                    layout=settings.layout, device=settings.device)


class MESHTALK_OT_remove_animation(bpy.types.Operator):
    """Remove MeshTalk's shape keys and animation from the mesh (your own shape keys stay)"""

    bl_idname = "meshtalk.remove_animation"
    bl_label = "Remove MeshTalk Animation"
    bl_options = {"REGISTER", "UNDO"}

    object_name: StringProperty(name="Object", description="Empty: the panel's target, else the active object")

    def execute(self, context):
        try:
            obj = bake.target_object(context, self.object_name)
        except MeshTalkError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if not bake.remove_animation(obj):
            self.report({"WARNING"}, f'"{obj.name}" has no MeshTalk animation.')
            return {"CANCELLED"}
        context.window_manager.meshtalk_status.message = f'Removed the MeshTalk animation from "{obj.name}"'
        return {"FINISHED"}


CLASSES = (MESHTALK_OT_add_head, MESHTALK_OT_animate_from_speech, MESHTALK_OT_reroll_upper_face,
           MESHTALK_OT_choose_variant, MESHTALK_OT_mix_variants, MESHTALK_OT_rebake, MESHTALK_OT_remove_animation)
