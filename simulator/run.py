"""Run a scenario into a run folder, and load a run folder back."""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

log = logging.getLogger("recworld")

RUN_MARKERS = ("scenario.yaml", "events.parquet", "events.parts")


def default_out(scenario) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{scenario.name}-seed{scenario.seed}-{stamp}"


def _holds_run(out: Path) -> bool:
    return out.exists() and any((out / m).exists() for m in RUN_MARKERS)


def _prepare(out: Path) -> None:
    """An empty run folder (an earlier run in it is removed: the caller checked --overwrite)."""
    if _holds_run(out):
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run_scenario(scenario, out: str | Path | None = None, overrides: list[str] | None = None,
                 progress: bool = True, overwrite: bool = False) -> Path:
    """Validate, build and run a scenario; returns the run folder.

    The folder gets ``scenario.yaml`` (resolved), ``events.parquet``, ``users.parquet``,
    ``items.parquet``, ``metrics.json``, ``timeseries.csv``, ``report.md`` and ``plots/``.
    If the run fails or is interrupted, the events so far, the metrics and the report are
    still written (``metrics.json`` -> ``status``), then the error is raised again.
    """
    from recworld.simulator.build import build_parts, build_world
    from recworld.simulator.scenario import load_scenario, validate_plugins

    scn = load_scenario(scenario, overrides)
    validate_plugins(scn, str(scenario) if isinstance(scenario, (str, Path)) else None)
    out = Path(out) if out is not None else default_out(scn)
    if _holds_run(out) and not overwrite:
        raise FileExistsError(f"{out} already holds a run; choose another --out or pass --overwrite")
    t0 = time.perf_counter()
    parts = build_parts(scn)            # data errors surface here, before the run folder exists
    _prepare(out)
    (out / "scenario.yaml").write_text(scn.to_yaml(), encoding="utf-8")
    world = build_world(scn, out, parts)
    _write_tables(out, parts)
    status, error = "completed", None
    try:
        world.run(progress=progress)
    except KeyboardInterrupt as e:
        status, error = "interrupted", e
    except Exception as e:  # noqa: BLE001 - recorded, then re-raised below
        status, error = "failed", e
        (out / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
    finally:
        world.close()
    wall = time.perf_counter() - t0
    try:
        finish(out, scn, parts, sim_minutes=world.env.now, status=status, wall_seconds=wall,
               extra=world_stats(world))
    except Exception:
        if error is None:
            raise
        log.exception("could not write metrics/report of the %s run in %s", status, out)
    if error is not None:
        raise error
    return out


def _write_tables(out: Path, parts) -> None:
    users = parts.population.profiles.copy()
    users["n_friends"] = parts.graph.degrees()
    users.to_parquet(out / "users.parquet", index=False)
    items = parts.catalog.items.copy()
    items["genres"] = items["genres"].map(list)
    items.to_parquet(out / "items.parquet", index=False)


def world_stats(world) -> dict:
    """What the world's parts counted: LLM totals (``llm``), lookahead batches, recommender counters."""
    extra: dict = {}
    if world.llm is not None:
        extra["llm"] = world.llm.metrics()
        if world.batcher is not None:
            extra["llm"]["batching"] = world.batcher.stats()
        decisions = sum(b.decisions for b in world.distinct_brains)
        if decisions:
            extra["llm"]["brain_decisions"] = decisions
            extra["llm"]["brain_fallbacks"] = sum(b.fallbacks for b in world.distinct_brains)
    stats = world.recommender.stats()
    if stats:
        extra["recommender_stats"] = stats
    return extra


def finish(out: Path, scn, parts, sim_minutes: float, status: str, wall_seconds: float,
           extra: dict | None = None) -> dict:
    """Metrics, time series and report from the event log in ``out``."""
    import numpy as np

    from recworld.simulator.engine.events import read_events
    from recworld.simulator.output.metrics import compute_metrics, impressions, time_series
    from recworld.simulator.output.report import write_report

    events = read_events(out)
    duration = max(float(sim_minutes), 1.0)
    metrics = {"status": status, "scenario": scn.name, "seed": scn.seed,
               "recommender": scn.recommender.name, "brain": scn.population.brain.name,
               "wall_seconds": round(wall_seconds, 3)}
    metrics.update(compute_metrics(events, parts.catalog, len(parts.population), duration))
    metrics.update(extra or {})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    ts = time_series(events, parts.catalog, duration)
    ts.to_csv(out / "timeseries.csv", index=False)
    imp = impressions(events)
    shown = (np.bincount(parts.catalog.indices_of(imp["item_id"].to_numpy()), minlength=len(parts.catalog))
             if len(imp) else np.zeros(len(parts.catalog)))
    write_report(out, scn, metrics, ts, shown, status=status, plots=scn.output.plots)
    return metrics


@dataclass
class Run:
    """A run folder loaded back: pandas tables plus the metrics and the resolved scenario."""

    path: Path
    events: pd.DataFrame
    metrics: dict
    scenario: dict
    users: pd.DataFrame | None = None
    items: pd.DataFrame | None = None
    timeseries: pd.DataFrame | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, {len(self.events)} events, status={self.metrics.get('status')!r})"

    def of_kind(self, kind: str) -> pd.DataFrame:
        """Events of one kind (``'watch'``, ``'slate'``, ...)."""
        return self.events[self.events["kind"] == kind]


def load_run(path: str | Path) -> Run:
    """Load a run folder written by ``recworld run`` (also a crashed one: its events survive)."""
    import yaml

    from recworld.simulator.engine.events import read_events

    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"run folder {p} does not exist")
    events = read_events(p)

    def opt(name, reader):
        f = p / name
        return reader(f) if f.exists() else None

    metrics = opt("metrics.json", lambda f: json.loads(f.read_text())) or {}
    scenario = opt("scenario.yaml", lambda f: yaml.safe_load(f.read_text())) or {}
    return Run(p, events, metrics, scenario,
               users=opt("users.parquet", pd.read_parquet),
               items=opt("items.parquet", pd.read_parquet),
               timeseries=opt("timeseries.csv", pd.read_csv))
