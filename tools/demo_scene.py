"""The Blender half of `make demo` (tools/demo.py runs it in a fresh Blender Python process).

    python tools/demo_scene.py EXTENSION.zip OUT.blend FRAMES_DIR   # PyPI bpy, BLENDER_USER_RESOURCES set
    blender -b --python tools/demo_scene.py -- EXTENSION.zip OUT.blend FRAMES_DIR

Installs the extension zip, starts from an empty scene, adds the MeshTalk head, bakes the bundled
sample speech, saves OUT.blend, then renders every frame of the animation with Blender (Workbench;
Cycles on the CPU where Workbench has no GPU context) to FRAMES_DIR/NNNN.png, and writes
FRAMES_DIR/info.json: timings, fps, frame numbers and the renderer used.
"""

import json
import math
import sys
import time
from pathlib import Path

import bpy
from mathutils import Vector

EXTENSION = "bl_ext.user_default.meshtalk"
TILE = 256  # pixels, square
SKIN = (0.86, 0.67, 0.56)
CYCLES_SAMPLES = 16
SUN_STRENGTH = 0.6  # W/m², no world light around it


def timed(label: str, timings: dict, action):
    start = time.perf_counter()
    result = action()
    timings[label] = round(time.perf_counter() - start, 2)
    print(f"demo: {label} {timings[label]:.1f} s", flush=True)
    return result


def install(zip_path: Path) -> None:
    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)
    if EXTENSION not in bpy.context.preferences.addons:
        sys.exit(f"demo: installing {zip_path} did not enable {EXTENSION}")


def play_the_speech_only(scene) -> None:
    """Set the scene's frame range to the sound strip the bake added."""
    editor = scene.sequence_editor
    (strip,) = editor.strips if hasattr(editor, "strips") else editor.sequences  # Blender 4.2-4.3: sequences
    scene.frame_start, scene.frame_end = strip.frame_final_start, strip.frame_final_end - 1


def add_camera(head: bpy.types.Object) -> None:
    """An orthographic camera looking at the face from the front (along +Y), framing its width."""
    scene = bpy.context.scene
    corners = [head.matrix_world @ Vector(corner) for corner in head.bound_box]
    x0, x1 = min(c.x for c in corners), max(c.x for c in corners)
    y0 = min(c.y for c in corners)
    z0, z1 = min(c.z for c in corners), max(c.z for c in corners)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = 0.85 * (x1 - x0)  # the face, ears cut
    camera.location = ((x0 + x1) / 2, y0 - 1.0, z0 + 0.38 * (z1 - z0))
    camera.rotation_euler = (math.pi / 2, 0.0, 0.0)  # looks along +Y, Z up
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.resolution_x = scene.render.resolution_y = TILE
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"


def use_workbench(scene) -> None:
    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "SINGLE"
    shading.single_color = SKIN
    shading.show_cavity = True
    scene.view_settings.view_transform = "Standard"


def use_cycles(scene) -> None:
    """Cycles on the CPU, lit by a sun: works without a GPU context."""
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = CYCLES_SAMPLES
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.rotation_euler = (math.radians(55), 0.0, math.radians(-20))  # from the front, above, the left
    sun.data.energy = SUN_STRENGTH
    scene.collection.objects.link(sun)


def render_frames(frames: list[int], folder: Path) -> str:
    """Render each frame to folder/NNNN.png; returns the engine used."""
    scene = bpy.context.scene
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        scene.frame_set(frame)
        scene.render.filepath = str(folder / f"{frame:04d}.png")
        try:
            bpy.ops.render.render(write_still=True)
        except RuntimeError as error:
            if i or scene.render.engine == "CYCLES":
                raise
            print(f"demo: Workbench cannot render here ({error}); using Cycles on the CPU", flush=True)
            use_cycles(scene)
            bpy.ops.render.render(write_still=True)
    return scene.render.engine


def main(zip_path: Path, blend: Path, frames_dir: Path) -> None:
    timings: dict[str, float] = {}
    timed("install", timings, lambda: install(zip_path))
    audio = Path(sys.modules[EXTENSION].__file__).parent / "assets" / "sample_speech.wav"
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.meshtalk.add_head()
    head = bpy.context.view_layer.objects.active
    timed("bake", timings, lambda: bpy.ops.meshtalk.animate_from_speech(audio_path=str(audio)))
    play_the_speech_only(bpy.context.scene)
    add_camera(head)
    use_workbench(bpy.context.scene)
    blend.parent.mkdir(parents=True, exist_ok=True)
    timed("save", timings, lambda: bpy.ops.wm.save_as_mainfile(filepath=str(blend.resolve())))
    scene = bpy.context.scene
    frames = list(range(scene.frame_start, scene.frame_end + 1))
    engine = timed("render", timings, lambda: render_frames(frames, frames_dir))
    info = dict(timings=timings, fps=scene.render.fps / scene.render.fps_base, frames=frames, engine=engine,
                vertices=len(head.data.vertices), shape_keys=len(head.data.shape_keys.key_blocks))
    (frames_dir / "info.json").write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    if len(args) != 3:
        sys.exit(__doc__)
    main(*map(Path, args))
