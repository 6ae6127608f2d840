"""Build the installable extension zip: `python build.py` -> dist/meshtalk-<version>-<platform>.zip.

Stages `meshtalk_blender/` as the package root, the runtime part of `model/` (everything but the
corpus tools in `model/data/`) as its subpackage `model`, `weights/` and the manifest, plus wheels
for every runtime dependency: torch (CPU build, the version pinned in requirements.txt) and the
packages its wheel metadata requires, for CPython 3.11 (Blender 4.2-5.0) on the target platform.
numpy is left out on purpose: Blender bundles it, and a bundled copy would shadow Blender's.
Each wheel's licence must be GPL-3-compatible; the build prints them and writes `wheels/LICENSES.txt`.
The staged manifest (never the source one) gets `wheels = [...]` and `platforms = [...]`, and
Blender's own extension builder and validator (`blender_ext.py`, shipped inside the `bpy` wheel)
make and check one zip per platform (`--split-platforms`).

    python build.py                          # this machine's platform, e.g. linux-x64
    python build.py --platform windows-x64 --platform macos-arm64
    python build.py --no-wheels              # fast development build: dist/meshtalk-<version>.zip

Downloaded wheels are cached in build/wheels/<platform>/; delete that folder to fetch again.
"""

import argparse
import os
import platform as host
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parent
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "data")
WHEEL_CACHE = ROOT / "build" / "wheels"
PYTHON = "3.11"  # Blender 4.2-5.0 embed CPython 3.11

# Blender platform -> pip wheel platform tags, environment-marker values, torch local version.
# Linux needs torch's CPU build (PyPI's Linux torch is the CUDA one, gigabytes of nvidia wheels);
# torch 2.13 for macOS needs macOS 14 or newer.
PLATFORMS = {
    "linux-x64": {
        "tags": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
        "markers": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                    "os_name": "posix"},
        "torch_local": "+cpu",
    },
    "windows-x64": {
        "tags": ["win_amd64"],
        "markers": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64",
                    "os_name": "nt"},
        "torch_local": "",
    },
    "macos-arm64": {
        "tags": ["macosx_14_0_arm64"],
        "markers": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64",
                    "os_name": "posix"},
        "torch_local": "",
    },
}
NOT_BUNDLED = {"numpy"}  # Blender ships numpy; the extension uses Blender's
CUDA_PACKAGES = re.compile(r"nvidia-|cuda-|triton$")

# SPDX licences (and the LLVM exception) that may be combined with the extension's GPL-3.0-or-later (FSF's list).
GPL3_COMPATIBLE = {"Apache-2.0", "LLVM-exception", "BSD-2-Clause", "BSD-3-Clause", "BSL-1.0", "MIT",
                   "PSF-2.0", "Unlicense", "ISC", "MPL-2.0", "Zlib", "0BSD"}
# Wheels whose metadata has no SPDX License-Expression, reviewed by reading their LICENSE file.
REVIEWED_LICENSES = {
    "jinja2": "BSD-3-Clause",  # classifier "BSD License" only
    "mpmath": "BSD-3-Clause",  # 1.3.0 (sympy needs < 1.4): "License: BSD"
    "sympy": "BSD-3-Clause",  # "License: BSD"
}


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


def host_platform() -> str:
    """This machine's Blender platform name, e.g. "linux-x64"."""
    system = {"Darwin": "macos"}.get(host.system(), host.system().lower())
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(host.machine().lower(), host.machine().lower())
    name = f"{system}-{machine}"
    if name not in PLATFORMS:
        sys.exit(f"no wheels known for this machine ({name}); pass --platform ({', '.join(PLATFORMS)}) or --no-wheels")
    return name


