"""Run a scenario into a run folder, and load a run folder back."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

log = logging.getLogger("recworld")


class Terminated(KeyboardInterrupt):
    """SIGTERM during a run: handled like Ctrl-C (status ``interrupted``, everything written)."""


@contextlib.contextmanager
def sigterm_interrupts():
    """While a run is in the main thread, SIGTERM raises ``Terminated`` instead of killing
    the process with nothing written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

def run_scenario(scenario, out: str | Path | None = None, overrides: list[str] | None = None,
                 progress: bool = True, overwrite: bool = False, resumed: dict | None = None) -> Path:
    """Validate, build and run a scenario; returns the run folder.

    The folder gets ``scenario.yaml`` (resolved), ``events.parquet``, ``users.parquet``,
    ``items.parquet``, ``metrics.json``, ``timeseries.csv``, ``report.md`` and ``plots/``.
    If the run fails or is interrupted, the events so far, the metrics and the report are
    still written (``metrics.json`` -> ``status``), then the error is raised again.
    """
    from recworld.simulator.build import build_parts, build_world
    from recworld.simulator.output.folders import check_out, default_out, prepare_out
    from recworld.simulator.scenario import load_scenario, validate_plugins

    scn = load_scenario(scenario, overrides)
    validate_plugins(scn, str(scenario) if isinstance(scenario, (str, Path)) else None)
    out = Path(out) if out is not None else default_out(None, scn.name, scn.seed)
    check_out(out, overwrite)           # an unsafe --out fails before any work
    t0 = time.perf_counter()
    parts = build_parts(scn, progress=progress)     # data errors surface here, before the run folder exists
    prepare_out(out, overwrite, kind="run")
    (out / "scenario.yaml").write_text(scn.to_yaml(), encoding="utf-8")
    try:
        world = build_world(scn, out, parts)
    except BaseException as e:          # e.g. the LLM endpoint failed its preflight: say so in the folder
        (out / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        (out / "metrics.json").write_text(json.dumps({"status": "failed", "scenario": scn.name, "seed": scn.seed,
                                                      "error": f"{type(e).__name__}: {e}"[:2000]}, indent=2))
        raise
    _write_tables(out, parts)
    status, error = "completed", None
    with sigterm_interrupts():
        try:
            world.run(progress=progress)
        except KeyboardInterrupt as e:
            status, error = "interrupted", e
        except Exception as e:  # noqa: BLE001 - recorded, then re-raised below
            status, error = "failed", e
            (out / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        finally:
            world.close(cancel=status != "completed")
    from recworld.simulator.output.memories import write_memories

    write_memories(out, world, scn.output.html_users, seed=scn.seed)    # also when stopped; never raises
    wall = time.perf_counter() - t0
    try:
        extra = world_stats(world)
        sim_minutes = world.env.now
        # what the world kept (users' states, the recommender's caches, pending processes) is not
        # needed for the metrics and the explorer: freed before they load the event log
        del world
        gc.collect()
        if status == "completed":
            status = llm_status(scn, extra)
        if resumed is not None:
            llm = extra.get("llm") or {}
            extra["resumed"] = dict(resumed, replayed_from_cache=int(llm.get("cache_hits", 0)),
                                    new_calls=int(llm.get("calls", 0)))
            log.info("resumed %s: %d LLM answers replayed from the cache, %d new calls", out,
                     extra["resumed"]["replayed_from_cache"], extra["resumed"]["new_calls"])
        finish(out, scn, parts, sim_minutes=sim_minutes, status=status, wall_seconds=wall,
               extra=extra, overrides=overrides)
    except Exception:
        if error is None:
            raise
        log.exception("could not write metrics/report of the %s run in %s", status, out)
    if error is not None:
        raise error
    return out


def resume_run(path: str | Path, progress: bool = True) -> Path:
    """Continue a run that did not complete (interrupted, failed, degraded or killed) in its
    own folder.  The world is rebuilt from the folder's resolved ``scenario.yaml`` with the
    same seed, so it retraces the same events; every LLM answer the first attempt received
    comes back from the response cache (``llm.cache``) and only what was never answered
    goes to the model.  ``metrics.json`` -> ``resumed`` says how much was replayed."""
    from recworld.simulator.output.folders import is_run_folder
    from recworld.simulator.scenario import load_scenario

    p = Path(path)
    if not is_run_folder(p, "run"):
        raise FileNotFoundError(f"{p} is not a run folder RecWorld created (no .recworld-run.json): nothing to resume")
    if not (p / "scenario.yaml").exists():
        raise FileNotFoundError(f"{p} has no scenario.yaml: the run stopped before it began; start it again")
    previous = {}
    if (p / "metrics.json").exists():
        try:
            previous = json.loads((p / "metrics.json").read_text(encoding="utf-8"))
        except ValueError:
            previous = {}
    if previous.get("status") == "completed":
        raise ValueError(f"{p} holds a completed run: nothing to resume")
    scn = load_scenario(p / "scenario.yaml")
    if not scn.llm.cache:
        log.warning("llm.cache is off for %s: resuming asks the model again for every decision", p)
    return run_scenario(scn, p, progress=progress, overwrite=True,
                        resumed={"previous_status": previous.get("status", "killed")})


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


def llm_status(scn, extra: dict) -> str:
    """``degraded`` when more of the run's LLM requests or decisions fell back than
    ``llm.max_fallback_rate`` allows, else ``completed``."""
    llm = extra.get("llm")
    if not llm:
        return "completed"
    rates = [llm.get("fallbacks", 0) / max(llm.get("requests", 0), 1)]
    if llm.get("brain_decisions"):
        rates.append(llm.get("brain_fallbacks", 0) / llm["brain_decisions"])
    # an LLM recommender's answer that names none of its items is its own fallback (counted in
    # recommender_stats), not a failed request: tiny models do it often, and the run is still whole
    llm["fallback_rate_max"] = round(max(rates), 4)
    return "degraded" if max(rates) > scn.llm.max_fallback_rate else "completed"


def finish(out: Path, scn, parts, sim_minutes: float, status: str, wall_seconds: float,
           extra: dict | None = None, overrides: list[str] | None = None) -> dict:
    """Metrics, time series, ``report.md`` (with plots) and the explorer ``report.html`` from
    the event log in ``out``."""
    import numpy as np

    from recworld.simulator.engine.events import read_events
    from recworld.simulator.output.metrics import compute_metrics, impressions, time_series
    from recworld.simulator.output.provenance import provenance
    from recworld.simulator.output.report import write_report

    events = read_events(out)
    duration = max(float(sim_minutes), 1.0)
    metrics = {"status": status, "scenario": scn.name, "seed": scn.seed,
               "recommender": scn.recommender.name, "brain": scn.population.brain.name,
               "wall_seconds": round(wall_seconds, 3), "simulated_days": round(float(sim_minutes) / 1440.0, 4),
               "overrides": list(overrides or [])}
    imp = impressions(events)           # made once: the metrics, the time series and the report use it
    metrics.update(compute_metrics(events, parts.catalog, len(parts.population), duration, imp=imp))
    metrics.update(extra or {})
    metrics["provenance"] = provenance(scn)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    ts = time_series(events, parts.catalog, duration, imp=imp)
    ts.to_csv(out / "timeseries.csv", index=False)
    shown = (np.bincount(parts.catalog.indices_of(imp["item_id"].to_numpy()), minlength=len(parts.catalog))
             if len(imp) else np.zeros(len(parts.catalog)))
    del events, imp                     # the explorer loads the run afresh: one copy of a big log at a time
    write_report(out, scn, metrics, ts, shown, status=status, plots=scn.output.plots)
    try:                                # the explorer; a failure here costs the page, not the run
        from recworld.simulator.output.html import write_html

        write_html(out, load_run(out), max_users=getattr(scn.output, "html_users", None))
    except Exception:  # noqa: BLE001 - logged with its traceback
        log.exception("could not write report.html in %s", out)
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
    _llm_calls: pd.DataFrame | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, {len(self.events)} events, status={self.metrics.get('status')!r})"

    def of_kind(self, kind: str) -> pd.DataFrame:
        """Events of one kind (``'watch'``, ``'slate'``, ...)."""
        return self.events[self.events["kind"] == kind]

    @property
    def llm_calls(self) -> pd.DataFrame:
        """Every LLM request of the run (``llm_calls.jsonl``): who asked (``user_id``, ``session``,
        ``sim_time``), why (``purpose``), the prompt ``messages`` and the ``answer`` (kept unless
        ``llm.audit: false``), the validated ``parsed`` answer, ``fallback`` and its ``error``,
        calls, tokens, latency, cost and cache hits.  Empty for runs without an LLM."""
        if self._llm_calls is None:
            self._llm_calls = read_llm_calls(self.path)
        return self._llm_calls

    def decisions(self) -> pd.DataFrame:
        """The LLM calls joined to what they decided: for a page decision, the slate it was
        about (``slate_id``, ``items``) and the items the user then watched (``watched``),
        with the ratings (``ratings``); for every call, the activity of the session it was in
        (``activity``).  One row per call, in the order they were made."""
        calls = self.llm_calls
        if calls.empty:
            return calls.assign(slate_id=pd.Series(dtype="Int64"), items=None, watched=None, ratings=None,
                                activity=None)
        ev = self.events
        slates = ev[ev["kind"] == "slate"][["user_id", "time", "slate_id", "items"]]
        slates = slates.rename(columns={"time": "sim_time"}).drop_duplicates(["user_id", "sim_time"])
        out = calls.merge(slates, on=["user_id", "sim_time"], how="left")
        out.loc[out["purpose"] != "page", ["slate_id", "items"]] = None
        watches = ev[ev["kind"] == "watch"].groupby("slate_id")["item_id"].agg(list)
        rates = ev[ev["kind"] == "rate"].groupby("slate_id")["value"].agg(list)
        out["watched"] = out["slate_id"].map(watches)
        out["ratings"] = out["slate_id"].map(rates)
        starts = ev[ev["kind"] == "session_start"].set_index(["user_id", "session"])["text"]
        starts = starts[~starts.index.duplicated()]
        keys = list(zip(out["user_id"], out["session"]))
        out["activity"] = [starts.get(k) if k[1] is not None and not pd.isna(k[1]) else None for k in keys]
        return out


def read_llm_calls(folder: str | Path) -> pd.DataFrame:
    """``llm_calls.jsonl`` of a run folder as a DataFrame (an empty one if there is none; a
    line cut short by a hard kill is skipped)."""
    f = Path(folder) / "llm_calls.jsonl"
    rows = []
    if f.exists():
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    df = pd.DataFrame(rows)
    for col in ("user", "session", "sim_time", "purpose", "messages", "answer", "parsed", "fallback", "error"):
        if col not in df.columns:
            df[col] = None
    df = df.rename(columns={"user": "user_id"})
    df["user_id"] = pd.array(df["user_id"], dtype="Int64")
    df["session"] = pd.array(df["session"], dtype="Int64")
    df["sim_time"] = pd.to_numeric(df["sim_time"], errors="coerce")
    return df


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
