"""The ``recworld`` command.

Each subcommand is a pair of small functions in ``COMMANDS``: one adds its arguments, one
runs it and returns the exit code.  ``main`` parses, sets up logging, dispatches, and turns
the errors a user can cause (a bad scenario, a missing file, an output folder in the way)
into one ``error: ...`` line on stderr and a nonzero exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

#: exit codes
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEGRADED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: a run's ``metrics.json`` status -> exit code of ``recworld run``
STATUS_EXIT = {"completed": EXIT_OK, "degraded": EXIT_DEGRADED, "failed": EXIT_FAILED,
               "interrupted": EXIT_INTERRUPTED}


def _add_set(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a scenario field, e.g. --set population.size=100 (repeatable)")


def _add_overwrite(sp: argparse.ArgumentParser, what: str = "output") -> None:
    sp.add_argument("--overwrite", action="store_true",
                    help=f"replace an earlier {what} in --out (only a folder RecWorld wrote, holding nothing else)")


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",")] if text else None


@contextlib.contextmanager
def _output_folder(out: Path, overwrite: bool, kind: str):
    """``prepare_out`` for a study; if the study fails before writing anything, the folder
    is taken back (no empty folders left under runs/)."""
    from recworld.simulator.output.folders import discard_if_unused, prepare_out

    existed = os.path.lexists(out)
    path = prepare_out(out, overwrite, kind)
    try:
        yield path
    except BaseException:
        discard_if_unused(path, existed=existed)
        raise


# ----------------------------------------------------------------------------- run


def _add_run(r: argparse.ArgumentParser) -> None:
    r.add_argument("scenario", nargs="?", help="scenario YAML file")
    r.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run that did not complete, in its folder: LLM answers it already received "
                        "are replayed from the response cache, only the rest go to the model")
    r.add_argument("--out", help="run folder (default: runs/NAME-seedN-TIMESTAMP)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace an existing run in --out (only a folder RecWorld wrote, holding nothing else)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_set(r)


def _run_status(out: Path, since: float) -> dict | None:
    """The metrics of the run written to ``out`` since ``since`` (None if it did not get that far)."""
    f = out / "metrics.json"
    try:
        if f.stat().st_mtime < since - 1:
            return None
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _cmd_run(args) -> int:
    from recworld.simulator.output.folders import check_out, default_out
    from recworld.simulator.run import run_scenario
    from recworld.simulator.scenario import load_scenario

    if args.resume:
        if args.scenario or args.out or args.overrides or args.overwrite:
            raise ValueError("--resume RUN_DIR takes the scenario, its settings and the folder from RUN_DIR: "
                             "give no scenario, --out, --set or --overwrite with it")
        from recworld.simulator.run import resume_run

        out, t0 = Path(args.resume), time.time()
        run = lambda: resume_run(out, progress=not args.no_progress)  # noqa: E731
    else:
        if not args.scenario:
            raise ValueError("give a scenario file (recworld run SCENARIO) or --resume RUN_DIR")
        scn = load_scenario(args.scenario, args.overrides)     # a bad scenario is named before any folder
        out = Path(args.out) if args.out else default_out(None, scn.name, scn.seed)
        check_out(out, args.overwrite)                    # before the world is built: fail fast
        t0 = time.time()
        run = lambda: run_scenario(args.scenario, out, args.overrides, progress=not args.no_progress,  # noqa: E731
                                   overwrite=args.overwrite)
    try:
        out = run()
    except (Exception, KeyboardInterrupt) as e:
        metrics = _run_status(out, t0)
        if metrics is None:                           # stopped before the run started: raised as it is
            raise
        status = str(metrics.get("status", "failed"))
        print(f"run folder: {out}")
        print(f"status: {status} ({out})")
        if isinstance(e, KeyboardInterrupt):
            print(f"interrupted: events so far, metrics and report were written to {out}", file=sys.stderr)
            return EXIT_INTERRUPTED
        trace = out / "error.txt"
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        print(f"error: the run failed: {reason}; events so far, metrics and report are in {out}"
              + (f" (traceback in {trace})" if trace.exists() else ""), file=sys.stderr)
        return EXIT_FAILED
    metrics = json.loads((out / "metrics.json").read_text())
    keys = ("sessions", "slates_shown", "ctr", "watches", "mean_rating", "catalog_coverage",
            "exposure_gini", "chats", "posts", "post_reach_mean")
    print(f"run folder: {out}")
    print("  " + "  ".join(f"{k}={metrics[k]:.4g}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}"
                           for k in keys if metrics.get(k) is not None))
    print(f"  report: {out / 'report.md'}")
    resumed = metrics.get("resumed")
    if resumed:
        print(f"  resumed: replayed {resumed['replayed_from_cache']} LLM answers from the cache, "
              f"{resumed['new_calls']} new calls (previous status: {resumed.get('previous_status')})")
    llm = metrics.get("llm") or {}
    if llm:
        reasons = ", ".join(f"{k} {v}" for k, v in (llm.get("fallback_reasons") or {}).items())
        print(f"  llm: {llm.get('requests', 0)} requests, {llm.get('calls', 0)} calls, "
              f"{llm.get('fallbacks', 0)} fallbacks" + (f" ({reasons})" if reasons else ""))
    status = str(metrics.get("status", "completed"))
    print(f"status: {status} ({out})")
    code = STATUS_EXIT.get(status, EXIT_FAILED)
    if code != EXIT_OK:
        print(f"error: the run ended {status}; see {out / 'report.md'}", file=sys.stderr)
    return code


# ----------------------------------------------------------------------------- validate, list


def _add_validate(v: argparse.ArgumentParser) -> None:
    v.add_argument("scenario")
    v.add_argument("--print", action="store_true", help="print the resolved scenario")
    _add_set(v)


def _cmd_validate(args) -> int:
    from recworld.simulator.scenario import load_scenario, validate_plugins

    scn = load_scenario(args.scenario, args.overrides)
    validate_plugins(scn, args.scenario)
    if args.print:
        print(scn.to_yaml(), end="")
    else:
        print(f"{args.scenario}: valid")
    return EXIT_OK


def _add_list(ls: argparse.ArgumentParser) -> None:
    ls.add_argument("kind", nargs="?", choices=["recommenders", "brains"])


def _cmd_list(args) -> int:
    from recworld.simulator.registry import available

    for kind in [args.kind] if args.kind else ["recommenders", "brains"]:
        print(f"{kind}:")
        for name, target in available(kind).items():
            print(f"  {name:<14} {target}")
    return EXIT_OK


# ----------------------------------------------------------------------------- train


def _add_train(t: argparse.ArgumentParser) -> None:
    t.add_argument("scenario")
    t.add_argument("--algo", default="ppo", choices=["ppo", "a2c"])
    t.add_argument("--steps", type=int, default=30_000, help="training steps (default 30000)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="output folder (default: runs/train-NAME-ALGO-TIMESTAMP)")
    _add_overwrite(t, "training output")
    t.add_argument("--eval-seeds", type=int, default=5)
    t.add_argument("--eval-episodes", type=int, default=100)
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--engine", choices=["sb3", "rllib"], default="sb3",
                   help="'sb3' (default): stable-baselines3 in this process (recworld[rl]); 'rllib': PPO on RLlib with "
                        "env runners on a local Ray or the cluster at --address (recworld[rllib])")
    t.add_argument("--address", help="with --engine rllib: a Ray cluster's address (default: $RAY_ADDRESS, else a "
                                      "local Ray)")
    t.add_argument("--env-runners", type=int, default=1, help="with --engine rllib: env runner actors (default 1; "
                                                             "0 samples in this process)")
    t.add_argument("--envs-per-runner", type=int, default=4, help="with --engine rllib: envs each runner steps "
                                                                  "(default 4)")
    t.add_argument("--num-cpus", type=int, help="with --engine rllib: CPUs of the local Ray (default: all)")
    _add_set(t)


def _cmd_train(args) -> int:
    from recworld.simulator.output.folders import check_out, default_out
    from recworld.simulator.scenario import load_scenario, validate_plugins

    scn = load_scenario(args.scenario, args.overrides)
    validate_plugins(scn, args.scenario)
    if args.steps < 1 or args.eval_seeds < 1 or args.eval_episodes < 1:
        raise ValueError("--steps, --eval-seeds and --eval-episodes must be positive")
    tag = args.algo if args.engine == "sb3" else f"{args.algo}-{args.engine}"
    out = Path(args.out) if args.out else default_out("train", f"{scn.name}-{tag}")
    check_out(out, args.overwrite)
    try:
        from recworld.simulator.studies.rl import train_and_evaluate
        if args.engine == "rllib":
            from recworld.simulator.studies.rllib import check_installed
            check_installed()
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    with _output_folder(out, args.overwrite, "train"):
        res = train_and_evaluate(scn, out, args.algo, args.steps, args.seed, eval_seeds=args.eval_seeds,
                                 eval_episodes=args.eval_episodes, progress=not args.no_progress,
                                 engine=args.engine, address=args.address, env_runners=args.env_runners,
                                 envs_per_runner=args.envs_per_runner, num_cpus=args.num_cpus)
    from recworld.simulator.studies.rl import evaluation_lines

    print(f"policy: {res['model']}")
    from recworld.simulator.studies.rl import speed_line

    speed = speed_line(res.get("speed") or {})
    if speed:
        print(f"training speed: {speed}")
    for line in evaluation_lines(res["results"], scn.env.reward):
        print(line)
    print(f"  results: {out / 'results.json'}, report: {out / 'report.md'}, plots: {out / 'plots'}")
    return EXIT_OK


# ----------------------------------------------------------------------------- evaluate


def _add_evaluate(e: argparse.ArgumentParser) -> None:
    e.add_argument("--data", help="MovieLens folder (ml-latest-small layout; default: the bundled sample)")
    e.add_argument("--recommenders", help="comma-separated names (default: every registered one that works offline)")
    e.add_argument("--k", type=int, default=10)
    e.add_argument("--users", type=int, help="evaluate a random sample of this many users")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--llm-users", type=int, default=20,
                   help="users sampled for the LLM recommenders (llm_ranker, toolrec); default 20")
    e.add_argument("--llm-model", default="embedded",
                   help="LLM for them: 'embedded' (local, default) or a litellm model name")
    e.add_argument("--out", help="folder for offline_eval.{csv,json,md} (default: runs/evaluate-TIMESTAMP)")
    _add_overwrite(e, "evaluation")
    e.add_argument("--no-progress", action="store_true")


def _cmd_evaluate(args) -> int:
    from recworld.simulator.output.folders import check_out, default_out
    from recworld.simulator.registry import available
    from recworld.simulator.studies.evaluate import evaluate_offline, markdown_table, write_results

    names = _names(args.recommenders)
    unknown = [n for n in names or [] if n not in available("recommenders")]
    if unknown:
        raise ValueError(f"unknown recommender(s) {', '.join(unknown)}; known: {', '.join(available('recommenders'))}")
    if args.k < 1 or (args.users is not None and args.users < 1):
        raise ValueError("--k and --users must be positive")
    if args.llm_users < 1:
        raise ValueError("--llm-users must be positive")
    out = Path(args.out) if args.out else default_out("evaluate", None)
    check_out(out, args.overwrite)                    # before the (long) evaluation
    table = evaluate_offline(args.data, names, k=args.k, max_users=args.users, seed=args.seed,
                             progress=not args.no_progress, llm_users=args.llm_users,
                             llm={"model": args.llm_model})
    out = write_results(table, out, {"data": args.data or "bundled sample", "k": args.k, "seed": args.seed},
                        overwrite=args.overwrite)
    print(markdown_table(table), end="")
    print(f"written to {Path(out) / 'offline_eval.json'}")
    return EXIT_OK


# ----------------------------------------------------------------------------- compare


def _add_compare(c: argparse.ArgumentParser) -> None:
    c.add_argument("scenario")
    c.add_argument("--recommenders", help="comma-separated names (default: the scenario's compare: list)")
    c.add_argument("--seeds", default="5",
                   help="a count (the scenario's seed and the next ones) or a list: 5 (default), or 1,2,3")
    c.add_argument("--baseline", help="the arm the others are compared with, seed by seed "
                                      "(default: random if it is an arm, else the first)")
    _add_engine(c)
    c.add_argument("--out", help="output folder (default: runs/compare-NAME-TIMESTAMP)")
    _add_overwrite(c, "comparison")
    c.add_argument("--no-progress", action="store_true")
    _add_set(c)


def _seeds_arg(text: str) -> int | list[int]:
    try:
        parts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        parts = []
    if not parts:
        raise ValueError(f"--seeds takes a count or a list of seeds (5, or 1,2,3), got {text!r}")
    return parts if "," in text else parts[0]


def _cmd_compare(args) -> int:
    from recworld.simulator.output.folders import check_out, default_out
    from recworld.simulator.scenario import load_scenario, validate_plugins
    from recworld.simulator.studies.aggregate import differences_markdown
    from recworld.simulator.studies.compare import PRINTED, printed_table, run_compare

    scn = load_scenario(args.scenario, args.overrides)
    validate_plugins(scn, args.scenario)
    seeds = _seeds_arg(args.seeds)
    out = Path(args.out) if args.out else default_out("compare", scn.name)
    check_out(out, args.overwrite)
    try:
        table, res = run_compare(args.scenario, out, args.overrides, names=_names(args.recommenders),
                                 progress=not args.no_progress, overwrite=args.overwrite, seeds=seeds,
                                 baseline=args.baseline, engine=args.engine, address=args.address,
                                 num_cpus=args.num_cpus)
    except ImportError as e:
        return _error(str(e), EXIT_USAGE)
    except ConnectionError as e:
        return _error(str(e), EXIT_FAILED)
    print(f"mean over {len(res.plan.seeds)} seed(s) [95% interval]:")
    print(printed_table(table), end="")
    if len(res.differences):
        print(f"difference from {res.plan.baseline}, paired by seed (* = the interval leaves out zero):")
        print(differences_markdown(res.differences, PRINTED), end="")
    print(f"report: {out}/report.md")
    code = STATUS_EXIT.get(res.status, EXIT_FAILED)
    if code != EXIT_OK:
        bad = res.runs[~res.runs["status"].isin(["completed", "degraded"])]
        print(f"error: the comparison ended {res.status} ({', '.join(bad['folder'])} did not finish); "
              f"see {out}/report.md", file=sys.stderr)
    return code


# ----------------------------------------------------------------------------- sweep


def _add_engine(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--engine", choices=["auto", "sequential", "ray"], default="auto",
                    help="where the runs go: 'sequential' (this process, one after the other), 'ray' (a local Ray "
                         "on this machine's cores, or the cluster at --address / $RAY_ADDRESS; needs recworld[scale]); "
                         "'auto' (default): Ray when an address is given, else sequential")
    sp.add_argument("--address", help="a Ray cluster's address (e.g. 127.0.0.1:6379 or ray://host:10001); "
                                      "default: $RAY_ADDRESS")
    sp.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all of this machine's)")


def _add_sweep(s: argparse.ArgumentParser) -> None:
    s.add_argument("scenario", help="scenario YAML; its sweep: section gives seeds and settings (flags override it)")
    s.add_argument("--seeds", help="a count (the scenario's seed and the next ones) or a list: 5, or 1,2,3")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a dotted setting and its values, e.g. --grid recommender.name=random,popularity "
                        "(repeatable: the product is taken; a YAML list [..] for values with commas)")
    s.add_argument("--zip", action="append", default=[], metavar="KEY=V1,V2",
                   help="settings that vary together (equal-length lists; repeatable)")
    s.add_argument("--baseline", help="the arm the others are compared with, seed by seed (default: the first)")
    s.add_argument("--retries", type=int, help="tries again for a failed run (default: sweep.retries, 1)")
    s.add_argument("--cpus-per-run", type=float, help="CPUs each run reserves on Ray (default 1)")
    s.add_argument("--resource", action="append", default=[], metavar="NAME=AMOUNT",
                   help="a custom Ray resource each run needs, e.g. llm_endpoint=1 (repeatable)")
    _add_engine(s)
    s.add_argument("--out", help="sweep folder (default: runs/sweep-NAME-TIMESTAMP); an earlier sweep's folder "
                                 "continues it: finished runs are skipped")
    _add_overwrite(s, "sweep")
    s.add_argument("--no-progress", action="store_true")
    _add_set(s)


def _sweep_values(text: str, flag: str) -> tuple[str, list]:
    from recworld.simulator.scenario import parse_override

    if "=" not in text:
        raise ValueError(f"{flag} takes KEY=V1,V2,..., got {text!r}")
    key, _, values = text.partition("=")
    if values.strip().startswith("["):
        _, parsed = parse_override(f"{key}={values}")
        if not isinstance(parsed, list):
            raise ValueError(f"{flag} {key}: not a list: {values!r}")
        return key.strip(), parsed
    return key.strip(), [parse_override(f"{key}={v}")[1] for v in values.split(",")]


def _sweep_config(scn, args) -> dict:
    """The scenario's sweep: section with the command line's flags laid over it."""
    cfg = scn.sweep.model_dump(mode="json") if scn.sweep is not None else {}
    if args.seeds:
        cfg["seeds"] = _seeds_arg(args.seeds)
    for flag, section in (("--grid", "grid"), ("--zip", "zip")):
        for text in getattr(args, section):
            key, values = _sweep_values(text, flag)
            cfg.setdefault(section, {})[key] = values
    if args.baseline:
        cfg["baseline"] = args.baseline
    if args.retries is not None:
        cfg["retries"] = args.retries
    res = cfg.setdefault("resources", {})
    if args.cpus_per_run is not None:
        res["cpus"] = args.cpus_per_run
    for text in args.resource:
        name, _, amount = text.partition("=")
        try:
            res.setdefault("custom", {})[name.strip()] = float(amount)
        except ValueError:
            raise ValueError(f"--resource takes NAME=AMOUNT, e.g. llm_endpoint=1, got {text!r}") from None
    return cfg


def _cmd_sweep(args) -> int:
    from recworld.simulator.output.folders import default_out
    from recworld.simulator.scenario import load_scenario
    from recworld.simulator.studies.sweep import run_sweep, summary_text

    scn = load_scenario(args.scenario, args.overrides)
    cfg = _sweep_config(scn, args)
    out = Path(args.out) if args.out else default_out("sweep", scn.name)
    try:
        res = run_sweep(args.scenario, out, args.overrides, config=cfg, engine=args.engine, address=args.address,
                        num_cpus=args.num_cpus, progress=not args.no_progress, overwrite=args.overwrite)
    except ImportError as e:
        return _error(str(e), EXIT_USAGE)
    except ConnectionError as e:
        return _error(str(e), EXIT_FAILED)
    runs = res.runs
    skipped = sum(1 for r in res.results.values() if r.get("skipped"))
    print(f"sweep folder: {out}")
    print(summary_text(res), end="")
    print(f"  report: {out / 'report.md'}   runs: {out / 'sweep.csv'}   summary: {out / 'summary.csv'}")
    print(f"status: {res.status} ({len(runs)} runs: {int(runs['status'].isin(['completed', 'degraded']).sum())} "
          f"finished" + (f", {skipped} skipped as already finished" if skipped else "")
          + f"; engine {res.info.get('engine')})")
    bad = runs[~runs["status"].isin(["completed", "degraded"])]
    for r in bad.itertuples(index=False):
        print(f"  {r.folder}: {r.status}" + (f": {r.error}" if isinstance(r.error, str) else ""), file=sys.stderr)
    code = STATUS_EXIT.get(res.status, EXIT_FAILED)
    if code != EXIT_OK:
        print(f"error: the sweep ended {res.status}; see {out / 'report.md'}", file=sys.stderr)
    return code


# ----------------------------------------------------------------------------- sts


def _add_sts(s: argparse.ArgumentParser) -> None:
    s.add_argument("scenario", help="scenario YAML with an sts: section (e.g. scenarios/sts_coffee.yaml)")
    s.add_argument("--out", help="output folder (default: runs/sts-NAME-TIMESTAMP)")
    _add_overwrite(s, "study")
    s.add_argument("--trials", type=int, help="protocol trials (default: sts.trials)")
    s.add_argument("--no-world", action="store_true", help="skip the in-world A/B")
    s.add_argument("--no-progress", action="store_true")
    _add_set(s)


def _cmd_sts(args) -> int:
    from recworld.simulator.output.folders import check_out, default_out
    from recworld.simulator.scenario import load_scenario
    from recworld.simulator.studies.sts import run_sts

    overrides = list(args.overrides)
    if args.trials is not None:
        overrides.append(f"sts.trials={args.trials}")
    if args.no_world:
        overrides.append("sts.world=false")
    name = load_scenario(args.scenario, overrides).name
    out = Path(args.out) if args.out else default_out("sts", name)
    check_out(out, args.overwrite)
    with _output_folder(out, args.overwrite, "sts"):
        try:
            res = run_sts(args.scenario, out, overrides, progress=not args.no_progress)
        finally:                                       # also the page of a study stopped part way
            if (out / "results.json").exists():
                _study_page(out, "sts")
    for s in res["studies"].values():
        print(f"{s['catalog']}: target {s['target']!r}, STS {s['sts']!r}")
        for rec, p in s["protocol"].items():
            print(f"  {rec:<11} mean rank {p['mean_rank_without']:.2f} -> {p['mean_rank_with']:.2f}  "
                  f"top-1 {p['top1_without']:.2f} -> {p['top1_with']:.2f}  advantage {p['advantage']:.2f}  "
                  f"disadvantage {p['disadvantage']:.2f}  ({p['trials']} trials)")
    if "world" in res:
        d = res["world"]["difference"]
        print(f"  world (with - without): impressions {d['target_impressions']:+d}, watches "
              f"{d['target_watches']:+d}, chat mentions {d['target_chat_mentions']:+d}, post mentions "
              f"{d['target_post_mentions']:+d}")
    if (out / "report.html").exists():
        print(f"page: {out}/report.html")
    print(f"report: {out}/report.md")
    if res.get("status") != "completed":             # e.g. degraded: some world runs failed
        print(f"status: {res.get('status')} ({res.get('status_detail', '')})", file=sys.stderr)
        return STATUS_EXIT.get(res.get("status"), EXIT_FAILED)
    return EXIT_OK


def _study_page(out: Path, kind: str) -> Path | None:
    """``report.html`` of a study's folder; a failure costs the page, not the study."""
    from recworld.simulator.output.studies import write_study_html

    try:
        return write_study_html(out, kind)
    except Exception:  # noqa: BLE001 - logged with its traceback
        logging.getLogger("recworld").exception("could not write report.html in %s", out)
        return None


