"""The built extension zip installs offline into the real PyPI bpy and its operators work.

The zip (with its ~190 MB torch wheel) is built and installed once per test session into a
shared Blender user folder; each check then runs in a fresh Python process that starts Blender
on that folder, enables the extension and uses it, as a user's Blender would.

Baked values are compared with the model's own output (`model.animate` on the same samples,
resampled to the scene's frames): the tests depend on the baking being faithful, not on the
quality of the shipped checkpoint. Undo itself cannot be exercised here (`ed.undo` needs a
window, which background Blender lacks); what is checked is that every operator registers for
undo and that failed or cancelled runs leave the scene exactly as it was.
"""

import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import build
from blender_process import MODULE, install_extension, run_for_result
from model.audio import write_wav
from model.template import load_template

COMPACT_TOLERANCE_MM = 0.1
EXACT_TOLERANCE_MM = 1e-2  # float32 storage of absolute key positions: about 1e-5 mm in practice

PRELUDE = f"""
import json, sys
import numpy as np
import bpy
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.preferences.addon_enable(module={MODULE!r})
from {MODULE} import bake, operators
from {MODULE}.audio import read_audio
from {MODULE}.model.animate import animate
from {MODULE}.model.bake import resample_to_scene, scene_frame_count
from {MODULE}.model.template import load_template
result = {{}}

def evaluated(obj, frame):
    '''Mesh-space vertex positions float32 [V, 3] of `obj` at scene frame `frame`.'''
    bpy.context.scene.frame_set(frame)
    mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)

def scene_fps():
    return bpy.context.scene.render.fps / bpy.context.scene.render.fps_base

def model_output(path, variants, seed, template=None):
    '''The model's vertices [K, N, V, 3] for the file, resampled to the scene's frames.'''
    animation = animate(read_audio(path), variants, seed, template=template)
    return np.stack([resample_to_scene(v, animation.fps, scene_fps()) for v in animation.vertices])

def max_error_mm(obj, reference, start, frames):
    '''Largest vertex distance in mm between the evaluated mesh and reference [N, V, 3] at the
    given clip frames (offsets from `start`).'''
    return max(1000 * float(np.linalg.norm(evaluated(obj, start + n) - reference[n], axis=1).max())
               for n in frames)

def add_head():
    bpy.ops.meshtalk.add_head()
    return bpy.context.active_object

def error_of(call):
    '''The message of the error an operator call reports, or None when it succeeds.'''
    try:
        call()
    except RuntimeError as error:
        return str(error)
    return None

class LayoutChecker:
    '''Stands in for a UILayout in a panel's draw(): background Blender draws no UI, but the
    property and operator names a panel uses can still be checked.'''
    def __getattr__(self, name):  # row, column, label, progress, ...: accept and chain
        return lambda *args, **kwargs: self
    def __setattr__(self, name, value):  # layout.enabled = ...
        pass
    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, name
        return self
    def operator(self, idname, **kwargs):
        group, name = idname.split(".")
        assert hasattr(bpy.types, f"{{group.upper()}}_OT_{{name}}"), idname  # registered
        return self

def draw_panels():
    '''Draw each MeshTalk panel whose poll() passes into a LayoutChecker; returns their ids.'''
    from types import SimpleNamespace
    from {MODULE} import panel
    drawn = []
    for cls in panel.CLASSES:
        if not hasattr(cls, "poll") or cls.poll(bpy.context):
            cls.draw(SimpleNamespace(layout=LayoutChecker()), bpy.context)
            drawn.append(cls.bl_idname)
    return drawn

def snapshot():
    '''Everything a MeshTalk run could change, as comparable plain data.'''
    scene = bpy.context.scene
    strips = bake._strips_all(scene)
    state = {{"objects": sorted(o.name for o in bpy.data.objects), "actions": sorted(a.name for a in bpy.data.actions),
             "strips": sorted((s.name, s.channel, s.frame_start) for s in strips), "frame": scene.frame_current}}
    for obj in bpy.data.objects:
        if obj.type == "MESH" and obj.data.shape_keys:
            keys = obj.data.shape_keys
            state[obj.name] = {{
                "keys": [(k.name, float(np.abs(np.array([p.co for p in k.data])).sum())) for k in keys.key_blocks],
                "action": getattr(getattr(keys.animation_data, "action", None), "name", None),
                "codes": obj.meshtalk.codes_base64}}
    return state
"""


