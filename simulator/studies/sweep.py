"""Sweeps: one scenario over seeds and settings, many ordinary runs, results with intervals.

A sweep is a plan of runs: every arm (one combination of the ``sweep.grid`` values, times
each row of ``sweep.zip``) with every seed.  Each (arm, seed) is an ordinary run folder
``ARM-seedN/`` inside the sweep folder, built from its resolved scenario inside the task
that runs it (a started world does not pickle), so a run in a sweep has exactly the events
of the same run alone.

Engines: ``sequential`` runs the tasks one after the other in this process; ``ray`` sends
each run to Ray as a task: a local Ray on this machine's cores, or an existing cluster
(``--address`` or ``RAY_ADDRESS``).  ``auto`` (the default) is Ray when an address is given
and sequential otherwise.  A failed run is recorded and tried again (``sweep.retries``, once
by default); the other runs go on.  Run again into the same folder, a sweep skips the runs
that finished and runs the rest.

Outputs (``write_sweep``): ``sweep.csv`` (one row per run: settings, seed, status, every
metric, the code's commit), ``summary.csv`` (per arm and metric: mean and 95% interval over
seeds), ``differences.csv`` (each arm minus the baseline arm, paired by seed),
``sweep.json`` (plan and state), ``report.md`` and ``plots/``.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import os
import socket
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from recworld.simulator.studies import aggregate

log = logging.getLogger("recworld")

ENGINES = ("auto", "sequential", "ray")
FINISHED = ("completed", "degraded")
SCALE_HINT = "Ray is not installed: pip install 'recworld[scale]' (or run the sweep with --engine sequential)"


# ----------------------------------------------------------------------------- the plan


@dataclass
class Arm:
    """One setting of a sweep: its label and the dotted settings it applies, in order."""

    label: str
    settings: dict[str, Any]
    folder: str                                   # folder-safe stem of its run folders


@dataclass
class RunSpec:
    """One run of a sweep: an arm with a seed, and the resolved scenario the task builds."""

    arm: str
    seed: int
    folder: str
    scenario: dict = field(repr=False)

    @property
    def scenario_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.scenario, sort_keys=False, allow_unicode=True)


@dataclass
class Plan:
    name: str
    scenario: Any                                 # the base Scenario (its sweep section resolved)
    config: Any                                   # SweepConfig
    arms: list[Arm]
    seeds: list[int]
    runs: list[RunSpec]
    baseline: str | None

    @property
    def keys(self) -> list[str]:
        return list(self.config.grid) + list(self.config.zip)


def value_label(v: Any) -> str:
    """A short text for a swept value: a mapping's ``label`` (or its name and parameters)."""
    if isinstance(v, dict):
        if v.get("label"):
            return str(v["label"])
        head = v.get("name", v.get("source"))
        rest = {k: x for k, x in v.items() if k not in ("name", "label", "source") or head is None}
        inner = ",".join(f"{k}={value_label(x)}" for k, x in rest.items())
        if head is None:
            return inner or "{}"
        return f"{head}({inner})" if inner else str(head)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(value_label(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return str(v)


def _strip_label(v: Any) -> Any:
    """A mapping value without its ``label`` key (a label names the arm; it is no setting)."""
    return {k: x for k, x in v.items() if k != "label"} if isinstance(v, dict) else v


def _arm_labels(combos: list[dict[str, Any]], keys: list[str]) -> list[str]:
    varying = [k for k in keys if len({json.dumps(c[k], sort_keys=True, default=str) for c in combos}) > 1]
    if not varying:
        varying = keys
    if not varying:
        return ["base"]
    if len(varying) == 1:
        return [value_label(c[varying[0]]) for c in combos]
    last = [k.split(".")[-1] for k in varying]
    short = {k: (s if last.count(s) == 1 else k) for k, s in zip(varying, last)}
    return [", ".join(f"{short[k]}={value_label(c[k])}" for k in varying) for c in combos]


def _combos(config) -> list[dict[str, Any]]:
    grid_keys = list(config.grid)
    grid = [dict(zip(grid_keys, values)) for values in itertools.product(*config.grid.values())]
    if not config.zip:
        return grid
    n = len(next(iter(config.zip.values())))
    rows = [{k: config.zip[k][i] for k in config.zip} for i in range(n)]
    return [dict(g, **r) for g in grid for r in rows]


def apply_settings(raw: dict, settings: dict[str, Any], base_dir: Path | None = None) -> dict:
    """Set dotted ``settings`` in a scenario dict with ``--set``'s rules (a plug-in's new
    name drops the old one's parameters; relative paths are taken from ``base_dir``)."""
    from recworld.simulator.scenario import PLUGIN_SECTIONS, apply_overrides

    def first(key: str) -> int:           # a section or a plug-in's name before the parameters it resets
        whole = key in ("data",) or key in PLUGIN_SECTIONS
        return 0 if whole else 1 if key == "data.source" or key in {f"{s}.name" for s in PLUGIN_SECTIONS} else 2

    texts = [f"{k}={json.dumps(_strip_label(settings[k]))}" for k in sorted(settings, key=first)]
    return apply_overrides(raw, texts, base_dir)


def make_plan(scenario, config=None, base_dir: str | Path | None = None, check_data: bool = True) -> Plan:
    """Every (arm, seed) of a sweep, each with its resolved and validated scenario.

    ``config``: a ``SweepConfig`` (or a dict); default: the scenario's ``sweep:`` section,
    else 5 seeds of the scenario as it is.  A setting that does not validate is a
    ``ScenarioError`` naming the arm and the field, before anything runs."""
    from recworld.simulator.output.folders import safe_name
    from recworld.simulator.scenario import ScenarioError, SweepConfig, load_scenario, validate_plugins

    scn = load_scenario(scenario)
    if config is None:
        config = scn.sweep or SweepConfig()
    elif isinstance(config, dict):
        try:
            config = SweepConfig.model_validate(config)        # keeps the order of the grid's keys
        except ValueError:                                      # the scenario's errors name the field
            load_scenario(dict(scn.model_dump(mode="json"), sweep=config))
            raise
    keys = list(config.grid) + list(config.zip)
    combos = _combos(config)
    labels = _arm_labels(combos, keys)
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ScenarioError([("sweep", f"two arms would be labelled {dup[0]!r}: give the values labels "
                                       "(a mapping with label: ...)")])
    base = scn.model_dump(mode="json")
    base.update(sweep=None, compare=[])
    folders: set[str] = set()
    arms, runs = [], []
    seeds = config.seed_list(scn.seed)
    base_dir = Path(base_dir) if base_dir is not None else None
    for label, combo in zip(labels, combos):
        stem, n = safe_name(label, 60), 1
        while stem.lower() in folders:
            n += 1
            stem = f"{safe_name(label, 56)}-{n}"
        folders.add(stem.lower())
        raw = apply_settings(json.loads(json.dumps(base)), combo, base_dir)
        try:
            arm_scn = load_scenario(raw)
            validate_plugins(arm_scn, data=check_data)
        except ScenarioError as e:
            raise ScenarioError([(f"sweep arm {label!r}: {f}" if f else f"sweep arm {label!r}", m)
                                 for f, m in e.problems], e.source) from None
        arm = Arm(label, dict(combo), stem)
        arms.append(arm)
        resolved = arm_scn.model_dump(mode="json")
        for seed in seeds:
            cfg = dict(resolved, seed=int(seed))
            runs.append(RunSpec(label, int(seed), f"{stem}-seed{seed}", load_scenario(cfg).model_dump(mode="json")))
    baseline = config.baseline
    if baseline is not None and baseline not in labels:
        raise ScenarioError([("sweep.baseline", f"{baseline!r} is not an arm; the arms are: {', '.join(labels)}")])
    if baseline is None and len(arms) > 1:
        baseline = arms[0].label
    return Plan(scn.name, scn.model_copy(update={"sweep": config}), config, arms, seeds, runs,
                baseline if len(arms) > 1 else None)


# ----------------------------------------------------------------------------- one task


def run_task(task: dict) -> dict:
    """Run one (arm, seed) of a sweep into ``task['out']``, wherever this function executes.

    The world is built here, from the resolved scenario in the task.  Never raises for a
    run that fails: the result says ``failed`` with the error (the run folder has the
    traceback in ``error.txt``)."""
    from recworld.simulator.run import run_scenario

    out = Path(task["out"])
    t0, started, cpu0 = time.perf_counter(), time.time(), time.process_time()
    status, error = "failed", None
    try:
        run_scenario(task["scenario"], out, progress=False, overwrite=True)
        status = "completed"
    except Exception as e:  # noqa: BLE001 - recorded; the sweep goes on
        error = (f"{type(e).__name__}: {e}".strip().splitlines() or [type(e).__name__])[0][:500]
        if not (out / "error.txt").exists() and out.is_dir():
            try:
                (out / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
            except OSError:
                pass
    try:
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        status = str(metrics.get("status", status))
    except (OSError, ValueError):
        pass
    return {"folder": task["folder"], "status": status, "error": error, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - cpu0, "started": started, "ended": time.time(), "host": socket.gethostname(), "pid": os.getpid()}


def run_task_shipped(task: dict) -> dict:
    """``run_task`` into a temporary folder, returning the run folder's files as a tar
    archive (``archive``) for a driver on another machine to unpack."""
    with tempfile.TemporaryDirectory(prefix="recworld-sweep-") as tmp:
        local = dict(task, out=str(Path(tmp) / task["folder"]))
        res = run_task(local)
        buf = io.BytesIO()
        if Path(local["out"]).is_dir():
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                tar.add(local["out"], arcname=".")
        res["archive"] = buf.getvalue()
    return res


def receive(out: Path, result: dict) -> None:
    """Unpack a shipped run folder into ``out / folder`` (replacing an earlier attempt)."""
    from recworld.simulator.output.folders import prepare_out

    data = result.pop("archive", None)
    if not data:
        return
    dest = prepare_out(out / result["folder"], overwrite=True, kind="run")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")


def _ray_task(task: dict, driver_node: str) -> dict:
    """A sweep's task on a Ray worker: write the run folder in place on the driver's node,
    else ship it back."""
    import ray

    if ray.get_runtime_context().get_node_id() == driver_node:
        res = run_task(task)
    else:
        res = run_task_shipped(task)
    res["node"] = ray.get_runtime_context().get_node_id()
    return res


def _ray_probe() -> dict:
    """What a Ray worker has: RecWorld's version (importing it proves it is installed)."""
    from recworld import __version__

    return {"recworld": __version__, "host": socket.gethostname()}


# ----------------------------------------------------------------------------- engines


def resolve_engine(engine: str = "auto", address: str | None = None) -> str:
    """``sequential`` or ``ray``: ``auto`` is Ray when an address is given (``address`` or
    ``RAY_ADDRESS``), else sequential."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        engine = "ray" if (address or os.environ.get("RAY_ADDRESS")) else "sequential"
    if engine == "sequential" and address:
        raise ValueError("--address is a Ray cluster's address: use it with --engine ray (or auto)")
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError(SCALE_HINT) from None
    return engine


def _attempts(task: dict, retries: int, one: Callable[[dict], dict], on_retry) -> dict:
    res: dict = {}
    for attempt in range(1, retries + 2):
        res = one(task)
        res["attempts"] = attempt
        if res["status"] != "failed" or attempt > retries:
            return res
        on_retry(task, res)
    return res


def _sequential(tasks: list[dict], retries: int, on_done, on_retry, ship: bool = False) -> dict:
    one = run_task_shipped if ship else run_task
    for task in tasks:
        res = _attempts(task, retries, one, on_retry)
        on_done(task, res)
    return {"engine": "sequential"}


def _ray_options(resources) -> dict:
    opts: dict = {"num_cpus": float(resources.cpus), "max_retries": 0}   # the sweep retries failed runs itself
    if resources.memory_mb:
        opts["memory"] = int(resources.memory_mb) * 2**20
    if resources.custom:
        opts["resources"] = dict(resources.custom)
    return opts


def _check_cluster(ray, resources, address: str | None) -> None:
    total = ray.cluster_resources()
    need = {"CPU": float(resources.cpus), **{k: float(v) for k, v in resources.custom.items()}}
    if resources.memory_mb:
        need["memory"] = resources.memory_mb * 2**20
    missing = [(k, v) for k, v in need.items() if total.get(k, 0.0) < v]
    if missing:
        have = ", ".join(f"{k} {v:g}" for k, v in sorted(total.items()) if not k.startswith("node:")) or "nothing"
        k, v = missing[0]
        raise ValueError(f"the Ray cluster{f' at {address}' if address else ''} has no {v:g} of resource {k!r} for "
                         f"a run (it has: {have}); start its nodes with e.g. ray start --resources "
                         f"'{{\"{k}\": 1}}', or change sweep.resources")


def _ray(tasks: list[dict], retries: int, on_done, on_retry, resources, address: str | None,
         num_cpus: int | None, progress_cb=None) -> dict:
    import ray

    info: dict = {"engine": "ray"}
    started_here = not ray.is_initialized()
    if started_here:
        t0 = time.perf_counter()
        kw: dict = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        target = address or os.environ.get("RAY_ADDRESS") or "local"
        if target == "local":
            cpus = num_cpus or os.cpu_count() or 1
            kw.update(num_cpus=cpus, resources={k: float(v) * cpus for k, v in resources.custom.items()} or None)
        elif num_cpus:
            log.warning("--num-cpus only sizes a local Ray; the cluster at %s keeps its own", target)
        try:
            ray.init(address=target, **kw)
        except ConnectionError as e:
            hint = ("" if os.environ.get("RAY_AUTH_MODE") else "; if the cluster uses token authentication, set "
                    "RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN, or the token in ~/.ray/auth_token)")
            raise ConnectionError(f"cannot reach the Ray cluster at {target}: {e}{hint}") from None
        info["init_seconds"] = round(time.perf_counter() - t0, 3)
        info["address"] = "local" if target == "local" else target
    try:
        _check_cluster(ray, resources, address)
        probe = ray.get(ray.remote(_ray_probe).options(num_cpus=0).remote(), timeout=600)
        from recworld import __version__

        if probe["recworld"] != __version__:
            log.warning("the Ray workers run recworld %s, this driver %s", probe["recworld"], __version__)
        info["cluster_cpus"] = ray.cluster_resources().get("CPU")
        # through Ray Client (ray://) this process is not on any node: every run folder is shipped back
        try:
            from ray.util.client import ray as client_ray

            client = bool(client_ray.is_connected())
        except ImportError:
            client = False
        driver_node = "" if client else ray.get_runtime_context().get_node_id()
        remote = ray.remote(_ray_task).options(**_ray_options(resources))
        pending: dict = {}

        def submit(task: dict, attempt: int) -> None:
            pending[remote.remote(task, driver_node)] = (task, attempt)

        for task in tasks:
            submit(task, 1)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task, attempt = pending.pop(ref)
                    try:
                        res = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - a worker that died, a task that could not start
                        res = {"folder": task["folder"], "status": "failed",
                               "error": (f"{type(e).__name__}: {e}".strip().splitlines() or ["ray error"])[0][:500]}
                    res["attempts"] = attempt
                    if res["status"] == "failed" and attempt <= retries:
                        on_retry(task, res)
                        submit(task, attempt + 1)
                        continue
                    on_done(task, res)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()
    return info


# ----------------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    """A sweep's folder and tables (``runs`` one row per run; ``summary``, ``differences``
    long tables: arm x metric)."""

    out: Path
    plan: Plan
    runs: pd.DataFrame
    summary: pd.DataFrame
    differences: pd.DataFrame
    status: str
    info: dict
    results: dict = field(default_factory=dict, repr=False)          # by folder: what each task reported
    series: dict = field(default_factory=dict, repr=False)           # by arm: time series of finished runs

    def table(self, metrics: list[str] | None = None) -> pd.DataFrame:
        """One row per arm: seeds, and per metric the mean with its 95% interval."""
        return aggregate.wide(self.summary, metrics or self.plan.config.metrics)


def _finished(folder: Path, spec: RunSpec) -> bool | None:
    """True: the run folder holds this very run, finished; None: it holds another finished
    run (a changed scenario); False: nothing finished there."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        text = (folder / "scenario.yaml").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return False
    if metrics.get("status") not in FINISHED:
        return False
    import yaml

    from recworld.simulator.scenario import load_scenario

    try:
        same = load_scenario(yaml.safe_load(text)).to_yaml() == load_scenario(spec.scenario).to_yaml()
    except Exception:  # noqa: BLE001 - an unreadable old scenario is not this run
        same = False
    return True if same else None


def execute(plan: Plan, out: Path, engine: str = "auto", address: str | None = None, num_cpus: int | None = None,
            progress: bool = True, resume: bool = False, on_change=None) -> tuple[dict[str, dict], dict]:
    """Run the plan's runs into ``out`` (skipping finished ones when ``resume``); returns
    the result of every run by folder name, and what the engine reported."""
    from recworld.simulator.output.progress import progress_bar

    engine = resolve_engine(engine, address)
    results: dict[str, dict] = {}
    todo, changed = [], []
    for spec in plan.runs:
        state = _finished(out / spec.folder, spec) if resume else False
        if state is True:
            results[spec.folder] = {"folder": spec.folder, "status": json.loads(
                (out / spec.folder / "metrics.json").read_text())["status"], "skipped": True, "attempts": 0}
        elif state is None:
            changed.append(spec.folder)
        else:
            todo.append(spec)
    if changed:
        raise FileExistsError(f"{out} holds finished runs of other settings ({', '.join(changed[:3])}"
                              f"{', ...' if len(changed) > 3 else ''}): the scenario changed since; pass --overwrite "
                              "to start the sweep again, or choose another --out")
    if results:
        log.info("sweep %s: %d of %d runs already finished, skipped", out, len(results), len(plan.runs))
    tasks = [{"out": str(out / s.folder), "folder": s.folder, "scenario": s.scenario, "arm": s.arm, "seed": s.seed}
             for s in todo]
    retries = plan.config.retries
    bar = progress_bar(total=len(plan.runs), initial=len(results), desc="sweep", unit="run", enabled=progress,
                       dynamic_ncols=True)
    failed = [0]

    def on_retry(task: dict, res: dict) -> None:
        log.warning("run %s failed (%s); trying it again", task["folder"], res.get("error"))

    def on_done(task: dict, res: dict) -> None:
        receive(out, res)
        results[task["folder"]] = res
        if res["status"] == "failed":
            failed[0] += 1
            log.warning("run %s failed after %d attempt(s): %s", task["folder"], res.get("attempts", 1),
                        res.get("error"))
        bar.update(1)
        if failed[0]:
            bar.set_postfix_str(f"{failed[0]} failed", refresh=False)
        if on_change is not None:
            on_change(results)

    t0 = time.perf_counter()
    try:
        if not tasks:
            info = {"engine": engine}
        elif engine == "ray":
            info = _ray(tasks, retries, on_done, on_retry, plan.config.resources, address, num_cpus)
        else:
            info = _sequential(tasks, retries, on_done, on_retry)
    finally:
        bar.close()
    info["run_seconds"] = round(time.perf_counter() - t0, 3)
    return results, info


def _flatten(metrics: dict) -> dict:
    row: dict = {}
    for k, v in metrics.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            row[k] = v
        elif isinstance(v, dict) and k in ("llm", "recommender_stats"):
            for k2, v2 in v.items():
                if isinstance(v2, (int, float)) and not isinstance(v2, bool):
                    row[f"{k}.{k2}"] = v2
    prov = metrics.get("provenance") or {}
    row["git_commit"] = prov.get("git_commit")
    row["scenario_sha256"] = prov.get("scenario_sha256")
    return row


def _late_regret(ts: pd.DataFrame | None) -> float | None:
    """Regret per slate over the last third of the run (where learning recommenders settle)."""
    if ts is None or "regret" not in ts.columns or not ts["regret"].notna().any():
        return None
    late = ts.iloc[len(ts) * 2 // 3:]
    return float(late["regret"].sum() / late["slates"].sum()) if late["slates"].sum() else None


def collect(plan: Plan, out: Path, results: dict[str, dict]) -> tuple[pd.DataFrame, dict[str, list[pd.DataFrame]]]:
    """The runs table (one row per planned run) and each arm's time series of finished runs."""
    arms = {a.label: a for a in plan.arms}
    rows, series = [], {a.label: [] for a in plan.arms}
    for spec in plan.runs:
        res = results.get(spec.folder, {"status": "not run"})
        folder = out / spec.folder
        row = {"arm": spec.arm, **{k: (value_label(v) if isinstance(v, (dict, list)) else v)
                                   for k, v in arms[spec.arm].settings.items()},
               "seed": spec.seed, "status": res.get("status"), "attempts": res.get("attempts", 0),
               "folder": spec.folder, "error": res.get("error")}
        metrics = {}
        if (folder / "metrics.json").exists():
            try:
                metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
            except ValueError:
                metrics = {}
        if metrics:
            row["status"] = metrics.get("status", row["status"])
            flat = _flatten(metrics)
            flat.pop("seed", None)
            row.update(flat)
        ts = None
        if row["status"] in FINISHED and (folder / "timeseries.csv").exists():
            ts = pd.read_csv(folder / "timeseries.csv")
            series[spec.arm].append(ts)
        late = _late_regret(ts)
        if late is not None:
            row["regret_per_slate_last_third"] = late
        rows.append(row)
    runs = pd.DataFrame(rows)
    return runs, series


def sweep_status(runs: pd.DataFrame, interrupted: bool = False) -> str:
    if interrupted:
        return "interrupted"
    s = set(runs["status"])
    if s <= {"completed"}:
        return "completed"
    if s <= set(FINISHED):
        return "degraded"
    return "failed"


def run_plan(plan: Plan, out: Path, engine: str = "auto", address: str | None = None, num_cpus: int | None = None,
             progress: bool = True, resume: bool = False, on_change=None) -> SweepResult:
    """Execute a plan and aggregate it (nothing written beside the run folders)."""
    interrupted = False
    results: dict[str, dict] = {}
    info: dict = {}

    def keep(r: dict) -> None:
        results.update(r)
        if on_change is not None:
            on_change(r)

    try:
        results, info = execute(plan, out, engine, address, num_cpus, progress, resume, keep)
    except KeyboardInterrupt:
        interrupted = True
    runs, series = collect(plan, out, results)
    metrics = [m for m in aggregate.metric_columns(runs) if m not in plan.keys]
    order = [a.label for a in plan.arms]
    summary = aggregate.summarize(runs, metrics, order=order)
    diffs = (aggregate.paired_differences(runs, plan.baseline, metrics, order=order) if plan.baseline
             else aggregate.paired_differences(runs.iloc[:0], "", metrics))
    return SweepResult(out, plan, runs, summary, diffs, sweep_status(runs, interrupted), info, results, series)


def run_sweep(scenario, out: str | Path | None = None, overrides: list[str] | None = None, config=None,
              engine: str = "auto", address: str | None = None, num_cpus: int | None = None,
              progress: bool = True, overwrite: bool = False, base_dir: str | Path | None = None) -> SweepResult:
    """Run a sweep into ``out`` and write its tables, plots and report.

    ``config``: a ``SweepConfig`` or dict (default: the scenario's ``sweep:`` section).  An
    ``out`` that holds an earlier sweep continues it: finished runs are skipped (a run
    whose settings changed since is an error, unless ``overwrite``, which starts afresh).
    A KeyboardInterrupt is raised again after the results so far are written."""
    from recworld.simulator.output.folders import check_out, default_out, is_run_folder, prepare_out
    from recworld.simulator.scenario import load_scenario

    if base_dir is None and isinstance(scenario, (str, Path)):
        base_dir = Path(scenario).expanduser().resolve().parent
    scn = load_scenario(scenario, overrides)
    plan = make_plan(scn, config, base_dir)
    engine = resolve_engine(engine, address)
    out = Path(out) if out is not None else default_out("sweep", scn.name)
    resume = not overwrite and is_run_folder(out, "sweep")
    if not resume:
        check_out(out, overwrite)
        prepare_out(out, overwrite, "sweep")
    (out / "sweep.yaml").write_text(plan.scenario.to_yaml(), encoding="utf-8")
    log.info("sweep %s: %d runs (%d arm(s) x %d seed(s)) into %s, engine %s%s", scn.name, len(plan.runs),
             len(plan.arms), len(plan.seeds), out, engine, " (continuing: finished runs are skipped)" if resume else "")
    t0 = time.time()
    state = {"status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "engine": engine}

    def on_change(results: dict) -> None:
        _write_state(out, plan, results, state)

    _write_state(out, plan, {}, state)
    result = run_plan(plan, out, engine, address, num_cpus, progress, resume, on_change)
    result.info["wall_seconds"] = round(time.time() - t0, 3)
    write_sweep(result)
    if result.status == "interrupted":
        raise KeyboardInterrupt(f"sweep interrupted; results so far in {out}")
    return result


def _write_state(out: Path, plan: Plan, results: dict, state: dict, extra: dict | None = None) -> None:
    runs = []
    for spec in plan.runs:
        r = results.get(spec.folder, {})
        runs.append({"arm": spec.arm, "seed": spec.seed, "folder": spec.folder, "status": r.get("status", "pending"),
                     "attempts": r.get("attempts", 0), "skipped": bool(r.get("skipped")), "error": r.get("error"),
                     "seconds": round(r["seconds"], 3) if r.get("seconds") is not None else None,
                     "cpu_seconds": round(r["cpu_seconds"], 3) if r.get("cpu_seconds") is not None else None,
                     "host": r.get("host")})
    data = {"scenario": plan.name, **state, **(extra or {}), "seeds": plan.seeds, "baseline": plan.baseline,
            "arms": [{"label": a.label, "settings": a.settings, "folder_stem": a.folder} for a in plan.arms],
            "runs": runs}
    (out / "sweep.json").write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


# ----------------------------------------------------------------------------- outputs


def _jsonable(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records"))


def write_sweep(result: SweepResult) -> None:
    """``sweep.csv``, ``summary.csv``, ``differences.csv``, ``sweep.json``, plots and ``report.md``."""
    from recworld.simulator.output.provenance import provenance

    out, plan = result.out, result.plan
    result.runs.to_csv(out / "sweep.csv", index=False)
    result.summary.to_csv(out / "summary.csv", index=False)
    result.differences.to_csv(out / "differences.csv", index=False)
    plots = write_plots(result, out / "plots")
    results = {r["folder"]: dict(result.results.get(r["folder"], {}), status=r["status"])
               for r in result.runs.to_dict("records")}
    _write_state(out, plan, results, {"status": result.status, **result.info},
                 {"provenance": provenance(plan.scenario)})
    write_report(result, out / "report.md", f"Sweep: {plan.name}", plots)
    from recworld.simulator.output.arms import write_arms_html

    write_arms_html(out, result.runs, result.series, metrics=list(result.summary["metric"].unique())
                    if "metric" in result.summary.columns else None, baseline=plan.baseline, status=result.status,
                    title=f"Sweep: {plan.name}", curves=[("ctr", "CTR (watches / items shown)"),
                                                        ("watches", "watches per time bin")])


def write_plots(result: SweepResult, folder: Path) -> dict[str, Path]:
    plan, made = result.plan, {}
    p = aggregate.plot_metrics(result.summary, plan.config.metrics, folder / "metrics.png",
                               title="mean over seeds, 95% interval")
    if p:
        made["metrics"] = p
    p = aggregate.plot_timeseries(result.series, folder / "timeseries.png", title="mean over seeds, 95% band")
    if p:
        made["timeseries"] = p
    return made


def write_report(result: SweepResult, path: Path, title: str, plots: dict[str, Path], intro: str = "",
                 files: str | None = None) -> None:
    from recworld import __version__
    from recworld.simulator.output.provenance import git_commit

    plan, runs = result.plan, result.runs
    n_done = int(runs["status"].isin(FINISHED).sum())
    bad = runs[~runs["status"].isin(FINISHED)]
    metrics = [m for m in plan.config.metrics if m in set(result.summary["metric"])]
    lines = [f"# {title}", "",
             f"**Status: {result.status}**: {len(runs)} runs ({len(plan.arms)} arm(s) x {len(plan.seeds)} seed(s)), "
             f"{n_done} finished, {len(bad)} not; engine {result.info.get('engine', '?')}"
             + (f", {result.info['wall_seconds']:.0f} s" if result.info.get("wall_seconds") is not None else "")
             + ".", ""]
    if intro:
        lines += [intro, ""]
    lines += [f"Seeds: {', '.join(map(str, plan.seeds))}." + (f" Baseline arm: `{plan.baseline}`." if plan.baseline
                                                               else ""), ""]
    if plan.keys:
        lines += ["## Arms", "", aggregate._md(["arm"] + plan.keys,
                                               [[a.label] + [value_label(a.settings[k]) for k in plan.keys]
                                                for a in plan.arms])]
    lines += ["## Results", "",
              "Mean over seeds and its 95% interval (Student's t over the per-seed values; none with one seed).", "",
              aggregate.summary_markdown(result.summary, metrics) if len(result.summary) else "(no finished runs)\n"]
    if "metrics" in plots:
        lines += [f"![metrics]({plots['metrics'].relative_to(path.parent).as_posix()})", ""]
    if plan.baseline and len(result.differences):
        lines += [f"## Paired differences against `{plan.baseline}`", "",
                  "Each arm minus the baseline on the same seed (same users, same catalog), mean and 95% interval; "
                  "`*`: the interval leaves out zero.", "",
                  aggregate.differences_markdown(result.differences, metrics)]
    if "timeseries" in plots:
        lines += ["## Over time", "", f"![over time]({plots['timeseries'].relative_to(path.parent).as_posix()})", ""]
    lines += ["## Runs", "", files or ("Each run is an ordinary run folder `ARM-seedN/` (events, metrics, report). "
                                        "`sweep.csv` has every run with every metric, `summary.csv` every metric's "
                                        "mean and interval, `differences.csv` the paired differences."), ""]
    if len(bad):
        lines += ["Runs without results:", ""]
        for r in bad.itertuples(index=False):
            lines.append(f"- `{r.folder}`: {r.status}" + (f" after {r.attempts} attempt(s)" if r.attempts else "")
                         + (f": {r.error}" if isinstance(r.error, str) and r.error else ""))
        lines.append("")
    commit = git_commit()
    lines += ["## Provenance", "", f"recworld {__version__}" + (f", commit {commit}" if commit else "")
              + f"; scenario `{plan.name}` (every run's `metrics.json` has its own provenance).", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def summary_text(result: SweepResult, metrics: list[str] | None = None, limit: int = 5) -> str:
    """The printed summary: mean [95% interval] per arm, and the paired differences."""
    metrics = [m for m in (metrics or result.plan.config.metrics) if m in set(result.summary["metric"])][:limit]
    text = aggregate.summary_markdown(result.summary, metrics) if metrics else ""
    if result.plan.baseline and len(result.differences) and metrics:
        text += f"\ndifference from {result.plan.baseline} (same seeds; * = interval leaves out zero):\n"
        text += aggregate.differences_markdown(result.differences, metrics)
    return text


def seconds_text(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f} s"
