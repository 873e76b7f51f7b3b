"""Online comparison: several recommenders on the same populations, over several seeds.

A comparison is a sweep over the recommender (``recworld.simulator.studies.sweep``): every
arm runs with every seed (5 by default: the scenario's seed and the next four), each run a
full world in its own run folder ``ARM-seedN/`` with the oracle on, so each slate's true
click probability and the best possible slate's are logged.  Within a seed every arm meets
the same users and catalog.  The table gives each metric's mean over seeds with its 95%
interval, and the paired differences against a baseline arm (``random`` when it is one of
the arms, else the first); the plots show regret and CTR over time with 95% bands.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from recworld.simulator.output.arms import COMPARE_COLUMNS as COLUMNS  # noqa: E402 - the report pages use them too
#: the metrics ``recworld compare`` prints (the report and compare.csv have all of COLUMNS)
PRINTED = ["ctr", "watches", "catalog_coverage", "exposure_gini", "regret_per_slate"]
DEFAULT_SEEDS = 5


def _arms(scn, names: list[str] | None):
    from recworld.simulator.scenario import CompareEntry, ScenarioError

    arms = [CompareEntry(name=n) for n in names] if names else list(scn.compare)
    if not arms:
        raise ScenarioError([("compare", "no recommenders to compare: add a compare: list to the scenario "
                                         "or pass --recommenders a,b,c")])
    values, seen = [], set()
    for arm in arms:
        label, n = arm.display, 1
        while label.lower() in seen:                      # --recommenders a,a: one arm (and folder) each
            n += 1
            label = f"{arm.display}-{n}"
        seen.add(label.lower())
        values.append({"name": arm.name, **arm.params, "label": label})
    return values


def compare(scenario, out: str | Path, overrides=None, names: list[str] | None = None, progress: bool = True,
            overwrite: bool = False, seeds: int | list[int] = DEFAULT_SEEDS, baseline: str | None = None,
            engine: str = "auto", address: str | None = None, num_cpus: int | None = None) -> pd.DataFrame:
    """Run every arm (``scenario.compare`` or ``names``) with every seed; returns the table:
    one row per recommender with ``n_seeds`` and, per metric, its mean (``ctr``) and 95%
    interval over seeds (``ctr_low``, ``ctr_high``).

    ``out`` must be new or empty (or, with ``overwrite``, an earlier comparison: see
    ``prepare_out``).  ``seeds``: a count (from the scenario's seed on) or a list.
    ``engine``/``address``: as for ``recworld sweep`` (in-process unless Ray is asked for)."""
    return run_compare(scenario, out, overrides, names, progress, overwrite, seeds, baseline, engine, address,
                       num_cpus)[0]


def run_compare(scenario, out: str | Path, overrides=None, names: list[str] | None = None, progress: bool = True,
                overwrite: bool = False, seeds: int | list[int] = DEFAULT_SEEDS, baseline: str | None = None,
                engine: str = "auto", address: str | None = None, num_cpus: int | None = None):
    """``compare``, returning the table and the ``SweepResult`` (runs, summary, differences)."""
    from recworld.simulator.output.folders import check_out, prepare_out
    from recworld.simulator.scenario import SweepConfig, load_scenario
    from recworld.simulator.studies import aggregate
    from recworld.simulator.studies.sweep import make_plan, resolve_engine, run_plan

    base_dir = Path(scenario).expanduser().resolve().parent if isinstance(scenario, (str, Path)) else None
    scn = load_scenario(scenario, overrides)
    values = _arms(scn, names)
    labels = [v["label"] for v in values]
    if baseline is None:
        baseline = "random" if "random" in labels else labels[0]
    base = scn.model_dump(mode="json")
    base["output"]["oracle"] = True
    config = SweepConfig(seeds=seeds, grid={"recommender": values}, baseline=baseline, metrics=COLUMNS)
    plan = make_plan(base, config, base_dir)
    engine = resolve_engine(engine, address)
    out = Path(out)
    check_out(out, overwrite)
    out = prepare_out(out, overwrite, "compare")
    result = run_plan(plan, out, engine, address, num_cpus, progress)
    table = aggregate.wide(result.summary, COLUMNS).rename(columns={"arm": "recommender"})
    table.to_csv(out / "compare.csv", index=False)
    data = {"scenario": scn.name, "status": result.status, "seeds": plan.seeds, "baseline": baseline,
            "engine": result.info.get("engine"), "interval": "95% Student t over seeds",
            "table": json.loads(table.to_json(orient="records")),
            "differences": json.loads(result.differences.to_json(orient="records")),
            "runs": json.loads(result.runs.to_json(orient="records"))}
    (out / "compare.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    plots = {}
    p = aggregate.plot_timeseries(result.series, out / "plots" / "regret_and_ctr.png", columns=[
        ("regret_cumulative", "cumulative regret (oracle - shown click prob.)"),
        ("regret", "regret per time bin (sum over slates)"), ("ctr", "CTR (watches / items shown)")],
        title=f"mean over {len(plan.seeds)} seed(s), 95% band")
    if p:
        plots["timeseries"] = p
    p = aggregate.plot_metrics(result.summary, COLUMNS, out / "plots" / "metrics.png",
                               title="mean over seeds, 95% interval")
    if p:
        plots["metrics"] = p
    from recworld.simulator.studies.sweep import write_report

    write_report(result, out / "report.md", f"Recommender comparison: {scn.name}", plots,
                 intro=(f"Every recommender runs on the same populations: seed by seed, the same users and catalog, "
                        f"{scn.duration_days:g} simulated days. Regret is the oracle slate's click probability minus "
                        "the shown slate's, summed over slates."),
                 files=("Each run is an ordinary run folder `ARM-seedN/` (events, metrics, report). `compare.csv` "
                        "has the table (mean and interval per metric), `compare.json` the table, the paired "
                        "differences and every run."))
    from recworld.simulator.output.arms import write_arms_html

    write_arms_html(out, result.runs, result.series, metrics=COLUMNS, baseline=baseline, status=result.status,
                    title=f"Recommender comparison: {scn.name}",
                    curves=[("ctr", "CTR (watches / items shown)"), ("regret_cumulative", "cumulative regret"),
                            ("watches", "watches per time bin")])
    if result.status == "interrupted":
        raise KeyboardInterrupt(f"comparison interrupted; results so far in {out}")
    return table, result


def printed_table(table: pd.DataFrame, metrics: list[str] = PRINTED) -> str:
    """The comparison as ``recworld compare`` prints it: mean [95% interval] per metric."""
    from recworld.simulator.studies.aggregate import _md, with_interval

    metrics = [m for m in metrics if m in table.columns]
    rows = [[str(r["recommender"]), str(int(r["n_seeds"]))]
            + [with_interval(r[m], r.get(f"{m}_low"), r.get(f"{m}_high")) for m in metrics]
            for _, r in table.iterrows()]
    return _md(["recommender", "seeds"] + metrics, rows)
