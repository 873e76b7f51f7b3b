"""RecWorld installs under one import namespace, ``recworld``: nothing named ``simulator``,
``agents`` or ``recommenders`` at the top level of site-packages, where other libraries
may own those names.

The slow test builds a wheel of RecWorld, installs it into a fresh virtual environment
beside a package that owns top-level ``recommenders`` and ``agents``, and checks that the
two live side by side and that uninstalling RecWorld leaves the other package alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("simulator", "agents", "recommenders")        # source folders, installed as recworld.<name>
#: what a wheel of RecWorld is built from (pyproject.toml names README.md as the readme)
SOURCES = ("pyproject.toml", "README.md", "recworld", *FOLDERS)
DUMMY = "dummy-namespace-owner"
MARKER = "owned by dummy-namespace-owner"


def _clean_env() -> dict:
    """This environment's variables less PYTHONPATH (which would put other copies first)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _run(cmd: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=_clean_env(),
                          timeout=600)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _release(text: str) -> tuple[int, ...]:
    return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in text.split(".")[:2])


def _build_flags(minimum: tuple[int, int]) -> list[str]:
    """``--no-build-isolation`` when this environment can build by itself (setuptools >=
    ``minimum``; wheel too before setuptools 70.1), else [] (pip fetches the backend)."""
    try:
        st = _release(version("setuptools"))
    except PackageNotFoundError:
        return []
    import importlib.util

    if st < minimum or (st < (70, 1) and importlib.util.find_spec("wheel") is None):
        return []
    return ["--no-build-isolation"]


def _pip(python, *args) -> subprocess.CompletedProcess:
    return _run([python, "-m", "pip", "--disable-pip-version-check", "--no-input", *args])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _site_packages(python: Path) -> Path:
    out = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    return Path(out)