# ----------------------------------------------------------------------------- the table

# ----------------------------------------------------------------------------- fidelity


def _add_fidelity(f: argparse.ArgumentParser) -> None:
    from recworld.simulator.studies.fidelity import add_fidelity_arguments

    add_fidelity_arguments(f)


def _cmd_fidelity(args) -> int:
    from recworld.simulator.studies.fidelity import cmd_fidelity, fidelity_scenario

    if not args.out:                                   # the folder the study writes to, named as it would
        from recworld.simulator.output.folders import default_out

        scn = fidelity_scenario(args.scenario, args.data, None, args.overrides)
        args.out = str(default_out("fidelity", f"{scn.name}-{args.brain or scn.population.brain.name}"))
    code = cmd_fidelity(args)
    if code == EXIT_OK and _study_page(Path(args.out), "fidelity") is not None:
        print(f"page: {Path(args.out) / 'report.html'}")
    return code


from recworld.simulator.output.explorer import HELP as _VIEW_HELP  # noqa: E402  (light: nothing heavy at import)
from recworld.simulator.output.explorer import add_view_arguments, cmd_view  # noqa: E402
from recworld.simulator.output.pages import HELP as _REPORT_HELP  # noqa: E402  (light as well)
from recworld.simulator.output.pages import add_report_arguments, cmd_report  # noqa: E402

