"""``report.md`` with PNG plots for a run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recworld.simulator.output.metrics import lorenz

METRIC_LABELS = {
    "users": "users", "active_users": "active users", "sessions": "sessions", "slates_shown": "slates shown",
    "impressions": "items shown", "ctr": "CTR (watches / items shown)", "slate_ctr": "slates with a watch",
    "watches": "watches", "watch_minutes": "minutes watched", "mean_rating": "mean rating",
    "searches": "searches", "catalog_coverage": "catalog coverage (shown)",
    "watched_coverage": "catalog coverage (watched)", "exposure_gini": "exposure Gini",
    "genre_entropy_per_user": "genre entropy per user (bits)", "chats": "chats", "heard_of": "items heard of",
    "posts": "posts", "reposts": "re-posts", "post_reads": "post reads", "post_reach_mean": "mean post reach",
    "post_reach_max": "max post reach", "regret_total": "cumulative regret (click prob. vs oracle slate)",
    "regret_per_slate": "regret per slate", "p_click_mean": "mean true click probability of a slate",
    "p_oracle_mean": "mean click probability of the oracle slate",
}


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v:,}"


def wilson(successes, trials, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (95% by default) of ``successes / trials``, elementwise; NaN where
    there were no trials."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = centre - half, centre + half
    lo[~(n > 0)] = np.nan
    hi[~(n > 0)] = np.nan
    return np.clip(lo, 0, 1), np.clip(hi, 0, 1)


def ctr_interval(ts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """95% interval of each time bin's CTR (watches from slates / items shown), from the
    counts in that bin (Wilson)."""
    if "ctr" not in ts or "impressions" not in ts:
        nan = np.full(len(ts), np.nan)
        return nan, nan.copy()
    n = ts["impressions"].to_numpy(dtype=np.float64)
    k = np.nan_to_num(ts["ctr"].to_numpy(dtype=np.float64) * n)
    return wilson(np.round(k), n)


def _legend_outside(ax, ncol: int = 4) -> None:
    """The legend in a row above the plot area, where it covers no line."""
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=ncol, fontsize=8, frameon=False,
              borderaxespad=0.0, handlelength=1.6)


def make_plots(folder: Path, ts: pd.DataFrame, shown_counts: np.ndarray) -> dict[str, str]:
    # Figure objects draw without pyplot, so the caller's backend (e.g. a notebook's) is untouched
    from matplotlib.figure import Figure

    def subplots(figsize):
        fig = Figure(figsize=figsize)
        return fig, fig.add_subplot()

    plots = folder / "plots"
    plots.mkdir(exist_ok=True)
    b = ts.attrs.get("bin_minutes")
    if b is None:
        starts = ts["start_minute"].to_numpy(dtype=float)
        b = float(starts[1] - starts[0]) if len(starts) > 1 else 60.0
    unit, scale = ("hours", 60.0) if b < 1440 else ("days", 1440.0)
    x = ts["start_minute"].to_numpy() / scale
    out = {}

    def save(fig, name, title):
        fig.tight_layout()
        fig.savefig(plots / name, dpi=110)
        out[title] = f"plots/{name}"

    fig, ax = subplots(figsize=(7, 3.8))
    lo, hi = ctr_interval(ts)
    ax.fill_between(x, lo, hi, color="tab:blue", alpha=0.18, linewidth=0, label="95% interval (this bin's counts)")
    ax.plot(x, ts["ctr"], marker="o", ms=3, color="tab:blue", label="CTR")
    ax.set(xlabel=f"simulated {unit}", ylabel="watches / items shown")
    ax.set_title("CTR over time", loc="right", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _legend_outside(ax, ncol=2)
    save(fig, "ctr_over_time.png", "CTR over time")

    fig, ax = subplots(figsize=(4.5, 4.5))
    px, py = lorenz(shown_counts)
    ax.plot(px, py, label="exposure")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="equal exposure")
    ax.set(xlabel="share of items (least shown first)", ylabel="share of impressions",
           title="Exposure concentration (Lorenz)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)         # a Lorenz curve never rises into the upper left
    save(fig, "exposure_lorenz.png", "Exposure concentration")

    fig, ax = subplots(figsize=(7, 3.8))
    ax.plot(x, ts["genre_entropy"], marker="o", ms=3, color="tab:green", alpha=0.6, label="in each period")
    ax.plot(x, ts["genre_entropy_cumulative"], color="tab:green", lw=2, label="everything so far")
    ax.set(xlabel=f"simulated {unit}", ylabel="bits")
    ax.set_title("Genre entropy of what users watched (mean over users)", loc="right", fontsize=10)
    ax.grid(alpha=0.3)
    _legend_outside(ax, ncol=2)
    save(fig, "diversity_over_time.png", "Diversity over time")

    fig, ax = subplots(figsize=(7, 3.8))
    for col in ("sessions", "watches", "chats", "posts"):
        ax.plot(x, ts[col], label=col)
    ax.set(xlabel=f"simulated {unit}", ylabel=f"count per {b / 60:g} h" if b < 1440 else f"count per {b / 1440:g} d")
    ax.set_title("Activity", loc="right", fontsize=10)
    ax.grid(alpha=0.3)
    _legend_outside(ax, ncol=4)
    save(fig, "activity.png", "Activity")
    return out


def plot_bands(series: dict[str, list[pd.DataFrame]], column: str, path: Path, ylabel: str = "",
               title: str = "", level: float = 0.95) -> Path | None:
    """Per arm, the mean over seeds of a time-series ``column`` with its ``level`` t-interval
    as a band (no band for an arm with one seed; clipped at zero for a column that is never
    negative); the legend sits beside the plot, clear of the lines."""
    from matplotlib.figure import Figure

    from recworld.simulator.output.intervals import band

    fig = Figure(figsize=(8, 3.8))
    ax = fig.add_subplot()
    drawn = False
    for arm, frames in series.items():
        bd = band(frames, column, level=level)
        if bd.empty:
            continue
        hours = bd["start_minute"].to_numpy(dtype=float) / 60.0
        low = bd["low"].to_numpy(dtype=float)
        if all((f[column].dropna() >= 0).all() for f in frames if column in f):     # a count or a rate
            low = np.maximum(low, 0.0)
        (line,) = ax.plot(hours, bd["mean"], label=f"{arm} (n={int(bd['n'].max())})")
        ax.fill_between(hours, low, bd["high"], color=line.get_color(), alpha=0.2, linewidth=0)
        drawn = True
    if not drawn:
        return None
    ax.set(xlabel="simulated hours", ylabel=ylabel or column)
    ax.set_title(title or column, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0.0)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


STATUS_TEXT = {
    "completed": "the run completed",
    "degraded": "the run is DEGRADED: too many LLM decisions fell back to the parametric model",
    "failed": "the run FAILED (see error.txt); the figures cover the events before the failure",
    "interrupted": "the run was INTERRUPTED; the figures cover the events before it stopped",
}


def status_line(status: str, metrics: dict) -> str:
    """The report's first line after the title: the status, and the LLM fallbacks if any."""
    text = f"**Status: {status}** — {STATUS_TEXT.get(status, status)}."
    llm = metrics.get("llm") or {}
    if llm:
        text += (f" LLM requests: {llm.get('requests', llm.get('calls', 0)):,}, network calls: {llm.get('calls', 0):,}, "
                 f"fallbacks: {llm.get('fallbacks', 0):,}")
        if llm.get("brain_decisions"):
            text += f"; brain decisions: {llm['brain_decisions']:,}, of which fell back: {llm.get('brain_fallbacks', 0):,}"
        text += "."
    return text