def _python_in(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _make_dummy(folder: Path) -> Path:
    """A package that owns the top-level modules ``recommenders`` and ``agents``."""
    (folder / "recommenders").mkdir(parents=True)
    (folder / "agents").mkdir()
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{DUMMY}"
        version = "1.0"

        [tool.setuptools]
        packages = ["recommenders", "agents"]
        """))
    for name in ("recommenders", "agents"):
        (folder / name / "__init__.py").write_text(f'MARKER = "{MARKER}: {name}"\n')
        (folder / name / "core.py").write_text(f'WHO = "{name} of {DUMMY}"\n')
    return folder


def _dummy_files(site: Path) -> dict[Path, str]:
    """The dummy package's files in ``site`` (bytecode caches aside) -> their digests."""
    return {p.relative_to(site): _digest(p) for name in ("recommenders", "agents")
            for p in (site / name).rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def _record(text: str) -> list[str]:
    return [line.split(",")[0] for line in text.splitlines() if line.strip()]


def _link_dependencies(names: tuple[str, ...], into: Path) -> Path:
    """A folder of links to this environment's copies of ``names`` (and their ``.libs``
    folders), for a ``.pth`` file: the fresh environment imports those and nothing else
    from here, without downloading them."""
    import importlib.util

    into.mkdir()
    for name in names:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, f"{name} is not importable here"
        origin = Path(spec.origin)
        src = origin.parent if spec.submodule_search_locations else origin
        (into / src.name).symlink_to(src, target_is_directory=src.is_dir())
        libs = src.parent / f"{name}.libs"
        if libs.is_dir():
            (into / libs.name).symlink_to(libs, target_is_directory=True)
    return into


#: what ``recworld.simulator.protocols`` and ``recworld.simulator.registry`` import outside the standard library
PROTOCOL_DEPS = ("numpy", "pydantic", "pydantic_core", "typing_extensions", "annotated_types",
                 "typing_inspection")


@pytest.mark.slow
def test_wheel_installs_beside_a_package_owning_recommenders_and_agents(tmp_path):
    # 1. a wheel of RecWorld, built from a copy of the sources (a build in place would write
    #    build/ and refresh *.egg-info in the working tree)
    src = tmp_path / "src"
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "runs", "*.pyc")
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=skip)
        else:
            shutil.copy2(p, src / name)
    wheels = tmp_path / "wheels"
    _pip(sys.executable, "wheel", "--no-deps", *_build_flags((77, 0)), "-w", wheels, src)
    dummy_src = _make_dummy(tmp_path / "dummy")
    _pip(sys.executable, "wheel", "--no-deps", *_build_flags((61, 0)), "-w", wheels, dummy_src)
    (rw_wheel,) = wheels.glob("recworld-*.whl")
    (dummy_wheel,) = wheels.glob("dummy_namespace_owner-*.whl")

    # 2. the wheel's RECORD: only recworld/ and its dist-info at the top level
    with zipfile.ZipFile(rw_wheel) as zf:
        names = zf.namelist()
        (record_name,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        dist_info = record_name.split("/")[0]
        listed = _record(zf.read(record_name).decode())
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} == {"recworld", dist_info}
    assert {n.split("/")[0] for n in listed} == {"recworld", dist_info}
    for folder in FOLDERS:                               # the source folders, under recworld
        assert f"recworld/{folder}/__init__.py" in listed
    assert "recworld/simulator/protocols.py" in listed and "recworld/simulator/engine/world.py" in listed
    # package data: the bundled data, the prompts and the run explorer's script travel with the wheel
    assert "recworld/simulator/output/assets/explorer.js" in listed
    assert "recworld/agents/prompts/persona.txt" in listed
    assert "recworld = recworld.simulator.cli:main" in entry_points

    # 3. a fresh environment: the dummy package first, then RecWorld (no dependencies)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    py = _python_in(venv)
    site = _site_packages(py)
    _pip(py, "install", "--no-deps", dummy_wheel)
    dummy_files = _dummy_files(site)
    assert Path("recommenders/__init__.py") in dummy_files and Path("agents/core.py") in dummy_files
    _pip(py, "install", "--no-deps", rw_wheel)

    # 4. the dummy's files are untouched; RecWorld's installed RECORD keeps to recworld/,
    #    its dist-info and the console script
    assert _dummy_files(site) == dummy_files
    installed = _record((site / dist_info / "RECORD").read_text())
    outside = {n for n in installed if n.split("/")[0] not in ("recworld", dist_info)}
    scripts = {n for n in outside if Path(os.path.normpath(site / n)).parent == py.parent}
    assert outside == scripts and {Path(n).stem for n in scripts} == {"recworld"}, outside
    assert (py.parent / "recworld").exists()

    # 5. imports in the fresh environment: the dummy owns the plain names, RecWorld its own.
    #    ``recworld`` itself needs only the standard library (gymnasium is optional at import).
    probe = ("import json, recommenders, agents, recommenders.core, recworld\n"
             "print(json.dumps({'recommenders': recommenders.MARKER, 'agents': agents.MARKER,\n"
             "                  'core': recommenders.core.WHO, 'recworld': recworld.__file__,\n"
             "                  'version': recworld.__version__}))")
    got = json.loads(_run([py, "-c", probe], cwd=tmp_path).stdout)
    assert got["recommenders"] == f"{MARKER}: recommenders" and got["agents"] == f"{MARKER}: agents"
    assert got["core"] == f"recommenders of {DUMMY}"
    assert Path(got["recworld"]).parent == site / "recworld" and got["version"] == version("recworld")
    for folder in FOLDERS:      # empty or lazy __init__ files: importable with no dependency installed
        _run([py, "-c", f"import recworld.{folder}"], cwd=tmp_path)

    #    With numpy and pydantic made importable (linked from this environment, nothing
    #    downloaded), the plug-in contract and the registry load from the installed wheel.
    deps = _link_dependencies(PROTOCOL_DEPS, tmp_path / "deps")
    (site / "zz_linked_deps.pth").write_text(f"{deps}\n")
    probe = ("import json, recworld.simulator, recworld.simulator.protocols as p, recworld.simulator.registry as r\n"
             "print(json.dumps({'simulator': recworld.simulator.__file__, 'protocols': p.__file__,\n"
             "                  'recommenders': r.available('recommenders'), 'brains': r.available('brains')}))")
    got = json.loads(_run([py, "-c", probe], cwd=tmp_path).stdout)
    assert Path(got["simulator"]) == site / "recworld" / "simulator" / "__init__.py"
    assert Path(got["protocols"]) == site / "recworld" / "simulator" / "protocols.py"
    assert got["recommenders"]["popularity"] == "recworld.recommenders.baselines:PopularityRecommender"
    assert got["brains"]["parametric"] == "recworld.agents.parametric:ParametricBrain"
    (site / "zz_linked_deps.pth").unlink()

    # 6. uninstalling RecWorld leaves the dummy package as it was
    _pip(py, "uninstall", "-y", "recworld")
    assert not (site / "recworld").exists() and not (site / dist_info).exists()
    assert not (py.parent / "recworld").exists()
    assert _dummy_files(site) == dummy_files
    got = _run([py, "-c", "import recommenders, agents; print(recommenders.MARKER); print(agents.MARKER)"],
               cwd=tmp_path).stdout.split("\n")
    assert got[:2] == [f"{MARKER}: recommenders", f"{MARKER}: agents"]
    missing = subprocess.run([str(py), "-c", "import recworld"], capture_output=True, text=True, cwd=tmp_path,
                             env=_clean_env())
    assert missing.returncode != 0 and "No module named 'recworld'" in missing.stderr


def test_editable_install_maps_the_source_folders_under_recworld():
    import recworld
    import recworld.agents
    import recworld.recommenders
    import recworld.simulator

    assert Path(recworld.__file__).resolve() == ROOT / "recworld" / "__init__.py"
    for folder in FOLDERS:
        module = sys.modules[f"recworld.{folder}"]
        assert Path(module.__file__).resolve() == ROOT / folder / "__init__.py", module.__file__


def test_no_top_level_simulator_agents_or_recommenders_outside_the_repository(tmp_path):
    """From any folder but the repository root (where the source folders sit on the path as
    plain folders), none of the three names is importable from this environment."""
    probe = ("import importlib.util, json\n"
             f"print(json.dumps({{n: str(importlib.util.find_spec(n)) for n in {FOLDERS!r}}}))")
    found = json.loads(_run([sys.executable, "-c", probe], cwd=tmp_path).stdout)
    assert found == {n: "None" for n in FOLDERS}, found
    # and what the distribution lists at the top level of site-packages is recworld's alone (the
    # installed one: `python -m pytest` puts the checkout on the path, where a stale
    # recworld.egg-info from an old build would otherwise answer)
    import site
    from importlib.metadata import distributions

    installed = list(distributions(name="recworld", path=site.getsitepackages()))
    assert installed, "recworld is not installed in this environment"
    tops = {str(f).split("/")[0] for f in installed[0].files or []}
    assert not tops & set(FOLDERS), tops
