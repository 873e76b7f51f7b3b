"""Output folders: their default names, and creating or replacing them safely.

Every command that writes results (``run``, ``compare``, ``sts``, ``train``, ``evaluate``,
sweeps) writes into one folder.  This module names those folders (``default_out``) and
prepares them (``prepare_out``): it creates the folder and leaves a marker file in it,
``.recworld-run.json``, so that RecWorld can later tell a folder it wrote from any other.

``--overwrite`` only ever removes a folder that carries the marker and holds nothing but
the files RecWorld writes there (sub-runs of a comparison or study must be marked too).
The current directory, its parents, the home folder and the filesystem root are never
removed, and a folder with anything else in it is left untouched: the error names the
foreign files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

MARKER = ".recworld-run.json"
MAX_NAME = 80

#: files (plain names) and RecWorld-written sub-folders (name -> allowed file patterns) by kind
_RUN_FILES = {"scenario.yaml", "events.parquet", "metrics.json", "timeseries.csv", "report.md", "report.html",
              "users.parquet", "items.parquet", "llm_calls.jsonl", "error.txt", ".events.parquet.tmp",
              "memories.parquet", ".memories.parquet.tmp", ".report.html.tmp"}
_PLOTS = ("*.png", "*.svg", "*.pdf", "*.jpg", "*.html")
_OS_LITTER = {".DS_Store", "Thumbs.db", "desktop.ini"}      # file managers' own notes, never the user's work
_RUN_DIRS = {"plots": _PLOTS, "events.parts": ("part-*.arrow", "part-*.parquet", ".part-*.tmp")}

KNOWN: dict[str, dict] = {
    "run": {"files": _RUN_FILES, "dirs": _RUN_DIRS, "sub_runs": False},
    "compare": {"files": {"compare.csv", "compare.json", "report.md", "report.html"}, "dirs": {"plots": _PLOTS},
                "sub_runs": True},
    "sts": {"files": {"results.json", "report.md", "report.html", "llm_calls.jsonl", "error.txt"},
            "dirs": {"plots": _PLOTS}, "sub_runs": True},
    "train": {"files": {"scenario.yaml", "model.zip", "policy.pt", "policy.json", "learning_curve.csv",
                        "results.json", "report.md"}, "dirs": {"plots": _PLOTS}, "sub_runs": False},
    "evaluate": {"files": {"offline_eval.csv", "offline_eval.json", "offline_eval.md"}, "dirs": {},
                 "sub_runs": False},
    "sweep": {"files": {"sweep.yaml", "sweep.csv", "summary.csv", "differences.csv", "sweep.json", "report.md",
                        "report.html"},
              "dirs": {"plots": _PLOTS}, "sub_runs": True},
}


class UnsafeOverwriteError(FileExistsError):
    """``--overwrite`` was asked for a folder that RecWorld will not remove."""


def register_kind(kind: str, files, dirs: dict[str, tuple[str, ...]] | None = None, sub_runs: bool = False) -> None:
    """Declare the files an output of ``kind`` holds, so that ``--overwrite`` may replace it."""
    # every output may hold its explorer page (``recworld report FOLDER`` writes one)
    KNOWN[kind] = {"files": set(files) | {"report.html"}, "dirs": dict(dirs or {}), "sub_runs": sub_runs}


# ----------------------------------------------------------------------------- names


def safe_name(text, max_len: int = MAX_NAME) -> str:
    """``text`` as one folder name: only ``[A-Za-z0-9._-]``, no path separators, no ``..``,
    no leading dot or dash, at most ``max_len`` characters, never empty."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))
    s = re.sub(r"\.{2,}", ".", s)
    s = s.strip("._-")[:max_len].rstrip("._-")
    return s or "unnamed"


