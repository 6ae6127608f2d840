"""Build the installable extension zip: `python build.py` -> dist/meshtalk-<version>.zip.

Stages `meshtalk_blender/` as the package root, the runtime part of `model/` (everything but the
corpus tools in `model/data/`) as its subpackage `model`, `weights/` and the manifest, then runs
Blender's own extension builder and validator (`blender_ext.py`, shipped inside the `bpy` wheel).
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "data")


def blender_ext() -> Path:
    """Path of Blender's extension command-line tool inside the installed bpy package."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("build.py needs the bpy package (pip install -r requirements.txt) for Blender's validator")
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        sys.exit("blender_ext.py not found inside the bpy package")
    return found[-1]


def stage(staging: Path) -> None:
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(ROOT / "meshtalk_blender", staging, ignore=IGNORE)
    shutil.copytree(ROOT / "model", staging / "model", ignore=IGNORE)
    shutil.copytree(ROOT / "weights", staging / "weights", ignore=IGNORE)
    shutil.copy2(ROOT / "blender_manifest.toml", staging / "blender_manifest.toml")


def build(out_dir: Path, split_platforms: bool = False) -> list[Path]:
    staging = ROOT / "build" / "meshtalk"
    stage(staging)
    out_dir.mkdir(parents=True, exist_ok=True)
    tool = [sys.executable, str(blender_ext())]
    before = set(out_dir.glob("*.zip"))
    command = [*tool, "build", "--source-dir", str(staging), "--output-dir", str(out_dir)]
    subprocess.run(command + (["--split-platforms"] if split_platforms else []), check=True)
    zips = sorted(set(out_dir.glob("*.zip")) - before) or sorted(out_dir.glob("meshtalk-*.zip"))
    for path in zips:
        subprocess.run([*tool, "validate", str(path)], check=True)
    return zips


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--split-platforms", action="store_true", help="one zip per platform")
    args = parser.parse_args(argv)
    for path in build(args.out, args.split_platforms):
        print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