#: name -> (help, add_arguments, handler), in the order ``recworld --help`` lists them
COMMANDS = {
    "run": ("run a scenario and write a run folder", _add_run, _cmd_run),
    "validate": ("check a scenario file; exit 0 if valid", _add_validate, _cmd_validate),
    "train": ("train an RL policy on recworld/Session-v0 and evaluate it (needs recworld[rl])", _add_train,
              _cmd_train),
    "evaluate": ("offline leave-last-out evaluation of recommenders on MovieLens data", _add_evaluate,
                 _cmd_evaluate),
    "compare": (("run several recommenders on the same users over several seeds (5 by default): CTR, diversity, "
                 "coverage, Gini and regret with 95% intervals and paired differences"), _add_compare, _cmd_compare),
    "sts": (("strategic text sequence study: search, the Kumar & Lakkaraju protocol on the LLM recommenders, "
             "and the in-world A/B"), _add_sts, _cmd_sts),
    "sweep": (("run a scenario over seeds and settings (sweep: section or --seeds/--grid), in-process or on Ray; "
               "summary with 95% intervals and paired differences"), _add_sweep, _cmd_sweep),
    "fidelity": (("how much simulated users resemble real ones: the Agent4Rec protocol on held-out MovieLens "
                  "ratings, rating error and histogram, next to baselines"), _add_fidelity, _cmd_fidelity),
    "view": (_VIEW_HELP, add_view_arguments, cmd_view),
    "report": (_REPORT_HELP, add_report_arguments, cmd_report),
    "list": ("list the registered recommenders and brains", _add_list, _cmd_list),
}


