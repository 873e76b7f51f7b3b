"""Intervals over seeds: summaries, paired differences and plots with error bands.

Every interval here is a 95% interval for a mean over independent seeds (Student's t with
n - 1 degrees of freedom).  A paired difference compares two arms seed by seed (same seed,
same users, same catalog), which removes the between-seed variation both share.  With one
seed there is no interval (NaN), and the tables say so.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

LEVEL = 0.95

#: per-run columns that are not results (never summarised)
NOT_METRICS = {"seed", "attempts", "wall_seconds", "users", "simulated_days", "simulated_minutes"}


def interval(values, level: float = LEVEL) -> dict:
    """Mean, standard deviation and the t interval of the mean of ``values`` (NaNs dropped),
    keyed as the sweep tables name them (``ci_low``, ``ci_high``)."""
    from recworld.simulator.output.intervals import interval as t_interval

    iv = t_interval(values, level)
    return {"n": iv["n"], "mean": iv["mean"], "std": iv["std"], "ci_low": iv["low"], "ci_high": iv["high"]}


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """The numeric result columns of a runs table (in its order)."""
    return [c for c in runs.columns if c not in NOT_METRICS and pd.api.types.is_numeric_dtype(runs[c])
            and not pd.api.types.is_bool_dtype(runs[c])]


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that produced results (completed, or degraded: they ran to the end)."""
    return runs[runs["status"].isin(["completed", "degraded"])]


def summarize(runs: pd.DataFrame, metrics: list[str] | None = None, by: str = "arm",
              order: list[str] | None = None) -> pd.DataFrame:
    """One row per (arm, metric): n seeds, mean, std and the 95% interval of the mean."""
    done = finished(runs)
    metrics = metrics if metrics is not None else metric_columns(runs)
    rows = []
    for arm in order or list(dict.fromkeys(runs[by])):
        part = done[done[by] == arm]
        for m in metrics:
            if m in part.columns:
                rows.append({by: arm, "metric": m, **interval(part[m])})
    return pd.DataFrame(rows, columns=[by, "metric", "n", "mean", "std", "ci_low", "ci_high"])


def paired_differences(runs: pd.DataFrame, baseline: str, metrics: list[str] | None = None, by: str = "arm",
                       order: list[str] | None = None) -> pd.DataFrame:
    """Each arm minus ``baseline`` on the seeds both finished: mean difference, its 95%
    interval and the paired t-test's two-sided p-value."""
    from scipy import stats

    done = finished(runs)
    metrics = metrics if metrics is not None else metric_columns(runs)
    base = done[done[by] == baseline].set_index("seed")
    rows = []
    for arm in order or list(dict.fromkeys(runs[by])):
        if arm == baseline:
            continue
        part = done[done[by] == arm].set_index("seed")
        seeds = part.index.intersection(base.index)
        for m in metrics:
            if m not in part.columns:
                continue
            d = (part.loc[seeds, m].astype(float) - base.loc[seeds, m].astype(float)).dropna()
            iv = interval(d)
            p = math.nan
            if iv["n"] >= 2 and iv["std"] > 1e-12 * max(abs(iv["mean"]), 1.0):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    p = float(stats.ttest_1samp(d.to_numpy(), 0.0).pvalue)
            rows.append({by: arm, "baseline": baseline, "metric": m, "n": iv["n"], "mean_difference": iv["mean"],
                         "ci_low": iv["ci_low"], "ci_high": iv["ci_high"], "p_value": p})
    return pd.DataFrame(rows, columns=[by, "baseline", "metric", "n", "mean_difference", "ci_low", "ci_high",
                                       "p_value"])


def wide(summary: pd.DataFrame, metrics: list[str], by: str = "arm") -> pd.DataFrame:
    """One row per arm: ``n_seeds``, and per metric its mean (``m``) and interval (``m_low``,
    ``m_high``)."""
    rows = []
    for arm, part in summary.groupby(by, sort=False):
        row = {by: arm, "n_seeds": int(part["n"].max()) if len(part) else 0}
        table = part.set_index("metric")
        for m in metrics:
            if m in table.index:
                row[m], row[f"{m}_low"], row[f"{m}_high"] = (table.at[m, "mean"], table.at[m, "ci_low"],
                                                              table.at[m, "ci_high"])
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- text


def _num(x: float, signed: bool = False) -> str:
    if x is None or pd.isna(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:+,.0f}" if signed else f"{x:,.0f}"
    return f"{x:+.4g}" if signed else f"{x:.4g}"


