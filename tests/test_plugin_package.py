"""A third-party plug-in package, installed with pip: found by name through its entry points,
used by a scenario, and passing the conformance checkers.

The example package (``tests/plugin_example``: the ``recency`` recommender and the
``first_like`` brain) is installed into the running environment for this module and
uninstalled afterwards, so the environment is left as it was.  Scenario runs and
``recworld list`` go through the command line in subprocesses: entry points are read
per process, as a user's shell would see them.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from recworld.simulator import registry
from recworld.simulator.testing.checks import check_brain, check_recommender

EXAMPLE = Path(__file__).resolve().parent / "plugin_example"
DIST = "recworld-example-plugins"
MODULE = "recworld_example_plugins"
ENTRY_POINTS = {"recommenders": ("recency", f"{MODULE}.recency:RecencyRecommender"),
                "brains": ("first_like", f"{MODULE}.first_like:FirstLikeBrain")}


def _installed() -> bool:
    try:
        version(DIST)
    except PackageNotFoundError:
        return False
    return True


def _release(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


def build_flags(minimum: tuple[int, int]) -> list[str]:
    """``--no-build-isolation`` (build with this environment's setuptools, nothing fetched)
    when setuptools >= ``minimum`` is installed here, and ``wheel`` too for setuptools
    before 70.1; otherwise [] (pip fetches the build backend from the package index)."""
    try:
        st = _release(version("setuptools"))
    except PackageNotFoundError:
        return []
    if st < minimum:
        return []
    if st < (70, 1) and importlib.util.find_spec("wheel") is None:
        return []
    return ["--no-build-isolation"]


def pip(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    cmd = [python, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def recworld_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``recworld ARGS`` in a new process (the console script of this environment)."""
    script = Path(sys.executable).with_name("recworld")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "recworld.simulator.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd, timeout=600)


def _forget_module() -> None:
    for name in [m for m in sys.modules if m == MODULE or m.startswith(MODULE + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def plugin_installed(tmp_path_factory):
    """The example package pip-installed (not editable, no dependencies) for this module."""
    if _installed():
        pytest.fail(f"{DIST} is already installed in this environment (a killed test run may have left it): "
                    f"`{sys.executable} -m pip uninstall -y {DIST}`; this test installs and removes it itself")
    # build from a copy: a build in place would leave build/ and *.egg-info in the repository
    src = tmp_path_factory.mktemp("plugin-src") / "plugin_example"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    try:
        pip("install", "--no-deps", *build_flags((61, 0)), str(src))
        importlib.invalidate_caches()
        assert _installed()
        yield src
    finally:
        if _installed():
            pip("uninstall", "-y", DIST)
        _forget_module()
    assert not _installed(), f"{DIST} is still installed"
    assert "recency" not in registry.available("recommenders")
    assert "first_like" not in registry.available("brains")


def test_entry_points_make_the_plugins_available_by_name(plugin_installed, tmp_path):
    for kind, (name, target) in ENTRY_POINTS.items():
        assert registry.available(kind)[name] == target
    listing = recworld_cli("list", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    lines = [line.split() for line in listing.stdout.splitlines()]
    assert ["recency", ENTRY_POINTS["recommenders"][1]] in lines
    assert ["first_like", ENTRY_POINTS["brains"][1]] in lines
    # the built-ins are still there, and still come from recworld
    assert ["popularity", "recworld.recommenders.baselines:PopularityRecommender"] in lines


def test_scenario_runs_with_the_installed_plugins(plugin_installed, tmp_path):
    import recworld

    out = tmp_path / "run"
    proc = recworld_cli("run", str(plugin_installed / "scenario.yaml"), "--out", str(out), "--no-progress",
                        cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = recworld.load_run(out)
    m = run.metrics
    assert m["status"] == "completed"
    assert (m["recommender"], m["brain"]) == ("recency", "first_like")
    assert run.scenario["population"]["brain"]["patience"] == 3          # the plug-in's own parameters
    slates = run.of_kind("slate")
    assert len(slates) > 20 and m["slates_shown"] == len(slates)
    # every slate came from the plug-in: it counted them (recommender_stats) ...
    assert m["recommender_stats"] == {"slates": len(slates)}
    # ... and its ranking shows: on recommendation pages (not searches), newest first
    year = dict(zip(run.items["item_id"], run.items["year"]))
    pages = slates[slates["text"].isna()]
    assert len(pages) > 10
    for items in pages["items"]:
        years = [year[i] for i in items]
        assert years == sorted(years, reverse=True), years
    # the brain: at most one item watched per page, and its ratings carry its feeling
    watches = run.of_kind("watch")
    from_slates = watches.dropna(subset=["slate_id"])
    assert len(from_slates) > 0
    assert from_slates.groupby("slate_id").size().max() == 1
    rates = run.of_kind("rate")
    assert len(rates) > 0 and rates["text"].str.startswith("first one I liked: ").all()


def test_a_typo_in_a_plugin_parameter_is_named(plugin_installed, tmp_path):
    proc = recworld_cli("validate", str(plugin_installed / "scenario.yaml"), "--set",
                        "recommender.popularity_weigth=0.2", cwd=tmp_path)
    assert proc.returncode == 2
    assert "recommender.popularity_weigth" in proc.stderr and "did you mean 'popularity_weight'" in proc.stderr


def test_installed_plugins_pass_the_conformance_checkers(plugin_installed):
    rec = registry.load("recommenders", "recency")
    brain = registry.load("brains", "first_like")
    assert rec.__module__ == f"{MODULE}.recency" and brain.__module__ == f"{MODULE}.first_like"
    assert Path(sys.modules[MODULE].__file__).resolve().parent.parent != EXAMPLE       # the installed copy
    report = check_recommender(rec)
    assert {"params-forbid-unknown", "slate-excludes", "deterministic", "world-run"} <= set(report["rules"])
    assert report["events"] > 0
    report = check_recommender(rec, params={"popularity_weight": 0.0})
    assert report["events"] > 0
    report = check_brain(brain, params={"like_threshold": 4.0, "patience": 2})
    assert {"page-positions", "consume", "deterministic", "world-run"} <= set(report["rules"])
    assert "oracle" not in report["rules"] and report["events"] > 0      # it declares no oracle
