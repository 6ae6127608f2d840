"""Run code in a fresh Python process with the real PyPI bpy on an isolated Blender user folder.

Shared by the Blender tests: install a built extension zip once, then run each check as its own
process on that folder, as a user's Blender would start."""

import json
import os
import subprocess
import sys

MODULE = "bl_ext.user_default.meshtalk"
TIMEOUT_S = 600


def run_bpy(code: str, user_dir) -> subprocess.CompletedProcess:
    """Run `code` with BLENDER_USER_RESOURCES=user_dir; returns the finished process (text output)."""
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user_dir)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def install_extension(zip_path, user_dir):
    """Install the zip into user_dir (then disable it: each check enables it in its own process)."""
    done = run_bpy(f"import bpy; bpy.ops.extensions.package_install_files(filepath={str(zip_path)!r}, "
                   f"repo='user_default', enable_on_install=True); "
                   f"bpy.ops.preferences.addon_disable(module={MODULE!r})", user_dir)
    assert done.returncode == 0 and (user_dir / "extensions" / "user_default" / "meshtalk").is_dir(), \
        done.stdout[-3000:] + done.stderr[-3000:]
    return user_dir


def run_for_result(code: str, user_dir) -> dict:
    """Run `code`, which prints 'RESULT' + json.dumps(result) last; returns that result."""
    done = run_bpy(code, user_dir)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])
