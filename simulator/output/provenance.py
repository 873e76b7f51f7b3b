"""Provenance of a run: which RecWorld, which commit, which Python and packages, which scenario.

Recorded in ``metrics.json`` (``provenance``) and in the report, so a table of runs can say
which code made which row.  Nothing here imports the packages it names: versions come
from their installed metadata.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

#: packages whose versions change results
PACKAGES = ("numpy", "pandas", "pyarrow", "simpy", "gymnasium", "pydantic", "scipy", "scikit-learn", "implicit",
            "litellm", "openai", "torch", "stable-baselines3", "xllamacpp")

_REPO = Path(__file__).resolve().parents[2]


def git_commit(repo: Path = _REPO) -> str | None:
    """The source checkout's commit (``+dirty`` when it has uncommitted changes), or None
    for an installed wheel or when git is not available."""
    if not (repo / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def package_versions(names=PACKAGES) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out


def scenario_hash(scenario) -> str:
    """SHA-256 of the resolved scenario's YAML (the same settings give the same hash)."""
    return hashlib.sha256(scenario.to_yaml().encode("utf-8")).hexdigest()


def provenance(scenario=None) -> dict:
    from recworld import __version__

    rec = {"recworld": __version__, "git_commit": git_commit(), "python": platform.python_version(),
           "platform": platform.platform(terse=True), "packages": package_versions()}
    if scenario is not None:
        rec["scenario_sha256"] = scenario_hash(scenario)
    return rec
