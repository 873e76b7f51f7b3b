"""The ``recworld`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _parser() -> argparse.ArgumentParser:
    from recworld.simulator import __version__

    p = argparse.ArgumentParser(prog="recworld", description="Agent-based user simulation for recommender systems.")
    p.add_argument("--version", action="version", version=f"recworld {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add_set(sp):
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario field, e.g. --set population.size=100 (repeatable)")

    r = sub.add_parser("run", help="run a scenario and write a run folder")
    r.add_argument("scenario", help="scenario YAML file")
    r.add_argument("--out", help="run folder (default: runs/NAME-seedN-TIMESTAMP)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_set(r)

    v = sub.add_parser("validate", help="check a scenario file; exit 0 if valid")
    v.add_argument("scenario")
    v.add_argument("--print", action="store_true", help="print the resolved scenario")
    add_set(v)

    t = sub.add_parser("train", help="train an RL policy on recworld/Session-v0 and evaluate it (needs recworld[rl])")
    t.add_argument("scenario")
    t.add_argument("--algo", default="ppo", choices=["ppo", "a2c"])
    t.add_argument("--steps", type=int, default=30_000, help="training steps (default 30000)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="output folder (default: runs/train-NAME-ALGO-TIMESTAMP)")
    t.add_argument("--eval-seeds", type=int, default=5)
    t.add_argument("--eval-episodes", type=int, default=100)
    t.add_argument("--no-progress", action="store_true")
    add_set(t)

    e = sub.add_parser("evaluate", help="offline leave-last-out evaluation of recommenders on MovieLens data")
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
    e.add_argument("--no-progress", action="store_true")

    c = sub.add_parser("compare", help="run several recommenders on the same users and seed; compare CTR, "
                                       "diversity, coverage, Gini and regret")
    c.add_argument("scenario")
    c.add_argument("--recommenders", help="comma-separated names (default: the scenario's compare: list)")
    c.add_argument("--out", help="output folder (default: runs/compare-NAME-TIMESTAMP)")
    c.add_argument("--no-progress", action="store_true")
    add_set(c)

    s = sub.add_parser("sts", help="strategic text sequence study: search, the Kumar & Lakkaraju protocol on the "
                                   "LLM recommenders, and the in-world A/B")
    s.add_argument("scenario", help="scenario YAML with an sts: section (e.g. scenarios/sts_coffee.yaml)")
    s.add_argument("--out", help="output folder (default: runs/sts-NAME-TIMESTAMP)")
    s.add_argument("--trials", type=int, help="protocol trials (default: sts.trials)")
    s.add_argument("--no-world", action="store_true", help="skip the in-world A/B")
    s.add_argument("--no-progress", action="store_true")
    add_set(s)

    ls = sub.add_parser("list", help="list the registered recommenders and brains")
    ls.add_argument("kind", nargs="?", choices=["recommenders", "brains"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from recworld.simulator.scenario import ScenarioError

    try:
        if args.command == "validate":
            from recworld.simulator.scenario import load_scenario, validate_plugins

            scn = load_scenario(args.scenario, args.overrides)
            validate_plugins(scn, args.scenario)
            if args.print:
                print(scn.to_yaml(), end="")
            else:
                print(f"{args.scenario}: valid")
            return 0
        if args.command == "list":
            from recworld.simulator.registry import available

            for kind in [args.kind] if args.kind else ["recommenders", "brains"]:
                print(f"{kind}:")
                for name, target in available(kind).items():
                    print(f"  {name:<14} {target}")
            return 0
        if args.command == "compare":
            import time

            from recworld.simulator.studies.compare import compare
            from recworld.simulator.studies.evaluate import markdown_table
            from recworld.simulator.scenario import load_scenario, validate_plugins

            scn = load_scenario(args.scenario, args.overrides)
            validate_plugins(scn, args.scenario)
            names = [n.strip() for n in args.recommenders.split(",")] if args.recommenders else None
            out = args.out or f"runs/compare-{scn.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            table = compare(scn, out, names=names, progress=not args.no_progress)
            print(markdown_table(table), end="")
            print(f"report: {out}/report.md")
            return 0
        if args.command == "sts":
            import time

            from recworld.simulator.studies.sts import run_sts

            overrides = list(args.overrides)
            if args.trials is not None:
                overrides.append(f"sts.trials={args.trials}")
            if args.no_world:
                overrides.append("sts.world=false")
            from recworld.simulator.scenario import load_scenario

            name = load_scenario(args.scenario, overrides).name
            out = args.out or f"runs/sts-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
            res = run_sts(args.scenario, out, overrides, progress=not args.no_progress)
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
            print(f"report: {out}/report.md")
            return 0
        if args.command == "evaluate":
            import time
            from pathlib import Path

            from recworld.simulator.studies.evaluate import evaluate_offline, markdown_table, write_results
            from recworld.simulator.registry import available

            names = [n.strip() for n in args.recommenders.split(",")] if args.recommenders else None
            unknown = [n for n in names or [] if n not in available("recommenders")]
            if unknown:
                raise ValueError(f"unknown recommender(s) {', '.join(unknown)}; known: {', '.join(available('recommenders'))}")
            if args.k < 1 or (args.users is not None and args.users < 1):
                raise ValueError("--k and --users must be positive")
            if args.llm_users < 1:
                raise ValueError("--llm-users must be positive")
            table = evaluate_offline(args.data, names, k=args.k, max_users=args.users, seed=args.seed,
                                     progress=not args.no_progress, llm_users=args.llm_users,
                                     llm={"model": args.llm_model})
            out = write_results(table, args.out or f"runs/evaluate-{time.strftime('%Y%m%d-%H%M%S')}",
                                {"data": args.data or "bundled sample", "k": args.k, "seed": args.seed})
            print(markdown_table(table), end="")
            print(f"written to {Path(out) / 'offline_eval.json'}")
            return 0
        if args.command == "train":
            import time
            from pathlib import Path

            from recworld.simulator.scenario import load_scenario, validate_plugins

            scn = load_scenario(args.scenario, args.overrides)
            validate_plugins(scn, args.scenario)
            if args.steps < 1 or args.eval_seeds < 1 or args.eval_episodes < 1:
                raise ValueError("--steps, --eval-seeds and --eval-episodes must be positive")
            try:
                from recworld.simulator.studies.rl import train_and_evaluate
            except ImportError as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
            out = Path(args.out or f"runs/train-{scn.name}-{args.algo}-{time.strftime('%Y%m%d-%H%M%S')}")
            res = train_and_evaluate(scn, out, args.algo, args.steps, args.seed, eval_seeds=args.eval_seeds,
                                     eval_episodes=args.eval_episodes, progress=not args.no_progress)
            print(f"policy: {res['model']}")
            print(f"mean episode return ({scn.env.reward}) over {args.eval_seeds} seeds x {args.eval_episodes} episodes:")
            for r in res["results"]:
                print(f"  {r.policy:<12} {r.mean:8.3f} +- {r.std:.3f}")
            print(f"  results: {out / 'results.json'}, plots: {out / 'plots'}")
            return 0
        if args.command == "run":
            from recworld.simulator.run import run_scenario

            out = run_scenario(args.scenario, args.out, args.overrides, progress=not args.no_progress,
                               overwrite=args.overwrite)
            metrics = json.loads((out / "metrics.json").read_text())
            keys = ("sessions", "slates_shown", "ctr", "watches", "mean_rating", "catalog_coverage",
                    "exposure_gini", "chats", "posts", "post_reach_mean")
            print(f"run folder: {out}")
            print("  " + "  ".join(f"{k}={metrics[k]:.4g}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}"
                                   for k in keys if metrics.get(k) is not None))
            print(f"  report: {out / 'report.md'}")
            return 0
    except ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: events so far, metrics and report were written to the run folder", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
