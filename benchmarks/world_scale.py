"""Speed and memory of the parametric world at scale.

Runs one simulated day with N users (default 1,000 and 10,000) on a synthetic 5,000-item
catalog with the popularity recommender, each size in its own process, and prints build
time, run time, events, events per second of the run and the process's peak memory.

    python benchmarks/world_scale.py                 # 1,000 and 10,000 users
    python benchmarks/world_scale.py --users 500 --days 3 --recommender random
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile


def one(users: int, days: float, recommender: str, items: int, seed: int) -> dict:
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
        t1 = time.perf_counter()
        world.run(progress=False)
        t2 = time.perf_counter()
        world.log.close()
        t3 = time.perf_counter()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"users": users, "sim_days": days, "build_s": t1 - t0, "run_s": t2 - t1, "close_s": t3 - t2,
            "events": world.log.count, "events_per_s": world.log.count / (t2 - t1), "peak_mib": peak_mib}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--recommender", default="popularity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child is not None:
        print(json.dumps(one(a._child, a.days, a.recommender, a.items, a.seed)))
        return
    print(f"parametric world, {a.days:g} simulated day(s), {a.items} items, recommender={a.recommender}")
    print(f"{'users':>7} {'build s':>8} {'run s':>8} {'events':>9} {'events/s':>10} {'peak MiB':>9}")
    for n in a.users:
        cmd = [sys.executable, __file__, "--_child", str(n), "--days", str(a.days), "--items", str(a.items),
               "--recommender", a.recommender, "--seed", str(a.seed)]
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        print(f"{r['users']:>7} {r['build_s']:>8.2f} {r['run_s']:>8.2f} {r['events']:>9,} "
              f"{r['events_per_s']:>10,.0f} {r['peak_mib']:>9.0f}")


if __name__ == "__main__":
    main()