def with_interval(mean: float, low: float, high: float, signed: bool = False) -> str:
    """``0.106 [0.101, 0.111]``, or the mean alone when there is no interval."""
    if pd.isna(low) or pd.isna(high):
        return _num(mean, signed)
    return f"{_num(mean, signed)} [{_num(low, signed)}, {_num(high, signed)}]"


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def summary_markdown(summary: pd.DataFrame, metrics: list[str], by: str = "arm") -> str:
    """Arms x metrics, each cell ``mean [95% interval]``."""
    metrics = [m for m in metrics if m in set(summary["metric"])]
    rows = []
    for arm, part in summary.groupby(by, sort=False):
        t = part.set_index("metric")
        n = int(part["n"].max()) if len(part) else 0
        rows.append([str(arm), str(n)] + [with_interval(t.at[m, "mean"], t.at[m, "ci_low"], t.at[m, "ci_high"])
                                          if m in t.index else "" for m in metrics])
    return _md([by, "seeds"] + metrics, rows)


def differences_markdown(diffs: pd.DataFrame, metrics: list[str], by: str = "arm") -> str:
    """Arms x metrics, each cell ``difference [95% interval]``; ``*`` when the interval
    leaves out zero."""
    metrics = [m for m in metrics if m in set(diffs["metric"])]
    rows = []
    for arm, part in diffs.groupby(by, sort=False):
        t = part.set_index("metric")
        cells = []
        for m in metrics:
            if m not in t.index:
                cells.append("")
                continue
            lo, hi = t.at[m, "ci_low"], t.at[m, "ci_high"]
            star = " *" if not pd.isna(lo) and (lo > 0 or hi < 0) else ""
            cells.append(with_interval(t.at[m, "mean_difference"], lo, hi, signed=True) + star)
        rows.append([str(arm), str(int(part["n"].max()) if len(part) else 0)] + cells)
    return _md([by, "paired seeds"] + metrics, rows)


# ----------------------------------------------------------------------------- plots


def plot_metrics(summary: pd.DataFrame, metrics: list[str], path: Path, by: str = "arm",
                 title: str = "") -> Path | None:
    """One panel per metric: each arm's mean with its 95% interval as an error bar."""
    from matplotlib.figure import Figure

    metrics = [m for m in metrics if m in set(summary["metric"]) and summary.loc[summary["metric"] == m, "mean"]
               .notna().any()]
    if not metrics:
        return None
    cols = min(4, len(metrics))
    rows = -(-len(metrics) // cols)
    arms = list(dict.fromkeys(summary[by]))
    fig = Figure(figsize=(3.6 * cols, 0.9 + 2.6 * rows + 0.12 * max(len(a) for a in map(str, arms))))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, m in zip(axes, metrics):
        t = summary[summary["metric"] == m].set_index(by).reindex(arms)
        mean = t["mean"].to_numpy(dtype=float)
        low = np.nan_to_num(mean - t["ci_low"].to_numpy(dtype=float), nan=0.0)
        high = np.nan_to_num(t["ci_high"].to_numpy(dtype=float) - mean, nan=0.0)
        x = np.arange(len(arms))
        ax.errorbar(x, mean, yerr=[low, high], fmt="o", capsize=4)
        ax.set_xticks(x, [str(a) for a in arms], rotation=30, ha="right", fontsize=8)
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def band(frames: list[pd.DataFrame], column: str, key: str = "start_minute") -> pd.DataFrame:
    """Per time bin over seeds: mean of ``column`` and its 95% interval (``key``, mean, low, high)."""
    from scipy import stats

    stacked = pd.concat([f[[key, column]] for f in frames if column in f.columns and f[column].notna().any()],
                        ignore_index=True) if frames else pd.DataFrame(columns=[key, column])
    if stacked.empty:
        return pd.DataFrame(columns=[key, "mean", "low", "high"])
    g = stacked.groupby(key)[column]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
    tq = np.where(out["n"] > 1, stats.t.ppf(0.5 + LEVEL / 2, np.maximum(out["n"] - 1, 1)), np.nan)
    half = tq * out["std"] / np.sqrt(out["n"])
    out["low"], out["high"] = out["mean"] - half, out["mean"] + half
    return out[[key, "mean", "low", "high"]]


def plot_timeseries(series: dict[str, list[pd.DataFrame]], path: Path, columns: list[tuple[str, str]] | None = None,
                    title: str = "") -> Path | None:
    """Per arm, the mean over seeds of each time-series column with its 95% band."""
    from matplotlib.figure import Figure

    columns = columns or [("ctr", "CTR (watches / items shown)"),
                          ("regret_cumulative", "cumulative regret (oracle - shown click prob.)"),
                          ("watches", "watches per time bin")]
    present = [(c, label) for c, label in columns
               if any(c in f.columns and f[c].notna().any() for frames in series.values() for f in frames)]
    if not present:
        return None
    fig = Figure(figsize=(5.2 * len(present), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(present), squeeze=False)).ravel()
    for ax, (col, label) in zip(axes, present):
        for arm, frames in series.items():
            b = band(frames, col)
            if b.empty:
                continue
            hours = b["start_minute"] / 60
            (line,) = ax.plot(hours, b["mean"], label=str(arm))
            ax.fill_between(hours, b["low"], b["high"], color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set(xlabel="simulated hours", ylabel=label, title=label.split(" (")[0])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
