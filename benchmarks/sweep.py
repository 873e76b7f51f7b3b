"""A sweep in-process vs on a local Ray: wall time, speed-up and Ray's overhead per task.

Runs the same sweep twice, each into its own temporary folder: 8 seeds (by default) of a
2,000-user parametric world (synthetic 5,000-item catalog, popularity recommender, one
simulated day, the default outputs including each run's plots), first with
``--engine sequential``, then with ``--engine ray`` on a local Ray of this machine's cores.
Prints both wall times, the speed-up, and Ray's costs:

- ``ray.init``: starting the local Ray (once per sweep);
- overhead per task: the CPU time lost per run to Ray (scheduling, starting worker
  processes and importing RecWorld in them, sending results back), i.e. the Ray run
  phase times the CPUs, minus the in-process runs' total time, divided by the runs;
- a no-op task's round trip on the warm Ray (the floor of the per-task cost).

It also checks that both engines gave the same summary (the same events per seed).

    python benchmarks/sweep.py                       # 8 seeds, 2,000 users, all cores
    python benchmarks/sweep.py --seeds 4 --users 500 --cpus 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def scenario(users: int, items: int, days: float) -> dict:
    return {"name": f"bench-sweep-{users}", "seed": 0, "duration_days": days,
            "data": {"source": "synthetic", "n_items": items, "n_genres": 15},
            "population": {"size": users}, "social": {"graph": "small_world", "degree": 10},
            "recommender": {"name": "popularity"}}


def noop() -> float:
    return time.time()


def round_trip(cpus: int, n: int = 32) -> float:
    """Mean seconds per no-op task on a warm local Ray (submitted one after the other)."""
    import ray

    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        f = ray.remote(noop).options(num_cpus=1)
        ray.get([f.remote() for _ in range(cpus * 2)])           # warm the workers
        t0 = time.perf_counter()
        for _ in range(n):
            ray.get(f.remote())
        return (time.perf_counter() - t0) / n
    finally:
        ray.shutdown()


def main() -> None:
    import pandas as pd

    from recworld.simulator.studies.sweep import run_sweep

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray (default: all)")
    a = ap.parse_args()
    scn = scenario(a.users, a.items, a.days)
    cfg = {"seeds": a.seeds}
    print(f"{a.seeds} seeds of a {a.users:,}-user parametric world ({a.items:,} items, {a.days:g} simulated day(s)); "
          f"local Ray with {a.cpus} CPU(s); this machine has {os.cpu_count()} core(s), load average "
          f"{os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        seq = run_sweep(scn, f"{tmp}/sequential", config=cfg, engine="sequential", progress=False)
        t_seq = time.perf_counter() - t0
        t0 = time.perf_counter()
        on_ray = run_sweep(scn, f"{tmp}/ray", config=cfg, engine="ray", num_cpus=a.cpus, progress=False)
        t_ray = time.perf_counter() - t0
        assert seq.status == on_ray.status == "completed", (seq.status, on_ray.status)
        same = seq.summary.equals(on_ray.summary)
        run_s = [r["seconds"] for r in seq.results.values()]
        ray_task_s = [r["seconds"] for r in on_ray.results.values()]
        cpu_seq = sum(r["cpu_seconds"] for r in seq.results.values()) / a.seeds
        cpu_ray = sum(r["cpu_seconds"] for r in on_ray.results.values()) / a.seeds
    init = on_ray.info.get("init_seconds", 0.0)
    phase = on_ray.info["run_seconds"] - init
    used = min(a.cpus, a.seeds)
    overhead = (phase * used - sum(run_s)) / a.seeds
    rt = round_trip(a.cpus)
    rows = [("sequential (in-process)", t_seq, f"{sum(run_s) / len(run_s):.2f} s per run"),
            ("local Ray", t_ray, f"ray.init {init:.1f} s, run phase {phase:.1f} s")]
    print(pd.DataFrame(rows, columns=["engine", "wall s", "note"]).to_string(index=False,
                                                                             float_format=lambda x: f"{x:.1f}"))
    print(f"speed-up (sequential / Ray, wall): {t_seq / t_ray:.2f}x; excluding ray.init: {t_seq / (t_ray - init):.2f}x")
    print(f"Ray overhead per task: {overhead:.2f} CPU-s (run phase x {used} CPUs - in-process run time, per run); "
          f"a run inside a Ray task took {sum(ray_task_s) / len(ray_task_s):.2f} s vs {sum(run_s) / len(run_s):.2f} s "
          "in-process")
    print(f"CPU time per run: {cpu_seq:.2f} s in-process, {cpu_ray:.2f} s in a Ray task (wall per run / CPU per "
          f"run = {sum(run_s) / len(run_s) / cpu_seq:.1f} in-process: above 1, other work shares the cores)")
    print(f"no-op task round trip on a warm local Ray: {rt * 1000:.1f} ms; load average after: "
          f"{os.getloadavg()[0]:.1f}")
    print(f"same summary from both engines: {same}")


if __name__ == "__main__":
    main()