def llm_lines(metrics: dict) -> list[str]:
    llm = metrics.get("llm") or {}
    reasons = llm.get("fallback_reasons") or {}
    if not reasons:
        return []
    return ["Fallback reasons: " + ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items(), key=lambda x: -x[1]))
            + ".", ""]


def write_report(folder: Path, scenario, metrics: dict, ts: pd.DataFrame, shown_counts: np.ndarray,
                 status: str = "completed", plots: bool = True) -> Path:
    folder = Path(folder)
    images = make_plots(folder, ts, shown_counts) if plots else {}
    lines = [f"# RecWorld run: {scenario.name}", "", status_line(status, metrics), ""]
    lines += llm_lines(metrics)
    overrides = metrics.get("overrides") or []
    if scenario.description:
        note = (f" (as written in the scenario file; this run overrides {', '.join(f'`{o}`' for o in overrides)}, "
                "so parts of it may not apply)") if overrides else ""
        lines += [f"Scenario description{note}:", "", "> " + " ".join(scenario.description.split()), ""]
    groups = "".join(f" + {g.share:.0%} {g.brain.name}" for g in scenario.population.groups)
    lines += [
        f"- seed: {scenario.seed}; simulated days: {metrics.get('simulated_days', scenario.duration_days):g} "
        f"of {scenario.duration_days:g} planned",
        f"- data: {scenario.data.source}; users: {scenario.population.size}; "
        f"brain: {scenario.population.brain.name}{groups}; recommender: {scenario.recommender.name}",
        f"- social graph: {scenario.social.graph}",
    ]
    prov = metrics.get("provenance") or {}
    if prov:
        commit = prov.get("git_commit") or "not a git checkout"
        lines.append(f"- made by RecWorld {prov.get('recworld')} (commit {commit}), Python {prov.get('python')}; "
                     f"scenario hash {str(prov.get('scenario_sha256', ''))[:12]}")
    lines += [
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key, label in METRIC_LABELS.items():
        if key in metrics:
            lines.append(f"| {label} | {_fmt(metrics[key])} |")
    for title, rel in images.items():
        lines += ["", f"## {title}", "", f"![{title}]({rel})"]
    lines += ["", "Files: `scenario.yaml` (resolved), `events.parquet`, `users.parquet`, `items.parquet`, "
              "`metrics.json`, `timeseries.csv`, `memories.parquet` (what users remembered at the end). Load them "
              "with `recworld.load_run(folder)`. "
              "`report.html` is the interactive explorer (open it in a browser; `recworld view FOLDER` serves "
              "every user on demand).", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