# Disabling unregisters the extension's classes: PyPI bpy 4.2 crashes at exit while Python
# operators are still registered (5.0 does not); it also exercises unregister().
EPILOGUE = f"""
bpy.ops.preferences.addon_disable(module={MODULE!r})
print('RESULT' + json.dumps(result))
"""


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory):
    (path,) = build.build(tmp_path_factory.mktemp("dist"))
    return path


@pytest.fixture(scope="session")
def user_dir(tmp_path_factory, extension_zip):
    """A Blender user folder with the extension installed (once per session: the zip is large)."""
    return install_extension(extension_zip, tmp_path_factory.mktemp("blender-user"))


@pytest.fixture(scope="session")
def has_audaspace():
    """Whether this bpy plays audio (PyPI's bpy 4.2 is built without: no `aud`, no sound strips)."""
    return subprocess.run([sys.executable, "-c", "import bpy, aud"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def audio(tmp_path_factory):
    """Short test clips: speech-like bursts (2 s), silence, and broken files."""
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    syllables = (np.sin(2 * np.pi * 3 * t) > 0) * np.sin(2 * np.pi * 180 * t) + 0.2 * rng.standard_normal(len(t))
    write_wav(folder / "speech.wav", 0.3 * syllables)
    write_wav(folder / "silent.wav", np.zeros(16000))
    write_wav(folder / "no_samples.wav", np.zeros(0))
    (folder / "corrupt.wav").write_bytes(rng.bytes(4000))
    (folder / "empty.wav").write_bytes(b"")
    return folder


def run_in_blender(script: str, user_dir, **values) -> dict:
    """Run `script` after PRELUDE in a fresh bpy using `user_dir`; `values` are defined as
    variables first. The script fills the dict `result`, which is returned."""
    assignments = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    return run_for_result(PRELUDE + assignments + textwrap.dedent(script) + EPILOGUE, user_dir)


def test_zip_contains_runtime_only(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    assert {"blender_manifest.toml", "__init__.py", "model/template.py", "weights/template.npz"} <= set(names)
    assert not any(n.startswith("model/data/") for n in names)  # corpus tools stay out of Blender


def test_add_head_installs_and_builds_the_template(user_dir):
    result = run_in_blender("""
        head = add_head()
        co = np.zeros(len(head.data.vertices) * 3, np.float32)
        head.data.vertices.foreach_get("co", co)
        uv = np.zeros(len(head.data.loops) * 2, np.float32)
        head.data.uv_layers["UVMap"].data.foreach_get("uv", uv)
        result.update(name=head.name, vertices=co.tolist()[:30], count=len(head.data.vertices),
                      polygons=len(head.data.polygons), uv=uv.tolist()[:12],
                      children=sorted(c.name for c in head.children),
                      undoable=sorted(cls.bl_idname for cls in operators.CLASSES if "UNDO" in cls.bl_options),
                      operators=sorted(cls.bl_idname for cls in operators.CLASSES))
    """, user_dir)
    template = load_template()
    assert result["count"] == template.num_vertices and result["polygons"] == len(template.faces)
    assert np.allclose(result["vertices"], template.vertices.reshape(-1)[:30], atol=1e-6)
    assert np.allclose(result["uv"], template.uvs.reshape(-1)[:12], atol=1e-6)
    assert result["children"] == ["MeshTalk Head Eyes", "MeshTalk Head Teeth"]
    assert result["undoable"] == result["operators"]  # every MeshTalk operator can be undone


def test_bake_from_file_compact_then_exact_and_variants(user_dir, audio, has_audaspace):
    """A file is baked from the current frame and added as a strip; COMPACT is within 0.1 mm of
    the model, EXACT equals it; another variant bakes the model's other variant."""
    result = run_in_blender("""
        scene = bpy.context.scene
        scene.render.fps, scene.render.fps_base = 30, 1.0
        head = add_head()
        rest = evaluated(head, 0)
        scene.frame_current = 5  # where the file's strip goes
        bpy.ops.meshtalk.animate_from_speech(audio_path=path, variants=2, seed=3)
        reference = model_output(path, 2, 3)
        count = len(reference[0])
        state = head.meshtalk
        strips = bake._strips_all(scene)
        curves = bake._existing_fcurves(head.data.shape_keys)[1]
        keyed = sorted({int(p.co[0]) for c in curves for p in c.keyframe_points})
        result["file"] = dict(
            strips=[(s.sound.filepath, s.frame_start) for s in strips], start=state.start_frame,
            keyed=[keyed[0], keyed[-1]], count=count, codes=list(state.codes_shape),
            keys=[k.name for k in head.data.shape_keys.key_blocks],
            compact_mm=max_error_mm(head, reference[0], 5, range(count)),
            rest_mm=max(1000 * float(np.abs(evaluated(head, f) - rest).max()) for f in (4, 5 + count)))
        scene.meshtalk.layout = "EXACT"
        bpy.ops.meshtalk.rebake()
        result["exact"] = dict(keys=sum(k.name.startswith("MT_frame_") for k in head.data.shape_keys.key_blocks),
                               mm=max_error_mm(head, reference[0], 5, range(count)))
        bpy.ops.meshtalk.choose_variant(variant=1)
        result["variant"] = dict(variant=state.variant, mm=max_error_mm(head, reference[1], 5, range(count)))
        # the same file again: its strip is reused, not added twice
        scene.frame_current = 5
        bpy.ops.meshtalk.animate_from_speech(audio_path=path, variants=1, seed=4, layout="COMPACT")
        result["again"] = dict(strips=len(bake._strips_all(scene)), start=state.start_frame,
                               codes=list(state.codes_shape))
    """, user_dir, path=str(audio / "speech.wav"))
    file = result["file"]
    assert file["strips"] == ([[str(audio / "speech.wav"), 5.0]] if has_audaspace else [])
    assert file["start"] == 5 and file["keyed"] == [4, 5 + file["count"]]  # and a rest key either side
    assert file["count"] == 60  # 2 s at 30 fps
    assert file["codes"][:2] == [2, 60]
    assert file["keys"][0] == "Basis" and all(name.startswith("MT_basis_") for name in file["keys"][1:])
    assert file["compact_mm"] <= COMPACT_TOLERANCE_MM
    assert file["rest_mm"] < 1e-4  # outside the clip the face rests
    assert result["exact"]["keys"] == file["count"]
    assert result["exact"]["mm"] <= EXACT_TOLERANCE_MM
    assert result["variant"]["variant"] == 1 and result["variant"]["mm"] <= EXACT_TOLERANCE_MM
    assert result["again"] == {"strips": len(file["strips"]), "start": 5, "codes": [1, 60, file["codes"][2]]}


def test_bake_from_strip_at_24_fps(user_dir, audio, has_audaspace):
    """From the active sound strip: the bake starts at the strip's first frame and has one value
    per scene frame of the clip (model 30 fps -> scene 24 fps)."""
    if not has_audaspace:
        pytest.skip("this bpy is built without audio support: no sound strips")
    result = run_in_blender("""
        scene = bpy.context.scene
        scene.render.fps, scene.render.fps_base = 24, 1.0
        scene.frame_end = 20  # shorter than the clip: the bake extends it
        editor = scene.sequence_editor_create()
        strips = editor.strips if hasattr(editor, "strips") else editor.sequences
        editor.active_strip = strips.new_sound("speech", path, 2, 12)
        scene.meshtalk.audio_source = "STRIP"
        head = add_head()
        bpy.ops.meshtalk.animate_from_speech(variants=1, seed=0, layout="EXACT")
        reference = model_output(path, 1, 0)[0]
        curves = bake._existing_fcurves(head.data.shape_keys)[1]
        peaks = sorted(p.co[0] for c in curves for p in c.keyframe_points if p.co[1] == 1.0)
        result.update(peaks=[peaks[0], peaks[-1], len(peaks)], count=len(reference),
                      expected=scene_frame_count(60, 30.0, 24.0), strips=len(bake._strips_all(scene)),
                      mm=max_error_mm(head, reference, 12, range(len(reference))), frame_end=scene.frame_end)
    """, user_dir, path=str(audio / "speech.wav"))
    assert result["count"] == result["expected"] == 48
    assert result["frame_end"] == 12 + 47
    assert result["peaks"] == [12.0, 12.0 + 47, 48]
    assert result["strips"] == 1
    assert result["mm"] <= EXACT_TOLERANCE_MM


def test_rebake_and_removal_keep_the_users_shape_keys(user_dir, audio):
    """A sculpted head with its own animated shape key: MeshTalk animates the sculpted shape,
    re-bakes replace only MeshTalk's keys and curves, removal restores the user's setup."""
    result = run_in_blender("""
        import dataclasses
        head = add_head()
        basis = head.shape_key_add(name="Basis", from_mix=False)
        co = np.empty(len(basis.data) * 3, np.float32)
        basis.data.foreach_get("co", co)
        basis.data.foreach_set("co", co * 1.05)  # a sculpted (scaled) head, same topology
        smile = head.shape_key_add(name="Smile", from_mix=False)
        smile.data.foreach_set("co", co * 1.05 + 0.002)
        for frame, value in ((1, 0.0), (40, 0.0), (70, 0.5)):  # still 0 within the clip's first frames
            smile.value = value
            smile.keyframe_insert("value", frame=frame)
        def user_setup():
            keys = head.data.shape_keys
            curves = bake._existing_fcurves(keys)[1]
            return dict(keys=[k.name for k in keys.key_blocks if not k.name.startswith("MT_")],
                        action=keys.animation_data.action.name,
                        curves=[(c.data_path, [tuple(p.co) for p in c.keyframe_points]) for c in curves
                                if not c.data_path.startswith(bake.KEY_PATH_START)],
                        smile=float(np.abs(np.array([p.co for p in keys.key_blocks["Smile"].data])).sum()))
        before = user_setup()
        bpy.ops.meshtalk.animate_from_speech(audio_path=path, variants=1, seed=5)
        template = dataclasses.replace(load_template(), vertices=co.reshape(-1, 3) * 1.05)
        reference = model_output(path, 1, 5, template)[0]
        result["sculpted_mm"] = max_error_mm(head, reference, 1, range(0, 30, 3))
        result["count"] = len(reference)
        result["after_bake"] = user_setup()
        bpy.ops.meshtalk.rebake()
        bpy.context.scene.meshtalk.layout = "EXACT"
        bpy.ops.meshtalk.rebake()
        result["after_rebake"] = user_setup()
        result["mt_curves"] = sum(c.data_path.startswith(bake.KEY_PATH_START)
                                  for c in bake._existing_fcurves(head.data.shape_keys)[1])
        result["mt_keys"] = sum(k.name.startswith("MT_") for k in head.data.shape_keys.key_blocks)
        bpy.ops.meshtalk.remove_animation()
        result["after_removal"] = user_setup()
        result["removal_left"] = dict(keys=[k.name for k in head.data.shape_keys.key_blocks],
                                      baked=bake.is_baked(head), actions=[a.name for a in bpy.data.actions])
        result["before"] = before
        # a mesh without shape keys gets them back off completely
        plain = add_head()
        bpy.ops.meshtalk.animate_from_speech(audio_path=path, variants=1, seed=5)
        bpy.ops.meshtalk.remove_animation()
        result["plain"] = dict(keys=plain.data.shape_keys is not None, actions=[a.name for a in bpy.data.actions])
    """, user_dir, path=str(audio / "speech.wav"))
    before = result["before"]
    for stage in ("after_bake", "after_rebake", "after_removal"):
        assert result[stage] == before, stage
    assert result["sculpted_mm"] <= COMPACT_TOLERANCE_MM
    assert result["mt_keys"] == result["mt_curves"] == result["count"]  # EXACT after the re-bake: nothing left over
    assert result["removal_left"] == {"keys": ["Basis", "Smile"], "baked": False, "actions": [before["action"]]}
    assert result["plain"] == {"keys": False, "actions": [before["action"]]}


def test_failures_report_one_message_and_leave_the_scene_unchanged(user_dir, audio):
    result = run_in_blender("""
        scene = bpy.context.scene
        messages = {}
        animate_op = bpy.ops.meshtalk.animate_from_speech
        messages["nothing selected"] = error_of(lambda: animate_op(audio_path=folder + "/speech.wav"))
        bpy.ops.object.camera_add()
        messages["not a mesh"] = error_of(lambda: animate_op(audio_path=folder + "/speech.wav"))
        bpy.ops.mesh.primitive_cube_add()
        messages["wrong topology"] = error_of(lambda: animate_op(audio_path=folder + "/speech.wav"))
        head = add_head()
        bpy.ops.meshtalk.animate_from_speech(audio_path=folder + "/speech.wav", seed=1)
        for strip in bake._strips_all(scene):  # the file's strip stays, but is not the audio source
            strip.select = False
        if scene.sequence_editor:
            scene.sequence_editor.active_strip = None
        before = snapshot()
        for name in ("missing", "corrupt", "empty", "silent", "no_samples"):
            messages[name] = error_of(lambda: animate_op(audio_path=f"{folder}/{name}.wav"))
        scene.meshtalk.audio_source = "STRIP"
        messages["no strip"] = error_of(lambda: animate_op())
        messages["no variant 7"] = error_of(lambda: bpy.ops.meshtalk.choose_variant(variant=7))
        # Esc in the UI: the modal operator's worker thread, with its cancel flag set, stops the
        # model at its next progress report and hands back the message
        from types import SimpleNamespace
        import queue, threading
        worker = SimpleNamespace(_cancel=threading.Event(), _results=queue.SimpleQueue(),
                                 _request=bake.prepare_animation(bpy.context, head, folder + "/speech.wav", seed=2))
        worker._cancel.set()
        thread = threading.Thread(target=operators._ModelOperator._work, args=(worker,))
        thread.start()
        thread.join()
        kind, messages["cancelled"] = worker._results.get_nowait()
        result["cancel_kind"] = kind
        result["unchanged"] = snapshot() == before
        result["panels"] = draw_panels()
        result["messages"] = messages
        other = add_head()
        messages["not baked"] = error_of(lambda: bpy.ops.meshtalk.reroll_upper_face())
    """, user_dir, folder=str(audio))
    messages = result["messages"]
    assert result["unchanged"] and result["cancel_kind"] == "error"
    assert result["panels"] == ["MESHTALK_PT_main", "MESHTALK_PT_variants"]
    expected = {
        "nothing selected": "No mesh selected", "not a mesh": "not a mesh", "wrong topology": "Surface Deform",
        "missing": "not found", "corrupt": "Could not read", "empty": "0 bytes", "silent": "audio is silent",
        "no_samples": "no audio samples", "no strip": "No sound strip", "no variant 7": "Variant 7 does not exist",
        "cancelled": "cancelled", "not baked": "Animate from Speech first",
    }
    for case, phrase in expected.items():
        assert messages.get(case) and phrase in messages[case], (case, messages.get(case))
        assert messages[case].count("\n") <= 1, (case, messages[case])  # one message, no traceback


def test_missing_weights_is_one_clear_error(user_dir, audio, tmp_path):
    """The installed extension without weights/meshtalk.pt (its own user folder, sharing the
    installed wheels) reports what to do and changes nothing."""
    installed = user_dir / "extensions" / "user_default" / "meshtalk"
    copy = tmp_path / "extensions" / "user_default" / "meshtalk"
    shutil.copytree(installed, copy, ignore=shutil.ignore_patterns("meshtalk.pt"))
    (tmp_path / "extensions" / ".local").symlink_to(user_dir / "extensions" / ".local")
    result = run_in_blender("""
        head = add_head()
        before = snapshot()
        result["message"] = error_of(lambda: bpy.ops.meshtalk.animate_from_speech(audio_path=path))
        result["unchanged"] = snapshot() == before
    """, tmp_path, path=str(audio / "speech.wav"))
    assert "weights" in result["message"] and "reinstall" in result["message"]
    assert result["unchanged"]
