"""Reports that compare arms (recommenders, settings, STS on/off, ...) over seeds.

One generic entry point for comparisons, sweeps and STS studies:

    write_arms_html(out, runs, series=None, *, metrics=None, by="arm", baseline=None,
                    title="", notes="", labels=None, curves=None, level=0.95, status=None) -> Path

``runs`` is a table with one row per run: the arm (column ``by``), ``seed``, ``status``
(optional; only ``completed``/``degraded`` runs are summarised), optional ``folder`` (the
run folder, absolute or inside ``out``: the page links to its ``report.html``) and one
numeric column per metric (a sweep's ``SweepResult.runs`` has this shape).
``series`` maps an arm to the time series (``timeseries.csv`` frames) of its seeds; the
page draws the mean of each ``curves`` column per arm with its interval band (clipped at
zero for columns that are never negative).  ``status``: the study's status, shown as a badge.  Intervals are
Student's t intervals of the mean over seeds; with one seed there is none.  ``baseline``
adds paired differences (same seed) of every arm against it.

``runs_from_folders({"arm": [run folders...]})`` builds ``runs`` and ``series`` from run
folders, for studies whose arms are ordinary runs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recworld.simulator.output.intervals import LEVEL, band, interval

#: the metrics of ``recworld compare``'s report and compare.csv
COMPARE_COLUMNS = ["ctr", "watches", "watch_minutes", "mean_rating", "genre_entropy_per_user", "catalog_coverage",
                   "exposure_gini", "regret_total", "regret_per_slate", "regret_per_slate_last_third", "slates_shown"]

#: run columns that are never metrics
NOT_METRICS = {"seed", "attempts", "wall_seconds", "users", "simulated_days", "simulated_minutes", "status", "folder"}
#: time-series columns drawn by default, with their labels
DEFAULT_CURVES = [("ctr", "CTR (watches / items shown)"), ("watches", "watches per time bin"),
                  ("genre_entropy_cumulative", "genre entropy so far (bits)"),
                  ("regret_cumulative", "cumulative regret"), ("sessions", "sessions per time bin")]


def metric_columns(runs: pd.DataFrame, by: str = "arm") -> list[str]:
    return [c for c in runs.columns if c not in NOT_METRICS and c != by
            and pd.api.types.is_numeric_dtype(runs[c]) and not pd.api.types.is_bool_dtype(runs[c])]


def _finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"].isin(["completed", "degraded"])] if "status" in runs else runs


def summarize_arms(runs: pd.DataFrame, metrics: list[str] | None = None, by: str = "arm",
                   level: float = LEVEL) -> pd.DataFrame:
    """One row per (arm, metric): ``n``, ``mean``, ``std``, ``low``, ``high``."""
    done = _finished(runs)
    metrics = metrics if metrics is not None else metric_columns(runs, by)
    rows = []
    for arm in dict.fromkeys(runs[by]):
        part = done[done[by] == arm]
        for m in metrics:
            if m in part.columns:
                rows.append({by: arm, "metric": m, **interval(part[m], level)})
    return pd.DataFrame(rows, columns=[by, "metric", "n", "mean", "std", "low", "high"])


def paired_differences(runs: pd.DataFrame, baseline, metrics: list[str] | None = None, by: str = "arm",
                       level: float = LEVEL) -> pd.DataFrame:
    """Each arm minus ``baseline`` seed by seed: ``n``, ``mean``, ``low``, ``high`` per metric."""
    done = _finished(runs)
    metrics = metrics if metrics is not None else metric_columns(runs, by)
    if "seed" not in done:
        return pd.DataFrame(columns=[by, "metric", "n", "mean", "low", "high"])
    base = done[done[by] == baseline].drop_duplicates("seed").set_index("seed")
    rows = []
    for arm in dict.fromkeys(runs[by]):
        if arm == baseline:
            continue
        part = done[done[by] == arm].drop_duplicates("seed").set_index("seed")
        seeds = part.index.intersection(base.index)
        for m in metrics:
            if m in part.columns and m in base.columns:
                d = (part.loc[seeds, m].astype(float) - base.loc[seeds, m].astype(float)).dropna()
                iv = interval(d, level)
                rows.append({by: arm, "metric": m, "n": iv["n"], "mean": iv["mean"], "low": iv["low"],
                             "high": iv["high"]})
    return pd.DataFrame(rows, columns=[by, "metric", "n", "mean", "low", "high"])


def runs_from_folders(folders: dict, metrics: list[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """``{arm: [run folder, ...]}`` -> (``runs`` table, ``series``) from each folder's
    ``metrics.json`` and ``timeseries.csv``."""
    import json

    rows, series = [], {}
    for arm, paths in folders.items():
        for p in paths:
            p = Path(p)
            try:
                m = json.loads((p / "metrics.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                m = {"status": "failed"}
            row = {"arm": arm, "seed": m.get("seed"), "status": m.get("status", "unknown"), "folder": str(p)}
            row.update({k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                        and (metrics is None or k in metrics) and k != "seed"})
            rows.append(row)
            ts = p / "timeseries.csv"
            if ts.exists():
                series.setdefault(arm, []).append(pd.read_csv(ts))
    return pd.DataFrame(rows), series


def arms_data(runs: pd.DataFrame, series: dict | None = None, *, metrics: list[str] | None = None, by: str = "arm",
              baseline=None, title: str = "", notes: str = "", labels: dict | None = None,
              curves: list | None = None, level: float = LEVEL, out: Path | None = None,
              status: str | None = None) -> dict:
    """The JSON the comparison page draws (see ``write_arms_html``)."""
    from recworld.simulator.output.report import METRIC_LABELS

    metrics = metrics if metrics is not None else metric_columns(runs, by)
    arms = [str(a) for a in dict.fromkeys(runs[by])] if len(runs) else [str(a) for a in (series or {})]
    summary = summarize_arms(runs, metrics, by, level) if len(runs) else pd.DataFrame()
    present = [m for m in metrics if len(summary) and summary.loc[summary["metric"] == m, "mean"].notna().any()]

    def rows(df):
        return [{"arm": str(r[by]), "metric": r["metric"], "n": int(r["n"]), "mean": r["mean"], "low": r["low"],
                 "high": r["high"]} for _, r in df.iterrows()]

    diffs = rows(paired_differences(runs, baseline, present, by, level)) if baseline is not None and len(runs) else []
    curve_data = []
    for col, label in (curves or DEFAULT_CURVES):
        per_arm = {}
        for arm, frames in (series or {}).items():
            bd = band(frames, col, level=level)
            if bd.empty:
                continue
            low = bd["low"]
            if all((f[col].dropna() >= 0).all() for f in frames if col in f):    # a count or a rate:
                low = low.clip(lower=0.0)                                       # no band below zero
            per_arm[str(arm)] = {"x": bd["start_minute"].astype(float).tolist(), "n": int(bd["n"].max()),
                                 "mean": bd["mean"].tolist(), "low": low.tolist(), "high": bd["high"].tolist()}
        if per_arm:
            curve_data.append({"column": col, "label": label, "arms": per_arm})
    run_rows = []
    for _, r in runs.iterrows():
        folder = r.get("folder") if "folder" in runs else None
        report = None
        if folder is not None and not pd.isna(folder):
            f = Path(folder)
            if not f.is_absolute() and out is not None:      # a sweep's runs name their folder inside out
                f = out / f
            if (f / "report.html").exists():
                try:
                    report = (f.resolve() / "report.html").relative_to(out).as_posix() if out is not None else None
                except ValueError:
                    report = (f / "report.html").resolve().as_uri()
        run_rows.append({"arm": str(r[by]), "seed": r.get("seed"), "status": r.get("status", ""),
                         "folder": None if folder is None or pd.isna(folder) else Path(folder).name, "report": report})
    return {"kind": "arms", "title": title or "RecWorld comparison", "status": status, "notes": notes, "by": by,
            "level": level,
            "arms": arms, "metrics": present, "labels": {**METRIC_LABELS, **(labels or {})},
            "summary": rows(summary) if len(summary) else [], "baseline": None if baseline is None else str(baseline),
            "differences": diffs, "curves": curve_data, "runs": run_rows}


def write_arms_html(out, runs: pd.DataFrame, series: dict | None = None, *, metrics: list[str] | None = None,
                    by: str = "arm", baseline=None, title: str = "", notes: str = "", labels: dict | None = None,
                    curves: list | None = None, level: float = LEVEL, status: str | None = None,
                    name: str = "report.html") -> Path:
    """Write ``out/report.html`` (self-contained, offline): a table of arms x metrics with
    the mean over seeds and its interval, one interval plot per metric, paired differences
    against ``baseline``, the ``curves`` per arm with interval bands, and the runs with links
    to their own explorers.  Returns the path."""
    from recworld.simulator.output.html import render_page

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = arms_data(runs, series, metrics=metrics, by=by, baseline=baseline, title=title, notes=notes,
                     labels=labels, curves=curves, level=level, out=out.resolve(), status=status)
    path = out / name
    path.write_text(render_page(data), encoding="utf-8")
    return path
