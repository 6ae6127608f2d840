"""Blender benchmark of the bake: `python tools/bench_blender.py` (after `make install`).

Writes 10 s and 60 s speech clips (the bundled sample speech repeated, 0.4 s apart), builds and
installs the extension into a fresh Blender (the PyPI bpy module, isolated user folder under
out/bench/), and in that Blender, background mode, CPU, for each clip and layout:
- bake: the time of the `meshtalk.animate_from_speech` call, from the call to the baked animation
  (after a first bake, which also loads the model; the fastest of --repeat bakes);
- playback: per frame of the clip, `scene.frame_set(f)` plus reading the evaluated mesh's vertices;
- the saved .blend's size (uncompressed).
Prints a table; the figures are in out/bench/bench_blender.json.

    python tools/bench_blender.py [--seconds 10 60] [--layouts COMPACT EXACT] [--repeat 3]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import build  # noqa: E402
from model.audio import SAMPLE_RATE, load_audio, write_wav  # noqa: E402

OUT = ROOT / "out" / "bench"
SAMPLE = ROOT / "meshtalk_blender" / "assets" / "sample_speech.wav"
GAP_S = 0.4

# Runs inside Blender: argv = zip, clips JSON, layouts JSON, repeats, output folder; writes bench_blender.json there.
BLENDER_SIDE = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import bpy
    import numpy as np

    zip_path, clips, layouts = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    repeats, out = int(sys.argv[4]), Path(sys.argv[5])
    start = time.perf_counter()
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    results = dict(install_s=time.perf_counter() - start, runs=[])

    def bake(audio, layout):
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.meshtalk.add_head()
        start = time.perf_counter()
        bpy.ops.meshtalk.animate_from_speech(audio_path=audio, layout=layout)
        return bpy.context.active_object, time.perf_counter() - start

    # The first bake in a Blender session also imports torch and loads the weights.
    results["first_bake_s"] = bake(clips[0][1], layouts[0])[1]
    for seconds, audio in clips:
        for layout in layouts:
            bakes = [bake(audio, layout) for _ in range(repeats)]
            head, bake_s = bakes[-1][0], min(time_s for _, time_s in bakes)  # the last bake's scene is open
            scene = bpy.context.scene
            (strip,) = scene.sequence_editor.strips  # the speech, as the bake added it
            frames = range(strip.frame_final_start, strip.frame_final_end)
            co = np.empty(3 * len(head.data.vertices), np.float32)
            costs = []
            for frame in frames:
                start = time.perf_counter()
                scene.frame_set(frame)
                head.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.vertices.foreach_get("co", co)
                costs.append(time.perf_counter() - start)
            blend = out / f"bench_{seconds}s_{layout.lower()}.blend"
            start = time.perf_counter()
            bpy.ops.wm.save_as_mainfile(filepath=str(blend))
            save_s = time.perf_counter() - start
            results["runs"].append(dict(
                seconds=seconds, layout=layout, frames=len(frames), bake_s=bake_s,
                shape_keys=len(head.data.shape_keys.key_blocks), playback_ms_mean=1000 * float(np.mean(costs)),
                playback_ms_median=1000 * float(np.median(costs)), save_s=save_s,
                blend_mb=blend.stat().st_size / 1e6))
            blend.unlink()
    (out / "bench_blender.json").write_text(json.dumps(results, indent=1))
""")


def speech_clip(seconds: float, path: Path) -> Path:
    """The sample speech repeated with GAP_S pauses, cut to `seconds`, as a 16 kHz WAV."""
    speech = load_audio(SAMPLE)
    unit = np.concatenate([speech, np.zeros(int(GAP_S * SAMPLE_RATE))])
    total = int(seconds * SAMPLE_RATE)
    write_wav(path, np.tile(unit, -(-total // len(unit)))[:total])
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, nargs="+", default=[10, 60])
    parser.add_argument("--layouts", nargs="+", choices=("COMPACT", "EXACT"), default=["COMPACT", "EXACT"])
    parser.add_argument("--repeat", type=int, default=1, help="bakes per clip and layout; the fastest counts")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    clips = [(s, str(speech_clip(s, OUT / f"speech_{s}s.wav"))) for s in args.seconds]
    start = time.perf_counter()
    (zip_path,) = build.build(OUT / "dist")
    print(f"build {time.perf_counter() - start:.1f} s", flush=True)
    user = OUT / "blender_user"
    shutil.rmtree(user, ignore_errors=True)
    command = [sys.executable, "-c", BLENDER_SIDE, str(zip_path), json.dumps(clips), json.dumps(args.layouts),
               str(args.repeat), str(OUT)]
    subprocess.run(command, env={**os.environ, "BLENDER_USER_RESOURCES": str(user)}, check=True)
    results = json.loads((OUT / "bench_blender.json").read_text())
    print(f"\nCPU, background mode. install {results['install_s']:.1f} s (torch wheel included); first bake in "
          f"the session {results['first_bake_s']:.1f} s ({args.seconds[0]} s, {args.layouts[0]}, loads the model)\n")
    print("| speech | layout | frames | bake s | shape keys | playback ms/frame (mean, median) | .blend MB | save s |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results["runs"]:
        print(f"| {r['seconds']} s | {r['layout']} | {r['frames']} | {r['bake_s']:.1f} | {r['shape_keys']} | "
              f"{r['playback_ms_mean']:.2f}, {r['playback_ms_median']:.2f} | {r['blend_mb']:.1f} | {r['save_s']:.2f} |")


if __name__ == "__main__":
    main()
