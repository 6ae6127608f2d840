"""build.py bundles torch (CPU) and its requirements as wheels, and the zip installs into Blender.

One real build per test module (it copies the ~190 MB torch wheel); the resolver's rules are
checked offline against small fake wheels."""

import os
import subprocess
import sys
import textwrap
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

import build


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(zip path, its manifest as a dict, {canonical name: wheel file name}) of a default build."""
    (path,) = build.build(tmp_path_factory.mktemp("dist"))
    with zipfile.ZipFile(path) as archive:
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        wheels = {canonicalize_name(parse_wheel_filename(n.split("/")[-1])[0]): n.split("/")[-1]
                  for n in archive.namelist() if n.startswith("wheels/") and n.endswith(".whl")}
    return path, manifest, wheels


def test_manifest_lists_every_bundled_wheel(built):
    path, manifest, wheels = built
    assert sorted(manifest["wheels"]) == sorted(f"./wheels/{name}" for name in wheels.values())
    assert manifest["platforms"] == [build.host_platform()]
    assert path.name.endswith(build.host_platform().replace("-", "_") + ".zip")


def test_bundles_torch_cpu_and_its_requirements_only(built, tmp_path):
    path, _, wheels = built
    torch_wheel = wheels["torch"]
    assert "+cpu" in torch_wheel and "cp311" in torch_wheel
    with zipfile.ZipFile(path) as archive:
        archive.extract(f"wheels/{torch_wheel}", tmp_path)
    environment = {"python_version": "3.11", "extra": ""}
    required = {canonicalize_name(r.name) for r in map(Requirement, build.wheel_metadata(
                tmp_path / "wheels" / torch_wheel).get_all("Requires-Dist"))
                if not r.marker or r.marker.evaluate(environment)}
    assert required - {"numpy"} <= set(wheels)
    assert {"sympy", "mpmath", "jinja2", "markupsafe", "typing-extensions"} <= set(wheels)
    assert not {"numpy", "librosa", "numba"} & set(wheels)
    assert not [name for name in wheels if build.CUDA_PACKAGES.match(name)]


def test_licences_are_recorded_for_every_wheel(built):
    path, _, wheels = built
    with zipfile.ZipFile(path) as archive:
        table = archive.read("wheels/LICENSES.txt").decode().splitlines()
    assert sorted(canonicalize_name(line.split()[0]) for line in table) == sorted(wheels)


def test_blender_validates_the_zip(built):
    done = subprocess.run([sys.executable, str(build.blender_ext()), "validate", str(built[0])],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_blender_imports_the_bundled_torch(built, tmp_path):
    """Install, then start Blender again: torch comes from the extension's private site-packages."""
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path)}
    install = f"""
        import bpy
        bpy.ops.extensions.package_install_files(filepath={str(built[0])!r}, repo="user_default",
                                                 enable_on_install=True)
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(install)], env=env, check=True,
                   capture_output=True, timeout=300)
    site = tmp_path / "extensions" / ".local" / "lib" / "python3.11" / "site-packages"
    use = "import bpy, torch; print(torch.__version__, torch.__file__, float(torch.ones(3) @ torch.ones(3)))"
    done = subprocess.run([sys.executable, "-c", use], env=env, check=False, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    version, location, dot = done.stdout.split()[-3:]
    assert version.endswith("+cpu") and location.startswith(str(site)) and float(dot) == 3.0


def test_no_wheels_build_is_platform_independent(tmp_path):
    (path,) = build.build(tmp_path, wheels=False)
    with zipfile.ZipFile(path) as archive:
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        assert not [n for n in archive.namelist() if n.startswith("wheels/")]
    assert path.name == f"meshtalk-{manifest['version']}.zip"
    assert "wheels" not in manifest and "platforms" not in manifest


def fake_wheel(folder, filename: str, requires: list[str], licence: str = "MIT") -> None:
    """A wheel holding only METADATA, enough for the resolver and the licence check."""
    name, version = parse_wheel_filename(filename)[:2]
    folder.mkdir(parents=True, exist_ok=True)
    metadata = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}",
                f"License-Expression: {licence}", *(f"Requires-Dist: {r}" for r in requires)]
    with zipfile.ZipFile(folder / filename, "w") as archive:
        archive.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", "\n".join(metadata) + "\n")


def test_resolver_evaluates_markers_for_the_target(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "WHEEL_CACHE", tmp_path)
    torch_version = str(build.torch_requirement("windows-x64").specifier).removeprefix("==")
    cache = tmp_path / "windows-x64"
    fake_wheel(cache, f"torch-{torch_version}-cp311-cp311-win_amd64.whl",
               ["sympy>=1.13", "numpy", 'nvidia-nccl-cu13==2.29.7; platform_system == "Linux"',
                'colorama; sys_platform == "win32"', 'pyyaml; extra == "pyyaml"'])
    fake_wheel(cache, "sympy-1.14.0-py3-none-any.whl", ["mpmath<1.4,>=1.1.0"])
    fake_wheel(cache, "mpmath-1.4.1-py3-none-any.whl", [])
    fake_wheel(cache, "mpmath-1.3.0-py3-none-any.whl", [])
    fake_wheel(cache, "colorama-0.4.6-py3-none-any.whl", [])
    names = [w.name for w in build.resolve("windows-x64")]
    assert names == ["colorama-0.4.6-py3-none-any.whl", "mpmath-1.3.0-py3-none-any.whl",
                     "sympy-1.14.0-py3-none-any.whl", f"torch-{torch_version}-cp311-cp311-win_amd64.whl"]


def test_resolver_refuses_a_cuda_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "WHEEL_CACHE", tmp_path)
    torch_version = str(build.torch_requirement("linux-x64").specifier).removeprefix("==")
    fake_wheel(tmp_path / "linux-x64", f"torch-{torch_version}-cp311-cp311-manylinux_2_28_x86_64.whl",
               ['nvidia-nccl-cu13==2.29.7; platform_system == "Linux"'])
    with pytest.raises(SystemExit, match="CUDA build"):
        build.resolve("linux-x64")


def test_licence_check(tmp_path):
    fake_wheel(tmp_path, "ok-1.0-py3-none-any.whl", [], "Apache-2.0 WITH LLVM-exception OR MIT")
    fake_wheel(tmp_path, "gpl2only-1.0-py3-none-any.whl", [], "GPL-2.0-only")
    assert build.license_of(tmp_path / "ok-1.0-py3-none-any.whl") == "Apache-2.0 WITH LLVM-exception OR MIT"
    with pytest.raises(SystemExit, match="GPL-2.0-only"):
        build.license_of(tmp_path / "gpl2only-1.0-py3-none-any.whl")