def torch_requirement(target: str) -> Requirement:
    """torch pinned as in requirements.txt, with the CPU build's local version where one is needed."""
    pins = re.search(r"^torch==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    if pins is None:
        sys.exit("requirements.txt must pin torch (torch==X.Y.Z)")
    return Requirement(f"torch=={pins[1]}{PLATFORMS[target]['torch_local']}")


def wheel_metadata(wheel: Path):
    """The METADATA headers of a wheel (an email.message.Message)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return HeaderParser().parsestr(archive.read(name).decode("utf-8"))


def fetch(name: str, specifier: SpecifierSet, target: str) -> Path:
    """Newest cached wheel of `name` matching `specifier` for `target`, downloaded with pip if none is."""
    cache = WHEEL_CACHE / target
    cache.mkdir(parents=True, exist_ok=True)

    def cached() -> list[tuple[Version, Path]]:
        found = [(parse_wheel_filename(w.name)[:2], w) for w in cache.glob("*.whl")]
        return sorted((version, w) for (wheel_name, version), w in found
                      if wheel_name == name and specifier.contains(version, prereleases=True))

    if not cached():
        with tempfile.TemporaryDirectory(dir=cache) as download:  # the cache only ever sees whole files
            tags = [arg for tag in PLATFORMS[target]["tags"] for arg in ("--platform", tag)]
            command = [sys.executable, "-m", "pip", "download", f"{name}{specifier}", "--no-deps",
                       "--only-binary=:all:", *tags, "--python-version", PYTHON, "--implementation", "cp",
                       "--abi", "cp" + PYTHON.replace(".", ""), "--dest", download, "--quiet"]
            done = subprocess.run(command, check=False, capture_output=True, text=True)
            if done.returncode != 0:
                hint = ("\nLinux needs torch's CPU build: put its wheel in a pip find-links folder or add "
                        "https://download.pytorch.org/whl/cpu as an extra index (pip.conf or PIP_EXTRA_INDEX_URL)"
                        if name == "torch" and target.startswith("linux") else "")
                sys.exit(f"could not download a {target} wheel of {name}{specifier} for CPython {PYTHON}:\n"
                         f"{done.stderr.strip()}{hint}")
            for wheel in Path(download).glob("*.whl"):
                os.replace(wheel, cache / wheel.name)
    if not cached():
        sys.exit(f"pip downloaded no wheel of {name}{specifier} for {target}")
    return cached()[-1][1]


def resolve(target: str) -> list[Path]:
    """Wheels of torch and, recursively, its requirements for `target` (markers evaluated for it)."""
    environment = {**PLATFORMS[target]["markers"], "python_version": PYTHON, "python_full_version": PYTHON + ".0",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    constraints: dict[str, SpecifierSet] = {}
    chosen: dict[str, Path] = {}
    pending = [torch_requirement(target)]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in NOT_BUNDLED or (requirement.marker and not requirement.marker.evaluate(environment)):
            continue
        if CUDA_PACKAGES.match(name):
            sys.exit(f"the {target} torch wheel requires {name}: that is a CUDA build, the extension needs the CPU one")
        constraints[name] = constraints.get(name, SpecifierSet()) & requirement.specifier
        if name in chosen and constraints[name].contains(parse_wheel_filename(chosen[name].name)[1], prereleases=True):
            continue
        chosen[name] = fetch(name, constraints[name], target)
        pending += [Requirement(r) for r in wheel_metadata(chosen[name]).get_all("Requires-Dist") or []]
    return sorted(chosen.values())


def license_of(wheel: Path) -> str:
    """The wheel's SPDX licence expression; exits if it is unknown or not GPL-3-compatible."""
    name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
    expression = wheel_metadata(wheel).get("License-Expression") or REVIEWED_LICENSES.get(name)
    if expression is None:
        sys.exit(f"{wheel.name} declares no SPDX licence: read its LICENSE file and add it to REVIEWED_LICENSES")
    unknown = set(re.findall(r"[\w.+-]+", expression)) - {"AND", "OR", "WITH"} - GPL3_COMPATIBLE
    if unknown:
        sys.exit(f"{wheel.name} is licensed {expression}: {', '.join(sorted(unknown))} "
                 "not known to be GPL-3-compatible")
    return expression


def stage(staging: Path, wheels: list[Path], platforms: list[str]) -> None:
    """Copy the extension's files into `staging`; list `wheels` and `platforms` in its manifest."""
    shutil.copytree(ROOT / "meshtalk_blender", staging, ignore=IGNORE)
    shutil.copytree(ROOT / "model", staging / "model", ignore=IGNORE)
    shutil.copytree(ROOT / "weights", staging / "weights", ignore=IGNORE)
    manifest = (ROOT / "blender_manifest.toml").read_text()
    if wheels:
        (staging / "wheels").mkdir()
        table = {}  # one row per name and version: platform variants of a wheel share it
        for wheel in wheels:
            shutil.copy2(wheel, staging / "wheels" / wheel.name)
            name, version = parse_wheel_filename(wheel.name)[:2]
            table[f"{name:<20} {version!s:<14} {license_of(wheel)}"] = None
        (staging / "wheels" / "LICENSES.txt").write_text("\n".join(table) + "\n")
        print("bundled wheels (GPL-3-compatible licences):", *table, sep="\n  ")
        listing = "".join(f'    "./wheels/{wheel.name}",\n' for wheel in wheels)
        generated = f"wheels = [\n{listing}]\nplatforms = {platforms!r}\n\n".replace("'", '"')
        first_table = re.search(r"^\[", manifest, re.MULTILINE)  # top-level keys must precede the first [table]
        at = first_table.start() if first_table else len(manifest)
        manifest = manifest[:at] + generated + manifest[at:]
    (staging / "blender_manifest.toml").write_text(manifest)


def build(out_dir: Path, platforms: list[str] | None = None, wheels: bool = True) -> list[Path]:
    """Build and validate the extension; returns the zip paths, one per platform (one in all without wheels).

    platforms: Blender platform names (keys of PLATFORMS); default this machine's.
    wheels: False makes a platform-independent zip without dependencies (development only).
    """
    platforms = (platforms or [host_platform()]) if wheels else []
    for name in platforms:
        if name not in PLATFORMS:
            sys.exit(f"unknown platform {name!r}: choose from {', '.join(PLATFORMS)}")
    by_name = {wheel.name: wheel for name in platforms for wheel in resolve(name)}  # pure wheels once
    bundled = [by_name[name] for name in sorted(by_name)]
    out_dir.mkdir(parents=True, exist_ok=True)
    (ROOT / "build").mkdir(exist_ok=True)
    tool = [sys.executable, str(blender_ext())]
    with tempfile.TemporaryDirectory(dir=ROOT / "build", prefix="stage-") as temp:
        staging = Path(temp) / "meshtalk"
        stage(staging, bundled, platforms)
        command = [*tool, "build", "--source-dir", str(staging), "--output-dir", str(out_dir)]
        subprocess.run(command + (["--split-platforms"] if platforms else []), check=True)
        manifest = tomllib.loads((staging / "blender_manifest.toml").read_text())
    stem = f"{manifest['id']}-{manifest['version']}"
    zips = [out_dir / f"{stem}-{name.replace('-', '_')}.zip" for name in platforms] or [out_dir / f"{stem}.zip"]
    for path in zips:
        subprocess.run([*tool, "validate", str(path)], check=True)
    return zips


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--platform", action="append", choices=list(PLATFORMS), dest="platforms",
                        help="Blender platform to bundle wheels for, one zip each (repeatable; default: this one)")
    parser.add_argument("--no-wheels", action="store_true", help="development build without dependency wheels")
    args = parser.parse_args(argv)
    for path in build(args.out, args.platforms, wheels=not args.no_wheels):
        print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
