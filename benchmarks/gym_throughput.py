"""Steps per CPU-second of recworld/Session-v0 (single and natively vectorised) next to RecSim's
interest-evolution environment, on the same work, in one run.

Every environment fills slates of 5 from C candidates (C = 10, 20, 100) with the same kind of
pre-generated random actions and starts a new episode when one ends.  RecSim runs two ways:

- ``resampled``: ``resample_documents=True``, new candidate documents built every step
  (most of its step time goes into making those objects);
- ``fixed``: ``resample_documents=False``, a fixed candidate set, as Session-v0 draws indices
  from a fixed catalog.  This is the like-for-like comparison: ratios are against it.

RecWorld runs ``rl_session.yaml`` two ways: ``as shipped`` (users leave after a few pages)
and ``60-step episodes`` (no fatigue, a strong wish to stay, horizon 60: about RecSim's
episode length), so that the cost of starting episodes is compared fairly too.  Mean episode
lengths are printed beside each figure.  The vector env counts only the sub-envs that took a
step (not those that were reset by the next-step autoreset).

Each figure is the median over ``--rounds`` rounds (the environments alternate within a
round), each measured for ``--seconds`` of CPU time (``time.process_time``; the machine may be
shared, so wall time would mostly measure the neighbours).  RecSim (``recsim-no-tf``, which
needs the unmaintained ``gym``) runs in its own virtual environment, created on first use
under benchmarks/.recsim-venv; if it cannot be installed, RecWorld is measured alone.

    python benchmarks/gym_throughput.py
    python benchmarks/gym_throughput.py --seconds 3 --rounds 5 --candidates 20 --vector 64 256
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
WORKLOADS = {"as shipped": [],
             "60-step episodes": ["env.horizon=60", "population.brain.fatigue=0", "population.brain.continue_bias=20"]}

RECSIM_CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
from recsim.environments import interest_evolution
C, S, seconds, resample = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
env = interest_evolution.create_environment({"num_candidates": C, "slate_size": S, "resample_documents": resample,
                                             "seed": 0})
rng = np.random.default_rng(0)
actions = [rng.permutation(C)[:S].tolist() for _ in range(1000)]
env.reset()
n = episodes = 0
t0 = time.process_time()
while time.process_time() - t0 < seconds:
    _, _, done, _ = env.step(actions[n % 1000])
    n += 1
    if done:
        env.reset()
        episodes += 1
dt = time.process_time() - t0
print(json.dumps({"steps_per_cpu_s": n / dt, "episode_len": n / max(episodes, 1)}))
"""


def session_rate(C: int, seconds: float, scenario: str, overrides: list[str]) -> dict:
    import gymnasium as gym
    import numpy as np

    import recworld  # noqa: F401

    env = gym.make("recworld/Session-v0", scenario=scenario,
                   overrides=[f"env.candidates={C}", f"env.slate_size={SLATE}"] + overrides)
    rng = np.random.default_rng(0)
    actions = [rng.permutation(C)[:SLATE] for _ in range(1000)]
    env.reset(seed=0)
    n = episodes = 0
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        _, _, term, trunc, _ = env.step(actions[n % 1000])
        n += 1
        if term or trunc:
            env.reset()
            episodes += 1
    dt = time.process_time() - t0
    env.close()
    return {"steps_per_cpu_s": n / dt, "episode_len": n / max(episodes, 1)}


def vector_rate(C: int, N: int, rng_mode: str, seconds: float, scenario: str, overrides: list[str]) -> dict:
    import gymnasium as gym
    import numpy as np

    import recworld  # noqa: F401

    env = gym.make_vec("recworld/Session-v0", num_envs=N, vectorization_mode="vector_entry_point", rng=rng_mode,
                       scenario=scenario, overrides=[f"env.candidates={C}", f"env.slate_size={SLATE}"] + overrides)
    rng = np.random.default_rng(0)
    actions = [np.stack([rng.permutation(C)[:SLATE] for _ in range(N)]) for _ in range(64)]
    env.reset(seed=0)
    ended = np.zeros(N, dtype=bool)
    k = n = episodes = 0
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        _, _, term, trunc, _ = env.step(actions[k % 64])
        k += 1
        n += N - int(ended.sum())            # sub-envs reset by this call took no step
        ended = term | trunc
        episodes += int(ended.sum())
    dt = time.process_time() - t0
    env.close()
    return {"steps_per_cpu_s": n / dt, "episode_len": n / max(episodes, 1)}


def recsim_python(given: str | None) -> str | None:
    if given:
        return given
    venv = HERE / ".recsim-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        print("creating the RecSim environment in benchmarks/.recsim-venv (recsim-no-tf, gym) ...", file=sys.stderr)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", "recsim-no-tf", "six"], check=True)
        except (subprocess.CalledProcessError, OSError) as e:
            print(f"RecSim could not be installed ({e}); measuring RecWorld alone", file=sys.stderr)
            return None
    return str(py)


def recsim_rate(py: str, C: int, seconds: float, resample: bool) -> dict:
    out = subprocess.run([py, "-c", RECSIM_CHILD, str(C), str(SLATE), str(seconds), "1" if resample else "0"],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"RecSim measurement failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, nargs="+", default=[10, 20, 100])
    ap.add_argument("--vector", type=int, nargs="+", default=[64], help="num_envs of the vector env")
    ap.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "rl_session.yaml"))
    ap.add_argument("--recsim-python", help="a Python with recsim-no-tf installed (default: make one)")
    ap.add_argument("--no-recsim", action="store_true")
    a = ap.parse_args()
    py = None if a.no_recsim else recsim_python(a.recsim_python)
    print(f"slates of {SLATE}; steps per CPU-second, median of {a.rounds} rounds of {a.seconds:g} CPU-s each; "
          f"ep = mean episode length; ratio = against RecSim with fixed candidates")
    print(f"{'C':>4}  {'environment':<44} {'steps/CPU-s':>12} {'ep':>6} {'ratio':>7}")
    for C in a.candidates:
        rows: dict[str, list[dict]] = {}
        for _ in range(a.rounds):
            if py:
                rows.setdefault("RecSim interest_evolution, resampled", []).append(recsim_rate(py, C, a.seconds, True))
                rows.setdefault("RecSim interest_evolution, fixed", []).append(recsim_rate(py, C, a.seconds, False))
            for w in a.workloads:
                rows.setdefault(f"Session-v0 ({w})", []).append(session_rate(C, a.seconds, a.scenario, WORKLOADS[w]))
                for N in a.vector:
                    for mode in ("shared", "per_env"):
                        rows.setdefault(f"vector N={N} rng={mode} ({w})", []).append(
                            vector_rate(C, N, mode, a.seconds, a.scenario, WORKLOADS[w]))
        fixed = statistics.median(r["steps_per_cpu_s"] for r in rows.get("RecSim interest_evolution, fixed", [{}])) \
            if py else None
        for name, rs in rows.items():
            rate = statistics.median(r["steps_per_cpu_s"] for r in rs)
            ep = statistics.median(r["episode_len"] for r in rs)
            ratio = f"{rate / fixed:>6.2f}x" if fixed else "      -"
            print(f"{C:>4}  {name:<44} {rate:>12,.0f} {ep:>6.1f} {ratio}", flush=True)


if __name__ == "__main__":
    main()
