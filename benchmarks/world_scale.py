"""Speed and memory of the parametric world at scale, next to the ceiling of bare simpy.

Runs one simulated day with N users (default 1,000, 10,000 and 100,000) on a synthetic
5,000-item catalog with the popularity recommender, each size in its own process, and prints
build time, the run's CPU time (``time.process_time``: the machine may be shared, so wall time
is not used), events, events per CPU-second, parametric user-days per CPU-hour (and per hour
on 2 cores: two such runs side by side, e.g. a sweep) and the process's peak RSS.  The
ceiling is bare simpy on the same machine: one process per user that only wakes up at
exponential gaps (the world's session rhythm), in wake-ups per CPU-second.

``--source DIR`` measures another checkout of RecWorld (e.g. ``git worktree add /tmp/old
COMMIT``) with this venv, for before/after figures on the same machine.

    python benchmarks/world_scale.py                          # 1k, 10k, 100k users
    python benchmarks/world_scale.py --users 10000 --items 100000      # memory at 100k items
    python benchmarks/world_scale.py --users 10000 --source /tmp/old   # an older commit
    python benchmarks/world_scale.py --users 100000 --gc-freeze         # freeze here too (for older checkouts)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile


def _use_source(tree: str) -> None:
    """Import recworld from ``tree`` instead of the installed (editable) checkout."""
    import importlib

    finder = next((m for m in sys.modules if m.startswith("__editable___recworld")), None)
    if finder is None:
        sys.path[:0] = [tree]
        return
    mapping = importlib.import_module(finder).MAPPING
    mapping.update({"recworld": f"{tree}/recworld", "recworld.agents": f"{tree}/agents",
                    "recworld.recommenders": f"{tree}/recommenders", "recworld.simulator": f"{tree}/simulator"})


def one(users: int, days: float, recommender: str, items: int, seed: int, gc_freeze: bool = False) -> dict:
    import resource
    import time

    from recworld.simulator.build import build_parts, build_world
    from recworld.simulator.scenario import load_scenario

    scn = load_scenario({
        "name": f"scale-{users}", "seed": seed, "duration_days": days,
        "data": {"source": "synthetic", "n_items": items, "n_genres": 15},
        "population": {"size": users}, "social": {"graph": "small_world", "degree": 10},
        "recommender": {"name": recommender},
    })
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        parts = build_parts(scn)
        world = build_world(scn, tmp, parts)
        if gc_freeze:              # World.run freezes the build itself since it learnt to; this is for older checkouts
            import gc

            gc.collect()
            gc.freeze()
        t1 = time.perf_counter()
        c1 = time.process_time()
        world.run(progress=False)
        c2 = time.process_time()
        world.log.close()
        t3 = time.perf_counter()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu = c2 - c1
    return {"users": users, "sim_days": days, "build_s": t1 - t0, "run_cpu_s": cpu, "events": world.log.count,
            "events_per_cpu_s": world.log.count / cpu, "user_days_per_cpu_h": users * days / cpu * 3600,
            "peak_mib": peak_mib, "total_wall_s": t3 - t0}


def bare_simpy(processes: int, seconds: float = 5.0, seed: int = 0) -> dict:
    """Wake-ups per CPU-second of ``processes`` simpy processes that only wait (exponential gaps)."""
    import time

    import numpy as np
    import simpy

    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    count = [0]

    def life(mean_gap):
        while True:
            yield env.timeout(rng.exponential(mean_gap))
            count[0] += 1

    for gap in 1440.0 / rng.lognormal(0.0, 1.0, size=processes):
        env.process(life(gap))
    c0 = time.process_time()
    until = 0.0
    while time.process_time() - c0 < seconds:
        until += 60.0
        env.run(until=until)
    return {"processes": processes, "wakeups_per_cpu_s": count[0] / (time.process_time() - c0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--recommender", default="popularity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source", help="a RecWorld checkout to measure instead of the installed one")
    ap.add_argument("--no-simpy", action="store_true", help="skip the bare simpy ceiling")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="call gc.freeze() after the build (measures what the garbage collector costs the run)")
    ap.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_simpy", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._simpy is not None:
        print(json.dumps(bare_simpy(a._simpy)))
        return
    if a._child is not None:
        if a.source:
            _use_source(os.path.abspath(a.source))
        print(json.dumps(one(a._child, a.days, a.recommender, a.items, a.seed, a.gc_freeze)))
        return
    print(f"parametric world, {a.days:g} simulated day(s), {a.items} items, recommender={a.recommender}"
          + (f", source {a.source}" if a.source else "") + (", gc.freeze() after the build" if a.gc_freeze else "")
          + "; CPU time of the run (process_time)")
    print(f"{'users':>7} {'build s':>8} {'run CPU s':>10} {'events':>9} {'events/CPU-s':>13} "
          f"{'user-days/CPU-h':>16} {'/h on 2 cores':>14} {'peak MiB':>9} {'bare simpy wake-ups/CPU-s':>26}")
    for n in a.users:
        cmd = [sys.executable, __file__, "--_child", str(n), "--days", str(a.days), "--items", str(a.items),
               "--recommender", a.recommender, "--seed", str(a.seed)] + (["--source", a.source] if a.source else []) \
            + (["--gc-freeze"] if a.gc_freeze else [])
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        ceiling = ""
        if not a.no_simpy:
            s = json.loads(subprocess.run([sys.executable, __file__, "--_simpy", str(n)], capture_output=True,
                                          text=True, check=True).stdout.splitlines()[-1])
            ceiling = f"{s['wakeups_per_cpu_s']:,.0f}"
        print(f"{r['users']:>7} {r['build_s']:>8.1f} {r['run_cpu_s']:>10.1f} {r['events']:>9,} "
              f"{r['events_per_cpu_s']:>13,.0f} {r['user_days_per_cpu_h']:>16,.0f} {2 * r['user_days_per_cpu_h']:>14,.0f} "
              f"{r['peak_mib']:>9,.0f} {ceiling:>26}", flush=True)


if __name__ == "__main__":
    main()