def _parser() -> argparse.ArgumentParser:
    from recworld.simulator import __version__

    p = argparse.ArgumentParser(prog="recworld", description="Agent-based user simulation for recommender systems.")
    p.add_argument("--version", action="version", version=f"recworld {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, handler) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text.replace("%", "%%"))     # argparse formats help with %
        add_arguments(sp)
        sp.set_defaults(handler=handler)
    return p


def _describe(e: OSError) -> str:
    """An OS error as one line that names its path."""
    if e.filename is not None and e.strerror:
        where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 is not None else "")
        return f"{where}: {e.strerror}"
    return str(e)


def _scenario_problem(e) -> str:
    """A ScenarioError on one line when it has one problem (else the list, one per line)."""
    problems = getattr(e, "problems", None) or []
    if len(problems) != 1:
        return str(e)
    field, message = problems[0]
    source = getattr(e, "source", None)
    return f"invalid scenario{f' {source}' if source else ''}: {f'{field}: ' if field else ''}{message}"


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from recworld.simulator.scenario import ScenarioError

    try:
        return args.handler(args)
    except ScenarioError as e:
        return _error(_scenario_problem(e), EXIT_USAGE)
    except (FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        return _error(_describe(e), EXIT_USAGE)
    except ValueError as e:
        return _error(str(e), EXIT_USAGE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
