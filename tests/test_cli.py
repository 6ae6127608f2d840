"""The `blender -c meshtalk bake` command and the bundled sample speech.

The PyPI bpy module has no `blender` executable, so the command's function (`cli.main`, what
`bpy.utils.register_cli_command` calls with the arguments after `-c meshtalk`) is called in a real
bpy process with the extension installed (a build without wheels: torch comes from this Python),
and its exit statuses, stderr lines and saved .blend files are checked.
"""

import sys
import textwrap
import wave

import numpy as np
import pytest

import build
from blender_process import MODULE, install_extension, run_for_result
from model.audio import write_wav

SAMPLE = build.ROOT / "meshtalk_blender" / "assets" / "sample_speech.wav"

PRELUDE = f"""
import contextlib, io, json, os
import bpy
bpy.ops.preferences.addon_enable(module={MODULE!r})
from {MODULE} import bake, cli
result = {{}}

def run(*argv):
    '''(exit status, stderr lines) of `blender -c meshtalk ARGV`.'''
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(list(argv))
    return status, err.getvalue().splitlines()
"""


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A Blender user folder with a development build of the extension installed."""
    (zip_path,) = build.build(tmp_path_factory.mktemp("dist"), wheels=False)
    return install_extension(zip_path, tmp_path_factory.mktemp("blender-user"))


def run_in_blender(script: str, user_dir, **values) -> dict:
    """Run PRELUDE, `values` as variables, then `script` in a fresh bpy; returns its `result`."""
    assigns = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    return run_for_result(PRELUDE + assigns + textwrap.dedent(script) + "\nprint('RESULT' + json.dumps(result))\n",
                          user_dir)


def test_sample_speech_is_reproducible_and_small(tmp_path):
    pytest.importorskip("espeakng_loader")
    sys.path.insert(0, str(build.ROOT / "tools"))
    from make_sample_speech import write_sample_speech

    assert write_sample_speech(tmp_path / "speech.wav").read_bytes() == SAMPLE.read_bytes()
    with wave.open(str(SAMPLE)) as sample:
        assert (sample.getframerate(), sample.getnchannels(), sample.getsampwidth()) == (16000, 1, 2)
        assert 6.0 <= sample.getnframes() / 16000 <= 8.0
    assert SAMPLE.stat().st_size < 300_000


def test_bad_arguments_and_unsaved_file(user_dir, tmp_path):
    result = run_in_blender("""
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.meshtalk.add_head()
        for name, argv in {
            "no command": [], "unknown command": ["render"], "no audio": ["bake", "--object", "MeshTalk Head"],
            "zero variants": ["bake", "--object", "x", "--audio", "a.wav", "--variants", "0"],
            "bad layout": ["bake", "--object", "x", "--audio", "a.wav", "--layout", "dense"],
            "not a .blend": ["bake", "--object", "x", "--audio", "a.wav", "--out", "x.txt"],
            "unsaved": ["bake", "--object", "MeshTalk Head", "--audio", sample],
        }.items():
            result[name] = run(*argv)
        with contextlib.redirect_stdout(io.StringIO()) as out:
            result["help"] = run("bake", "--help")[0], out.getvalue()
    """, user_dir, sample=str(SAMPLE))
    for name in ("no command", "unknown command", "no audio", "zero variants", "bad layout", "not a .blend"):
        status, lines = result[name]
        assert status == 2 and len(lines) == 1 and lines[0].startswith("meshtalk: "), (name, result[name])
    assert result["unsaved"][0] == 6 and "never saved" in result["unsaved"][1][0]
    assert result["help"][0] == 0 and "--layout" in result["help"][1]


def test_bake_errors_then_bake_and_save(user_dir, tmp_path):
    write_wav(tmp_path / "silent.wav", np.zeros(16000))
    scene = tmp_path / "scene.blend"
    result = run_in_blender("""
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.meshtalk.add_head()
        bpy.ops.mesh.primitive_cube_add()
        bpy.context.scene.collection.objects.link(bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera")))
        bpy.ops.wm.save_as_mainfile(filepath=scene)
        saved = os.path.getmtime(scene)
        head = ["--object", "MeshTalk Head"]
        for name, argv in {
            "missing object": ["--object", "Nobody", "--audio", sample],
            "not a mesh": ["--object", "Camera", "--audio", sample],
            "other topology": ["--object", "Cube", "--audio", sample],
            "missing audio": head + ["--audio", os.path.join(folder, "nothing.wav")],
            "silent audio": head + ["--audio", os.path.join(folder, "silent.wav")],
        }.items():
            result[name] = run("bake", *argv)
        weights = bake.DEFAULT_CHECKPOINT
        bake.DEFAULT_CHECKPOINT = weights.with_name("missing.pt")
        result["missing weights"] = run("bake", *head, "--audio", sample)
        bake.DEFAULT_CHECKPOINT = weights
        result["unchanged"] = os.path.getmtime(scene) == saved

        out = os.path.join(folder, "baked.blend")
        result["to out"] = run("bake", *head, "--audio", sample, "--start-frame", "10", "--out", out)
        bpy.ops.wm.open_mainfile(filepath=out)
        mesh = bpy.data.objects["MeshTalk Head"].data
        result["keys"] = [k.name for k in mesh.shape_keys.key_blocks]
        result["strips"] = [(s.sound.filepath, s.frame_start) for s in bake._strips_all(bpy.context.scene)]
        try:  # PyPI's bpy 4.2 is built without audio: no `aud`, no sound strips
            import aud
            result["plays audio"] = True
        except ImportError:
            result["plays audio"] = False
        result["start"] = bpy.data.objects["MeshTalk Head"].meshtalk.start_frame

        bpy.ops.wm.open_mainfile(filepath=scene)
        result["over open file"] = run("bake", *head, "--audio", sample, "--layout", "exact", "--variants", "2")
        bpy.ops.wm.open_mainfile(filepath=scene)
        head_object = bpy.data.objects["MeshTalk Head"]
        result["saved keys"] = len(head_object.data.shape_keys.key_blocks)
        result["saved state"] = [head_object.meshtalk.layout, head_object.meshtalk.codes_shape[0]]
    """, user_dir, sample=str(SAMPLE), folder=str(tmp_path), scene=str(scene))
    expected = {"missing object": 3, "not a mesh": 3, "other topology": 3, "missing audio": 4, "silent audio": 4,
                "missing weights": 5}
    for name, status in expected.items():
        assert result[name][0] == status and len(result[name][1]) == 1, (name, result[name])
    assert "Nobody" in result["missing object"][1][0] and "vertices" in result["other topology"][1][0]
    assert result["unchanged"]  # failures never save
    assert result["to out"] == [0, []]
    assert result["keys"][0] == "Basis" and len(result["keys"]) > 1
    assert all(name.startswith("MT_basis_") for name in result["keys"][1:])
    assert result["strips"] == ([[str(SAMPLE), 10]] if result["plays audio"] else []) and result["start"] == 10
    assert result["over open file"] == [0, []]
    assert result["saved state"] == ["EXACT", 2] and result["saved keys"] > 100  # one key per frame
