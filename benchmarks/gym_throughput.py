"""Steps per second of recworld/Session-v0 next to RecSim's interest-evolution environment.

Both environments get the same work: slates of 5 from C candidates (C = 10 and 100), the
same pre-generated random actions, resets when an episode ends, and the same wall-clock
budget per measurement; measurements alternate between the two and the median of several
rounds is reported.  RecSim (``recsim-no-tf``, which needs the unmaintained ``gym``) runs in
its own virtual environment, created on first use under benchmarks/.recsim-venv.

    python benchmarks/gym_throughput.py
    python benchmarks/gym_throughput.py --seconds 5 --rounds 5 --recsim-python /path/to/python
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SLATE = 5

RECSIM_CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
from recsim.environments import interest_evolution
C, S, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
env = interest_evolution.create_environment({"num_candidates": C, "slate_size": S, "resample_documents": True, "seed": 0})
rng = np.random.default_rng(0)
actions = [rng.permutation(C)[:S].tolist() for _ in range(1000)]
env.reset()
n = episodes = 0
t0 = time.perf_counter()
while time.perf_counter() - t0 < seconds:
    _, _, done, _ = env.step(actions[n % 1000])
    n += 1
    if done:
        env.reset()
        episodes += 1
dt = time.perf_counter() - t0
print(json.dumps({"steps_per_s": n / dt, "mean_episode_len": n / max(episodes, 1)}))
"""


def recworld_rate(C: int, seconds: float, scenario: str) -> dict:
    import gymnasium as gym
    import numpy as np

    import recworld.simulator  # noqa: F401

    env = gym.make("recworld/Session-v0", scenario=scenario, overrides=[f"env.candidates={C}", f"env.slate_size={SLATE}"])
    rng = np.random.default_rng(0)
    actions = [rng.permutation(C)[:SLATE] for _ in range(1000)]
    env.reset(seed=0)
    n = episodes = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, _, term, trunc, _ = env.step(actions[n % 1000])
        n += 1
        if term or trunc:
            env.reset()
            episodes += 1
    dt = time.perf_counter() - t0
    return {"steps_per_s": n / dt, "mean_episode_len": n / max(episodes, 1)}


def recsim_python(given: str | None) -> str:
    if given:
        return given
    venv = HERE / ".recsim-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        print("creating the RecSim environment in benchmarks/.recsim-venv (recsim-no-tf, gym) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "recsim-no-tf", "six"], check=True)
    return str(py)


def recsim_rate(py: str, C: int, seconds: float) -> dict:
    out = subprocess.run([py, "-c", RECSIM_CHILD, str(C), str(SLATE), str(seconds)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"RecSim measurement failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--seconds", type=float, default=3.0, help="wall-clock budget per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "rl_session.yaml"))
    ap.add_argument("--recsim-python", help="a Python with recsim-no-tf installed (default: make one)")
    a = ap.parse_args()
    py = recsim_python(a.recsim_python)
    print(f"slate size {SLATE}; {a.rounds} rounds of {a.seconds:g} s each, alternating; median shown")
    print(f"{'C':>4} {'RecWorld steps/s':>17} {'RecSim steps/s':>15} {'ratio':>6} {'ep.len RW/RS':>13}")
    for C in a.candidates:
        ours, theirs = [], []
        for _ in range(a.rounds):
            ours.append(recworld_rate(C, a.seconds, a.scenario))
            theirs.append(recsim_rate(py, C, a.seconds))
        o = statistics.median(r["steps_per_s"] for r in ours)
        t = statistics.median(r["steps_per_s"] for r in theirs)
        lo, lt = ours[0]["mean_episode_len"], theirs[0]["mean_episode_len"]
        print(f"{C:>4} {o:>17,.0f} {t:>15,.0f} {o / t:>6.2f} {lo:>6.1f}/{lt:<6.1f}")


if __name__ == "__main__":
    main()
