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

``--rllib``: stable-baselines3 against RLlib on the same env and budget instead.  SB3's PPO
as ``recworld train`` runs it (4 envs, native vector env, one torch thread) and RLlib's PPO
as ``recworld train --engine rllib`` runs it (the same rollout, minibatch, epochs and
learning rate; ``--runners`` env runners of 4 envs each on a local Ray) train for ``--steps``
steps from the same seed, then every policy is evaluated as ``recworld train`` evaluates:
mean episode return over ``--eval-seeds`` seeds x ``--eval-episodes`` episodes (the same
users and candidates for all), a 95% bootstrap interval, and the paired difference to
SB3's policy.  Both policies, greedy, show their S best-scored candidates (SB3's did each
slot's argmax before, which put one candidate in every slot); ``sb3 top-S`` takes SB3's top S
from its scores directly, a check that the policy as served acts that way.  Training
speed is env steps per second of wall time, from start to the last update (RLlib's
``ray.init`` and build are reported apart).

    python benchmarks/rl_training.py --rllib                        # 30,000 steps, 1 runner
    python benchmarks/rl_training.py --rllib --steps 10000 --runners 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
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


def _top_s(model):
    """SB3's slate policy acting as the RLlib one: the S best-scored candidates (distinct)."""
    import torch

    from recworld.simulator.studies.rl import EnvPolicy

    class TopS(EnvPolicy):
        def __call__(self, env, obs):
            t, _ = model.policy.obs_to_tensor(obs)
            with torch.no_grad():
                scores = model.policy.get_distribution(t).distribution[0].logits[0]
            return torch.topk(scores, env.unwrapped.S).indices.numpy()

    return TopS()


def compare_rllib(a) -> None:
    import tempfile

    from recworld.simulator.gym.policies import load_policy
    from recworld.simulator.studies.rl import ModelPolicy, compare_to, evaluate, evaluation_lines, train
    from recworld.simulator.studies.rllib import save_rllib_policy, train_rllib

    seeds = list(range(1, a.eval_seeds + 1))
    print(f"PPO on recworld/Session-v0 ({Path(a.scenario).name}): stable-baselines3 vs RLlib, {a.steps} steps, "
          f"training seed {a.seed}; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    w0 = time.perf_counter()
    model = train(a.scenario, steps=a.steps, seed=a.seed, n_envs=4)
    wall = time.perf_counter() - w0
    print(f"sb3: {model.num_timesteps} steps in {wall:.1f} s = {model.num_timesteps / wall:,.0f} steps/s "
          f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    results = [evaluate(lambda env, s: ModelPolicy(model), a.scenario, seeds, a.eval_episodes, name="sb3")]
    results.append(compare_to(evaluate(lambda env, s: _top_s(model), a.scenario, seeds, a.eval_episodes,
                                       name="sb3 top-S"), results[0]))
    for runners in a.runners:
        res = train_rllib(a.scenario, steps=a.steps, seed=a.seed, env_runners=runners, envs_per_runner=4)
        i = res["info"]
        print(f"rllib, {runners} env runner(s) x 4 envs: {i['steps']} steps in {i['train_seconds']:.1f} s = "
              f"{i['steps_per_second']:,.0f} steps/s; ray.init {i['init_seconds']:.1f} s, build "
              f"{i['build_seconds']:.1f} s (load average {os.getloadavg()[0]:.1f})", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            save_rllib_policy(res["net"], res["observation_space"], tmp, {"algo": "ppo"})
            policy = load_policy(tmp)
        results.append(compare_to(evaluate(lambda env, s, p=policy: ModelPolicy(p), a.scenario, seeds,
                                           a.eval_episodes, name=f"rllib-{runners}r"), results[0]))
    print("\n".join(evaluation_lines(results, "click")))
    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, help="training steps per setting (a PPO rollout is 512 x envs; default "
                                              "2048, with --rllib 30000 as recworld train)")
    ap.add_argument("--envs", type=int, nargs="+", default=[4])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "rl_session.yaml"))
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--rllib", action="store_true", help="compare stable-baselines3 and RLlib (see above)")
    ap.add_argument("--runners", type=int, nargs="+", default=[1], help="with --rllib: env runner counts")
    ap.add_argument("--seed", type=int, default=0, help="with --rllib: the training seed")
    ap.add_argument("--eval-seeds", type=int, default=5)
    ap.add_argument("--eval-episodes", type=int, default=100)
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rllib:
        a.steps = a.steps or 30_000           # recworld train's default budget
        compare_rllib(a)
        return
    a.steps = a.steps or 2048
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
