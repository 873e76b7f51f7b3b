"""RL training on RLlib (``recworld train --engine rllib``; the ``recworld[rllib]`` extra).

PPO on RLlib's new API stack trains the slate policy of
:mod:`recworld.simulator.gym.rllib` on ``recworld/Session-v0`` (or ``World-v0``).  Env runners
are Ray actors: on a local Ray over this machine's cores by default, or on the cluster at
``address`` (or ``RAY_ADDRESS``), like ``recworld sweep``.  Each env runner steps
``envs_per_runner`` sub-envs of the natively vectorised Session env; the learner runs in
this process.  PPO's settings follow the stable-baselines3 path (rollouts of 2,048 steps,
minibatches of 256, 10 epochs, learning rate 1e-3, clip 0.2, no KL penalty, no entropy
bonus), so the two trainers can be compared on the same budget.

The trained network is saved as ``policy.pt`` (plain tensors) with ``policy.json``
(``"trainer": "rllib"``): the ``policy`` recommender and the evaluation load it with torch
alone (:class:`~recworld.simulator.gym.slate_net.ScorerPolicy`).  RLlib's own checkpoint
(to resume training with RLlib) goes to ``rllib_checkpoint/``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

RLLIB_HINT = "RL training on RLlib needs the 'rllib' extra: pip install 'recworld[rllib]'"
ENV_NAME = "recworld-rllib"
log = logging.getLogger("recworld")


def check_installed() -> None:
    """Raise ImportError with the install hint when RLlib or torch is missing."""
    try:
        import ray.rllib  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{RLLIB_HINT} ({e})") from None


def _init_ray(address: str | None, num_cpus: int | None) -> tuple[bool, dict]:
    """Start a local Ray (or join the cluster at ``address`` / ``RAY_ADDRESS``) unless one is up."""
    import ray

    if ray.is_initialized():
        return False, {"address": "existing"}
    t0 = time.perf_counter()
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    kw: dict = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    if target == "local":
        kw["num_cpus"] = num_cpus or os.cpu_count() or 1
    elif num_cpus:
        log.warning("--num-cpus only sizes a local Ray; the cluster at %s keeps its own", target)
    try:
        ray.init(address=target, **kw)
    except ConnectionError as e:
        raise ConnectionError(f"cannot reach the Ray cluster at {target}: {e}") from None
    return True, {"address": target, "init_seconds": round(time.perf_counter() - t0, 3)}


def ppo_config(scenario_dict: dict, overrides=None, env_id: str = "recworld/Session-v0", seed: int = 0,
               env_runners: int = 1, envs_per_runner: int = 4, rollout: int = 2048, minibatch: int = 256,
               epochs: int = 10, lr: float = 1e-3, hidden: int = 64, code: int = 4):
    """RLlib's ``PPOConfig`` for the slate policy on a RecWorld env (new API stack)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.tune.registry import register_env

    from recworld.simulator.gym.rllib import SESSION, SlateRLModule, make_env

    if env_runners < 0 or envs_per_runner < 1:
        raise ValueError(f"env_runners must be >= 0 and envs_per_runner >= 1, got {env_runners} and {envs_per_runner}")
    register_env(ENV_NAME, make_env)
    mode = "vector_entry_point" if env_id == SESSION else "sync"
    return (PPOConfig()
            .environment(env=ENV_NAME, env_config={"env_id": env_id, "scenario": scenario_dict,
                                                   "overrides": list(overrides or [])},
                         disable_env_checking=True)
            .env_runners(num_env_runners=env_runners, num_envs_per_env_runner=envs_per_runner,
                         gym_env_vectorize_mode=mode, rollout_fragment_length="auto")
            .training(train_batch_size_per_learner=rollout, minibatch_size=minibatch, num_epochs=epochs, lr=lr,
                      gamma=0.99, lambda_=0.95, clip_param=0.2, entropy_coeff=0.0, use_kl_loss=False,
                      vf_loss_coeff=0.5, vf_clip_param=1e6, grad_clip=0.5)
            .rl_module(rl_module_spec=RLModuleSpec(module_class=SlateRLModule,
                                                   model_config={"hidden": hidden, "code": code}))
            .reporting(metrics_num_episodes_for_smoothing=100)
            .debugging(seed=seed, log_level="ERROR")
            .framework("torch"))


