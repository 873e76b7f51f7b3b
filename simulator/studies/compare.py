"""Online comparison: several recommenders on the same population and seed.

Each arm is a full world run (its own run folder) with the oracle on, so each slate's true
click probability and the best possible slate's are logged; the comparison tabulates CTR,
watch time, diversity, coverage, exposure Gini and cumulative regret, and plots regret and
CTR over time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

COLUMNS = ["ctr", "watches", "watch_minutes", "mean_rating", "genre_entropy_per_user", "catalog_coverage",
           "exposure_gini", "regret_total", "regret_per_slate", "slates_shown"]


def compare(scenario, out: str | Path, overrides=None, names: list[str] | None = None, progress: bool = True,
            overwrite: bool = False):
    """Run every arm (``scenario.compare`` or ``names``); returns the comparison table.

    ``out`` must be new or empty (or, with ``overwrite``, an earlier comparison: see
    ``prepare_out``); each arm's run folder is a sub-folder named after the arm."""
    from recworld.simulator.output.folders import prepare_out, safe_name
    from recworld.simulator.run import load_run, run_scenario
    from recworld.simulator.scenario import CompareEntry, ScenarioError, load_scenario

    scn = load_scenario(scenario, overrides)
    arms = [CompareEntry(name=n) for n in names] if names else list(scn.compare)
    if not arms:
        raise ScenarioError([("compare", "no recommenders to compare: add a compare: list to the scenario "
                                         "or pass --recommenders a,b,c")])
    out = prepare_out(out, overwrite, "compare")
    base = scn.model_dump(mode="json")
    base["compare"] = []
    base["output"]["oracle"] = True
    rows, series, folders = [], {}, set()
    for arm in arms:
        cfg = dict(base, recommender={"name": arm.name, **arm.params})
        name, n = safe_name(arm.display), 1
        while name.lower() in folders:                  # --recommenders a,a: one folder each
            n += 1
            name = f"{safe_name(arm.display)}-{n}"
        folders.add(name.lower())
        folder = run_scenario(cfg, out / name, progress=progress)
        run = load_run(folder)
        ts = run.timeseries
        late = ts.iloc[len(ts) * 2 // 3:]                  # the last third of the run
        late_regret = (float(late["regret"].sum() / late["slates"].sum())
                       if late["slates"].sum() and late["regret"].notna().any() else None)
        rows.append({"recommender": arm.display, **{c: run.metrics.get(c) for c in COLUMNS},
                     "regret_per_slate_last_third": late_regret})
        series[arm.display] = run.timeseries
    table = pd.DataFrame(rows)
    table.to_csv(out / "compare.csv", index=False)
    (out / "compare.json").write_text(json.dumps(rows, indent=2))
    _plots(out, series)
    _report(out, scn, table)
    return table


def _plots(out: Path, series: dict[str, pd.DataFrame]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 3.8))
    a, m, b = fig.subplots(1, 3)
    for name, ts in series.items():
        hours = ts["start_minute"] / 60
        a.plot(hours, ts["regret_cumulative"], label=name)
        per = (ts["regret"].rolling(3, min_periods=1).sum() / ts["slates"].rolling(3, min_periods=1).sum())
        m.plot(hours, per, label=name)
        b.plot(hours, ts["ctr"], label=name, alpha=0.8)
    a.set(xlabel="simulated hours", ylabel="sum of (oracle - shown) click prob.", title="Cumulative regret")
    m.set(xlabel="simulated hours", ylabel="regret per slate (3-bin window)", title="Regret per slate over time")
    b.set(xlabel="simulated hours", ylabel="watches / items shown", title="CTR over time")
    for ax in (a, m, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    (out / "plots").mkdir(exist_ok=True)
    fig.savefig(out / "plots" / "regret_and_ctr.png", dpi=110)


def _report(out: Path, scn, table: pd.DataFrame) -> None:
    from recworld.simulator.studies.evaluate import markdown_table

    text = [f"# Recommender comparison: {scn.name}", "",
            f"Same population, seed ({scn.seed}) and {scn.duration_days:g} simulated days for every recommender; "
            "regret is the oracle slate's click probability minus the shown slate's, summed over slates.", "",
            markdown_table(table), "![regret and CTR](plots/regret_and_ctr.png)", "",
            "Each recommender's own run folder (events, report) is in the sub-folder of its name.", ""]
    (out / "report.md").write_text("\n".join(text))
