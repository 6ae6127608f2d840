"""`make demo`: the extension end to end in a real Blender (the PyPI bpy module), from scratch.

Builds the extension zip, installs it into a fresh, isolated Blender user folder
(out/demo/blender_user), adds the MeshTalk head to an empty scene, bakes the bundled sample speech
(meshtalk_blender/assets/sample_speech.wav), saves out/demo.blend and renders every frame with
Blender; then writes out/demo_preview.png (a contact sheet of frames across the clip, each
labelled with its frame and time) and out/demo_preview.gif. Prints the time of each step.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import build  # noqa: E402
from model.data.render import contact_sheet, save_gif, save_png  # noqa: E402
from tools.make_sample_speech import TEXT  # noqa: E402

OUT = ROOT / "out"
WORK = OUT / "demo"
SHEET_FRAMES = 8
SHEET_COLUMNS = 4
GIF_SIZE = (160, 160)  # pixels: the GIF of every frame stays a few MB


def main() -> None:
    start = time.perf_counter()
    (zip_path,) = build.build(WORK / "dist")
    print(f"demo: build {time.perf_counter() - start:.1f} s ({zip_path.stat().st_size / 1e6:.0f} MB)", flush=True)
    user = WORK / "blender_user"
    frames_dir = WORK / "frames"
    for folder in (user, frames_dir):
        shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user)}
    subprocess.run([sys.executable, str(ROOT / "tools" / "demo_scene.py"), str(zip_path), str(OUT / "demo.blend"),
                    str(frames_dir)], env=env, check=True)
    info = json.loads((frames_dir / "info.json").read_text())
    frames, fps = info["frames"], info["fps"]
    picks = np.unique(np.linspace(0, len(frames) - 1, SHEET_FRAMES).round().astype(int))
    images = [np.asarray(Image.open(frames_dir / f"{frame:04d}.png").convert("RGB")) for frame in frames]
    labels = [f"frame {frames[i]}  {(frames[i] - frames[0]) / fps:.2f} s" for i in picks]
    sheet = contact_sheet([images[i] for i in picks], labels, columns=SHEET_COLUMNS, title=f'"{TEXT}"')
    save_png(OUT / "demo_preview.png", sheet)
    small = [np.asarray(Image.fromarray(image).resize(GIF_SIZE, Image.LANCZOS)) for image in images]
    save_gif(OUT / "demo_preview.gif", small, fps)
    print(f"demo: {info['vertices']} vertices, {info['shape_keys']} shape keys, {len(frames)} frames at {fps:g} fps, "
          f"rendered with {info['engine']}", flush=True)
    print(f"demo: wrote {OUT / 'demo.blend'} ({(OUT / 'demo.blend').stat().st_size / 1e6:.1f} MB), "
          f"{OUT / 'demo_preview.png'}, {OUT / 'demo_preview.gif'}; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
