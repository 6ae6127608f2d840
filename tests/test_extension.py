"""The built extension zip installs offline into the real PyPI bpy and its operators work.

Each check runs in a fresh Python process with an isolated Blender user folder, as a user's
Blender would start: install the zip, enable it, use it."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import build
from model.template import load_template


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory):
    (path,) = build.build(tmp_path_factory.mktemp("dist"))
    return path


def run_in_blender(script: str, user_dir, extension_zip) -> dict:
    """Install the zip into a fresh bpy, run `script` (which sets `result`), return `result`."""
    prelude = f"""
        import json, bpy
        bpy.ops.extensions.package_install_files(
            filepath={str(extension_zip)!r}, repo="user_default", enable_on_install=True)
        result = {{}}
    """
    code = textwrap.dedent(prelude) + textwrap.dedent(script) + "\nprint('RESULT' + json.dumps(result))\n"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user_dir)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


def test_zip_contains_runtime_only(extension_zip):
    import zipfile

    names = zipfile.ZipFile(extension_zip).namelist()
    assert {"blender_manifest.toml", "__init__.py", "model/template.py", "weights/template.npz"} <= set(names)
    assert not any(n.startswith("model/data/") for n in names)  # corpus tools stay out of Blender


def test_add_head_installs_and_builds_the_template(tmp_path, extension_zip):
    result = run_in_blender("""
        import numpy as np
        for obj in list(bpy.data.objects):
            bpy.data.objects.remove(obj)
        bpy.ops.meshtalk.add_head()
        head = bpy.context.view_layer.objects.active
        co = np.zeros(len(head.data.vertices) * 3, np.float32)
        head.data.vertices.foreach_get("co", co)
        uv = np.zeros(len(head.data.loops) * 2, np.float32)
        head.data.uv_layers["UVMap"].data.foreach_get("uv", uv)
        result.update(name=head.name, vertices=co.tolist()[:30], count=len(head.data.vertices),
                      polygons=len(head.data.polygons), uv=uv.tolist()[:12],
                      children=sorted(c.name for c in head.children))
    """, tmp_path, extension_zip)
    template = load_template()
    assert result["count"] == template.num_vertices and result["polygons"] == len(template.faces)
    assert np.allclose(result["vertices"], template.vertices.reshape(-1)[:30], atol=1e-6)
    assert np.allclose(result["uv"], template.uvs.reshape(-1)[:12], atol=1e-6)
    assert result["children"] == ["MeshTalk Head Eyes", "MeshTalk Head Teeth"]
