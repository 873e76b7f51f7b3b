"""Training throughput of ``recworld train`` (PPO on recworld/Session-v0), before and after the fast loop.

Each setting runs in its own process: PPO as ``recworld train`` runs it (4 envs, rollouts of
512 steps per env, batch 256, 10 epochs) for ``--steps`` steps, and the env alone (random
actions through the same SB3 vector env) for comparison.  Settings:

- ``torch default, DummyVecEnv``: what ``train`` did before (torch's default thread count)
- ``1 thread, DummyVecEnv``: only the thread setting changed
- ``1 thread, native``: the natively vectorised env behind SB3 (the default now; the same
  trajectories, so the same model, as DummyVecEnv)

Figures are steps per second of wall time and per CPU-second (``time.process_time``, all
threads of the process); the machine may be shared, so wall time is noisy.

    python benchmarks/rl_training.py
    python benchmarks/rl_training.py --steps 4096 --envs 4 16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"torch default, DummyVecEnv": (None, "dummy"), "1 thread, DummyVecEnv": (1, "dummy"),
            "1 thread, native": (1, "native")}


def measure(threads, vec_env: str, steps: int, n_envs: int, scenario: str) -> dict:
    import numpy as np
    import torch

    from recworld.simulator.studies.rl import train

    out = {"torch_threads": threads or torch.get_num_threads()}
    model = train(scenario, steps=64, n_envs=n_envs, seed=0, vec_env=vec_env, threads=threads)   # warm up
    venv = model.get_env()
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(0)
    acts = [np.stack([rng.permutation(venv.action_space.nvec[0])[: len(venv.action_space.nvec)]
                      for _ in range(n_envs)]) for _ in range(64)]
    n, c0, w0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - w0 < 3.0:
        venv.step(acts[n % 64])
        n += 1
    out["env_steps_per_cpu_s"] = n * n_envs / (time.process_time() - c0)
    out["env_steps_per_s"] = n * n_envs / (time.perf_counter() - w0)
    c0, w0 = time.process_time(), time.perf_counter()
    model = train(scenario, steps=steps, n_envs=n_envs, seed=0, vec_env=vec_env, threads=threads)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    done = model.num_timesteps
    out.update(steps=done, train_steps_per_s=done / wall, train_steps_per_cpu_s=done / cpu)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2048, help="training steps per setting (a PPO rollout is 512 x envs)")
    ap.add_argument("--envs", type=int, nargs="+", default=[4])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "rl_session.yaml"))
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        name, n_envs = a._child.rsplit("|", 1)
        threads, vec_env = SETTINGS[name]
        print(json.dumps(measure(threads, vec_env, a.steps, int(n_envs), a.scenario)))
        return
    print(f"PPO on recworld/Session-v0 ({Path(a.scenario).name}), {a.steps} steps per setting; "
          "steps/s (wall) and per CPU-second (all threads)")
    print(f"{'setting':<28} {'envs':>4} {'threads':>7} {'env steps/s':>12} {'env /CPU-s':>11} "
          f"{'train steps/s':>14} {'train /CPU-s':>13}")
    base = {}
    for n_envs in a.envs:
        for name in a.settings:
            cmd = [sys.executable, __file__, "--_child", f"{name}|{n_envs}", "--steps", str(a.steps),
                   "--scenario", a.scenario]
            r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            base.setdefault(n_envs, r["train_steps_per_s"])
            print(f"{name:<28} {n_envs:>4} {r['torch_threads']:>7} {r['env_steps_per_s']:>12,.0f} "
                  f"{r['env_steps_per_cpu_s']:>11,.0f} {r['train_steps_per_s']:>14,.1f} {r['train_steps_per_cpu_s']:>13,.1f}"
                  f"   x{r['train_steps_per_s'] / base[n_envs]:.1f}", flush=True)


if __name__ == "__main__":
    main()
