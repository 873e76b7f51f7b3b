"""``recworld report FOLDER``: (re)build ``report.html`` of any RecWorld output folder.

The kind of the folder comes from its marker (``.recworld-run.json``) or, for folders
without one, from the files in it: a run (``events.parquet``), a comparison
(``compare.json``), a sweep (``sweep.json``), an STS study (``results.json`` with
``studies``) or a fidelity study (``fidelity.json``).  Every page is built from the
folder's files alone.

Register it in the CLI's ``COMMANDS`` table as
``"report": (HELP, add_report_arguments, cmd_report)``.
"""

from __future__ import annotations

import json
from pathlib import Path

# Light to import (the CLI builds its parser from it): pandas and the writers load on use.

HELP = "(re)build report.html of a run, compare, sweep, sts or fidelity output folder from its files"
KINDS = ("run", "compare", "sweep", "sts", "fidelity")
#: the curves the comparison and sweep pages draw (as ``recworld compare`` / ``recworld sweep`` do)
COMPARE_CURVES = [("ctr", "CTR (watches / items shown)"), ("regret_cumulative", "cumulative regret"),
                  ("watches", "watches per time bin")]
SWEEP_CURVES = [("ctr", "CTR (watches / items shown)"), ("watches", "watches per time bin")]


def folder_kind(folder) -> str:
    """What output ``folder`` holds (one of ``KINDS``); ``ValueError`` if none."""
    from recworld.simulator.output.folders import read_marker

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {folder} does not exist")
    marker = read_marker(folder)
    if marker is not None and marker["kind"] in KINDS:
        return marker["kind"]
    if (folder / "events.parquet").exists() or (folder / "events.parts").is_dir():
        return "run"
    if (folder / "fidelity.json").exists():
        return "fidelity"
    if (folder / "compare.json").exists():
        return "compare"
    if (folder / "sweep.json").exists():
        return "sweep"
    if (folder / "results.json").exists():
        try:
            if "studies" in json.loads((folder / "results.json").read_text(encoding="utf-8")):
                return "sts"
        except ValueError:
            pass
    raise ValueError(f"{folder} is not a RecWorld output folder with a page: it holds none of events.parquet "
                     "(a run), compare.json, sweep.json, results.json (an STS study) or fidelity.json")


def _arms_from_files(folder: Path, runs_records: list[dict]):
    """The runs table and each arm's time series from the run folders under ``folder``."""
    import pandas as pd

    runs = pd.DataFrame(runs_records)
    series: dict = {}
    for r in runs_records:
        sub = r.get("folder")
        ts = folder / str(sub) / "timeseries.csv" if sub else None
        if ts is not None and ts.exists():
            series.setdefault(str(r.get("arm")), []).append(pd.read_csv(ts))
    return runs, series


def write_page(folder, kind: str | None = None, users: int | None = None) -> tuple[str, Path]:
    """Write ``folder/report.html`` for the output in ``folder`` (of ``kind``, else detected);
    ``users``: for a run, how many users' timelines the page embeds.  Returns (kind, path)."""
    folder = Path(folder)
    kind = kind or folder_kind(folder)
    if kind == "run":
        from recworld.simulator.output.explorer import write_report_html

        return kind, write_report_html(folder, max_users=users)
    if kind in ("sts", "fidelity"):
        from recworld.simulator.output.studies import write_study_html

        return kind, write_study_html(folder, kind)
    if kind == "compare":
        from recworld.simulator.output.arms import COMPARE_COLUMNS as COLUMNS
        from recworld.simulator.output.arms import write_arms_html

        data = json.loads((folder / "compare.json").read_text(encoding="utf-8"))
        runs, series = _arms_from_files(folder, data.get("runs") or [])
        return kind, write_arms_html(folder, runs, series, metrics=[c for c in COLUMNS if c in runs.columns],
                                     baseline=data.get("baseline"), status=data.get("status"),
                                     title=f"Recommender comparison: {data.get('scenario')}", curves=COMPARE_CURVES)
    if kind == "sweep":
        import pandas as pd

        from recworld.simulator.output.arms import write_arms_html

        data = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
        if not (folder / "sweep.csv").exists():
            raise FileNotFoundError(f"{folder / 'sweep.csv'} is missing: the sweep wrote no results yet")
        runs, series = _arms_from_files(folder, pd.read_csv(folder / "sweep.csv").to_dict("records"))
        summary = folder / "summary.csv"
        metrics = None
        if summary.exists():
            s = pd.read_csv(summary)
            metrics = list(s["metric"].unique()) if "metric" in s.columns else None
        return kind, write_arms_html(folder, runs, series, metrics=metrics, baseline=data.get("baseline"),
                                     status=data.get("status"), title=f"Sweep: {data.get('scenario')}",
                                     curves=SWEEP_CURVES)
    raise ValueError(f"unknown output kind {kind!r}; known: {', '.join(KINDS)}")


def add_report_arguments(parser) -> None:
    """Arguments of ``recworld report FOLDER``."""
    parser.add_argument("folder", help="an output folder of recworld run, compare, sweep, sts or fidelity")
    parser.add_argument("--users", type=int, default=None,
                        help="for a run: how many users' timelines the page embeds (default: the scenario's "
                             "output.html_users, else 200)")


def cmd_report(args) -> int:
    """``recworld report FOLDER``: write its ``report.html``; exit code."""
    if args.users is not None and args.users < 0:
        raise ValueError("--users must be 0 or more")
    kind, path = write_page(args.folder, users=args.users)
    if args.users is not None and kind != "run":
        print(f"note: --users applies to run folders only; {args.folder} holds a {kind} output")
    print(f"report ({kind}): {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0