def train_rllib(scenario, steps: int = 30_000, seed: int = 0, overrides=None, env_id: str = "recworld/Session-v0",
                address: str | None = None, env_runners: int = 1, envs_per_runner: int = 4,
                num_cpus: int | None = None, threads: int | None = 1, on_iteration=None,
                checkpoint: str | Path | None = None, **ppo) -> dict:
    """Train PPO on RLlib until ``steps`` env steps are sampled (whole iterations of 2,048).

    Returns ``{"net": the trained SlateScorerNet, "observation_space": the env's, "curve":
    [(steps, mean return of the last 100 episodes)], "info": {...}}``; ``checkpoint``: a folder
    for RLlib's own checkpoint of the algorithm (to resume with RLlib).  ``threads``: torch threads of
    the learner in this process (1 suits these small networks; ``None`` keeps torch's
    setting).  ``on_iteration(result)`` is called after each training iteration."""
    check_installed()
    import copy

    import ray
    import yaml

    from recworld.simulator.gym.policies import torch_threads
    from recworld.simulator.scenario import load_scenario

    scn = load_scenario(scenario, overrides)
    scenario_dict = yaml.safe_load(scn.to_yaml())    # the resolved scenario travels to every env runner
    config = ppo_config(scenario_dict, None, env_id, seed, env_runners, envs_per_runner, **ppo)
    started, info = _init_ray(address, num_cpus)
    curve: list[tuple[int, float]] = []
    quiet = logging.getLogger("ray.rllib")     # RLlib's notices about its own internals, at every build
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with torch_threads(threads):
            t0 = time.perf_counter()
            algo = config.build_algo()
            info["build_seconds"] = round(time.perf_counter() - t0, 3)
            t0, sampled = time.perf_counter(), 0
            while sampled < steps:
                res = algo.train()
                sampled = int(res.get("num_env_steps_sampled_lifetime", 0))
                ret = res.get("env_runners", {}).get("episode_return_mean")
                if ret is not None and not math.isnan(ret):
                    curve.append((sampled, float(ret)))
                if on_iteration is not None:
                    on_iteration(res)
            info.update(train_seconds=round(time.perf_counter() - t0, 3), steps=sampled,
                        iterations=int(res.get("training_iteration", 0)),
                        steps_per_second=round(sampled / max(time.perf_counter() - t0, 1e-9), 1),
                        env_runners=env_runners, envs_per_runner=envs_per_runner,
                        cluster_cpus=ray.cluster_resources().get("CPU"))
            module = algo.get_module()
            net = copy.deepcopy(module.net).cpu().eval()
            if checkpoint is not None:
                algo.save_to_path(str(Path(checkpoint).resolve()))
        return {"net": net, "observation_space": module.observation_space, "curve": curve, "info": info}
    finally:
        quiet.setLevel(level)
        if "algo" in locals():
            algo.stop()
        if started:
            ray.shutdown()


def save_rllib_policy(net, observation_space, folder: str | Path, meta: dict) -> None:
    """``policy.pt`` (the network's tensors) and ``policy.json`` (``trainer: rllib``, spaces, net)."""
    import json

    import torch

    from recworld.simulator.gym.policies import SPEC, WEIGHTS, space_spec
    from recworld.simulator.gym.slate_net import net_spec

    folder = Path(folder)
    torch.save(net.state_dict(), folder / WEIGHTS)
    spec = dict(meta, trainer="rllib", weights=WEIGHTS, net=net_spec(net),
                observation_space=space_spec(observation_space),
                action_nvec=[int(net.C)] * int(net.S))
    (folder / SPEC).write_text(json.dumps(spec, indent=2))