def default_out(kind: str | None, name: str | None, seed: int | None = None, root: str | Path = "runs") -> Path:
    """A new folder under ``root``: ``NAME-seedN-TIMESTAMP`` for a run (``kind`` None),
    ``KIND-NAME-TIMESTAMP`` for the others (``KIND-TIMESTAMP`` without a name).  A folder
    that already exists gets a ``-2``, ``-3``, ... suffix."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parts = [] if kind is None else [safe_name(kind)]
    if name:
        parts.append(safe_name(name))
    elif kind is None:
        parts.append("run")
    if seed is not None:
        parts.append(f"seed{int(seed)}")
    base = "-".join(parts + [stamp])
    path, n = Path(root) / base, 1
    while os.path.lexists(path):
        n += 1
        path = Path(root) / f"{base}-{n}"
    return path


# ----------------------------------------------------------------------------- markers


def read_marker(path) -> dict | None:
    """The marker RecWorld left in ``path``, or None (no marker, or not one of ours)."""
    f = Path(path) / MARKER
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def is_run_folder(path, kind: str | None = None) -> bool:
    """True if ``path`` is a folder RecWorld created (of ``kind``, if given)."""
    p = Path(path)
    if p.is_symlink() or not p.is_dir():
        return False
    m = read_marker(p)
    return m is not None and (kind is None or m["kind"] == kind)


def _write_marker(out: Path, kind: str) -> None:
    try:
        from recworld import __version__
    except Exception:  # noqa: BLE001 - the marker is still useful without it
        __version__ = "unknown"
    data = {"kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "created_unix": time.time(),
            "recworld_version": __version__}
    tmp = out / (MARKER + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / MARKER)


# ----------------------------------------------------------------------------- checks


def _matches(name: str, patterns) -> bool:
    from fnmatch import fnmatchcase

    return any(fnmatchcase(name, p) for p in patterns)


def foreign_files(path, limit: int | None = None) -> list[str]:
    """What in the RecWorld folder ``path`` RecWorld did not write (paths relative to it);
    everything when ``path`` carries no marker.  Stops after ``limit`` entries."""
    root = Path(path)
    found: list[str] = []

    def add(rel: str) -> bool:
        found.append(rel)
        return limit is not None and len(found) >= limit

    def walk(folder: Path, prefix: str) -> bool:          # True: stop, enough found
        marker = read_marker(folder)
        if marker is None:
            return add(f"{prefix} (not marked as RecWorld's)" if prefix else ".")
        spec = KNOWN.get(marker["kind"])
        if spec is None:                                   # a kind this version does not know: any known name
            spec = {"files": set().union(*(k["files"] for k in KNOWN.values())),
                    "dirs": {d: p for k in KNOWN.values() for d, p in k["dirs"].items()},
                    "sub_runs": True}
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            rel = prefix + entry.name
            if entry.name in (MARKER, MARKER + ".tmp") or entry.name in _OS_LITTER:
                continue
            if entry.is_symlink():
                if add(rel):
                    return True
            elif entry.is_file():
                if entry.name not in spec["files"] and add(rel):
                    return True
            elif entry.is_dir():
                if entry.name in spec["dirs"]:
                    for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                        if (sub.is_symlink() or not sub.is_file()
                                or not _matches(sub.name, spec["dirs"][entry.name])) and add(f"{rel}/{sub.name}"):
                            return True
                elif spec["sub_runs"]:
                    if walk(Path(entry.path), rel + "/"):
                        return True
                elif add(rel + "/"):
                    return True
            elif add(rel):
                return True
        return False

    walk(root, "")
    return found


def _is_empty(path: Path) -> bool:
    """Nothing in it, or nothing but RecWorld's marker (a folder prepared and not used)."""
    with os.scandir(path) as entries:
        return all(e.name in (MARKER, MARKER + ".tmp") for e in entries)


def _protected(path: Path) -> str | None:
    """Why ``path`` may never be removed, or None."""
    try:
        real = path.resolve()
        cwd = Path.cwd().resolve()
    except OSError:
        return "its location cannot be resolved"
    home = Path.home().resolve()
    if real == Path(real.anchor):
        return "it is the filesystem root"
    if real == cwd:
        return "it is the current directory"
    if real in cwd.parents:
        return "it contains the current directory"
    if real == home or real in home.parents:
        return "it is the home folder" if real == home else "it contains the home folder"
    return None


def _first_existing_ancestor(path: Path) -> Path | None:
    for p in path.parents:
        if os.path.lexists(p):
            return p
    return None


def check_out(out, overwrite: bool) -> Path:
    """Raise the error ``prepare_out`` would raise for ``out``, changing nothing."""
    out = Path(out).expanduser()
    if os.path.lexists(out) and not out.is_dir():
        raise NotADirectoryError(f"output folder {out} exists and is not a folder; choose another --out")
    if not os.path.lexists(out):
        anc = _first_existing_ancestor(out)
        if anc is not None and not anc.is_dir():
            raise NotADirectoryError(f"cannot create output folder {out}: {anc} is a file, not a folder")
        return out
    if overwrite:
        why = _protected(out)
        if why is None and out.is_symlink():
            why = "it is a symbolic link"
        if why is not None:
            raise UnsafeOverwriteError(f"will not overwrite {out}: {why}; choose another --out (a new folder, "
                                       "or one written by RecWorld)")
    if _is_empty(out):
        return out
    if not overwrite:
        what = "already holds a RecWorld output" if is_run_folder(out) else "exists and is not empty"
        raise FileExistsError(f"{out} {what}; choose another --out or pass --overwrite")
    if read_marker(out) is None:
        raise UnsafeOverwriteError(
            f"will not overwrite {out}: it was not created by RecWorld (no {MARKER} marker; folders written "
            "by RecWorld before 0.1 have none). If it is an old run you no longer need, delete it by hand; "
            "otherwise choose another --out")
    foreign = foreign_files(out, limit=6)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise UnsafeOverwriteError(
            f"will not overwrite {out}: it holds files RecWorld did not write ({shown}); move them away "
            "or choose another --out")
    return out


def prepare_out(out, overwrite: bool = False, kind: str = "run") -> Path:
    """Create the output folder ``out`` for a ``kind`` output and mark it as RecWorld's.

    An existing empty folder is used as it is.  An existing non-empty one is an error
    (``FileExistsError``) unless ``overwrite``; then its contents are removed only if it is a
    RecWorld folder holding nothing but RecWorld's files, else ``UnsafeOverwriteError``
    (a ``FileExistsError``) names what is in the way.  Returns ``out`` as a ``Path``.
    """
    out = check_out(out, overwrite)
    if os.path.lexists(out) and not _is_empty(out):
        # the marker goes last: a removal cut short leaves a folder that can be overwritten again
        for entry in os.scandir(out):
            if entry.name == MARKER:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(f"cannot create output folder {out}: a file is in the way") from None
    _write_marker(out, kind)
    return out


def discard_if_unused(out, existed: bool = False) -> bool:
    """Undo ``prepare_out`` for a folder nothing was written to: remove it (or only the
    marker, if the folder ``existed`` before).  Returns True if something was undone."""
    out = Path(out)
    if out.is_symlink() or not out.is_dir() or not _is_empty(out) or read_marker(out) is None:
        return False
    for name in (MARKER, MARKER + ".tmp"):
        try:
            (out / name).unlink()
        except FileNotFoundError:
            pass
    if not existed:
        try:
            out.rmdir()
        except OSError:
            pass
    return True
