"""Reinforcement learning on RecWorld envs with stable-baselines3 (the ``recworld[rl]`` extra).

``CandidateScorer`` is the policy network's feature extractor: one small MLP, shared by all
candidates, scores each candidate from its own features, the user's and the recent history,
so the policy treats candidates alike whatever their position (permutation-equivariant)
and learns from far fewer steps than a flat MLP over all candidates at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recworld.simulator.gym.policies import (ALGOS, CandidateScorer, _algo, load_policy,  # noqa: F401
                                             policy_kwargs, save_policy, slate_policy_class)


def make_env(scenario, overrides=None, env_id: str = "recworld/Session-v0"):
    import gymnasium as gym

    import recworld  # noqa: F401  (registers the environments)

    return gym.make(env_id, scenario=scenario, overrides=overrides)


def train(scenario, algo: str = "ppo", steps: int = 30_000, seed: int = 0, overrides=None, n_envs: int = 4,
          progress: bool = False, env_id: str = "recworld/Session-v0", callback=None):
    """Train a policy on vectorised copies of the env; returns the stable-baselines3 model."""
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env(lambda: make_env(scenario, overrides, env_id), n_envs=n_envs, seed=seed)
    cls = _algo(algo)
    kw = dict(n_steps=512, batch_size=256, learning_rate=1e-3, ent_coef=0.0) if algo == "ppo" else {}
    model = cls(slate_policy_class(), venv, seed=seed, policy_kwargs=policy_kwargs(), verbose=0, device="cpu", **kw)
    model.learn(total_timesteps=steps, progress_bar=progress, callback=callback)
    return model


# ----------------------------------------------------------------------------- evaluation


class EnvPolicy:
    """A policy in the evaluation loop: ``policy(env, obs) -> action``, then ``observe``."""

    def __call__(self, env, obs):
        raise NotImplementedError

    def observe(self, env, action, info) -> None:
        """What the user did with the slate (policies that learn online override it)."""


class ModelPolicy(EnvPolicy):
    """A trained model acting greedily (deterministic)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, env, obs):
        return self.model.predict(obs, deterministic=True)[0]


class RandomPolicy(EnvPolicy):
    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def __call__(self, env, obs):
        e = env.unwrapped
        return self.rng.permutation(e.C)[: e.S]


class RecommenderPolicy(EnvPolicy):
    """Any recommender acting in the env: it ranks the offered candidates for the user, fills
    the slate best first, and learns online from the user's responses (``update``)."""

    def __init__(self, recommender, env):
        e = env.unwrapped
        self.rec = recommender
        self.rec.fit(e.parts.interactions, e.parts.catalog)

    def __call__(self, env, obs):
        from recworld.simulator.protocols import SlateRequest

        e = env.unwrapped
        req = SlateRequest(user=e.user.index, k=e.S, time=e.clock, user_id=e.user.user_id)
        ranked = self.rec.rank_candidates(req, e.candidates)[: e.S]
        position = {int(item): j for j, item in enumerate(e.candidates.tolist())}
        return np.array([position[int(i)] for i in ranked], dtype=np.int64)

    def observe(self, env, action, info) -> None:
        from recworld.simulator.protocols import Feedback, Slate

        e = env.unwrapped
        clicked = np.asarray(info.get("clicked", []), dtype=np.int64)
        self.rec.update(Feedback(user=e.user.index, slate=Slate(np.asarray(info["slate"], dtype=np.int64)),
                                 clicked=clicked, ratings=np.full(len(clicked), np.nan),
                                 watch_minutes=np.zeros(len(clicked)), time=e.clock,
                                 user_id=e.user.user_id))


def builtin_policy(name: str, env, seed: int = 0):
    """A registered recommender (or 'random') as a policy for ``env``."""
    if name == "random":
        return RandomPolicy(seed)
    from recworld.simulator import registry

    cls = registry.load("recommenders", name)
    return RecommenderPolicy(cls(rng=np.random.default_rng(seed)), env)


@dataclass
class EvalResult:
    policy: str
    mean: float           # mean episode return over all seeds
    std: float            # std of the per-seed means
    per_seed: list[float]
    episodes: int


def evaluate(policy_factory, scenario, seeds, episodes: int = 50, overrides=None, name: str = "",
             env_id: str = "recworld/Session-v0") -> EvalResult:
    """Mean episode return of a policy; each seed runs ``episodes`` episodes from
    ``reset(seed=seed * 100_000 + k)``, so every policy meets the same users and candidates."""
    env = make_env(scenario, overrides, env_id)
    per_seed = []
    for seed in seeds:
        policy = policy_factory(env, seed)
        total = 0.0
        for k in range(episodes):
            obs, _ = env.reset(seed=int(seed) * 100_000 + k)
            done = False
            while not done:
                action = policy(env, obs)
                obs, r, term, trunc, info = env.step(action)
                if isinstance(policy, EnvPolicy):
                    policy.observe(env, action, info)
                total += r
                done = term or trunc
        per_seed.append(total / episodes)
    env.close()
    return EvalResult(name, float(np.mean(per_seed)), float(np.std(per_seed)), per_seed, episodes)


def save_results(results: list[EvalResult], path: Path) -> None:
    path.write_text(json.dumps([asdict(r) for r in results], indent=2))


# ----------------------------------------------------------------------------- train + evaluate


def _curve_callback(total: int, progress: bool):
    from stable_baselines3.common.callbacks import BaseCallback

    from recworld.simulator.output.progress import progress_bar

    class Curve(BaseCallback):
        """Episode returns as training goes (for the learning curve) and a progress bar."""

        def __init__(self):
            super().__init__()
            self.rows: list[tuple[int, float]] = []

        def _on_training_start(self):
            rollout = self.model.n_steps * self.training_env.num_envs if hasattr(self.model, "n_steps") else 1
            self.bar = progress_bar(total=-(-total // rollout) * rollout, unit="step", desc="training",
                                    enabled=progress, dynamic_ncols=True)

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    self.rows.append((self.num_timesteps, float(info["episode"]["r"])))
            self.bar.update(self.training_env.num_envs)
            return True

        def _on_training_end(self):
            self.bar.close()

    return Curve()


DEFAULT_BASELINES = ("random", "popularity", "slate_ts")


def train_and_evaluate(scenario, out: str | Path, algo: str = "ppo", steps: int = 30_000, seed: int = 0,
                       overrides=None, eval_seeds: int = 5, eval_episodes: int = 100,
                       baselines=DEFAULT_BASELINES, progress: bool = True, overwrite: bool = False) -> dict:
    """Train, save ``model.zip`` + ``policy.json``, write the learning curve and an evaluation of
    the policy against baselines on the same seeds (``results.json``, ``plots/``)."""
    import logging

    import pandas as pd

    from recworld.simulator import registry
    from recworld.simulator.scenario import load_scenario

    log = logging.getLogger("recworld")
    scn = load_scenario(scenario, overrides)
    from recworld.simulator.output.folders import prepare_out

    out = prepare_out(out, overwrite, "train")
    (out / "plots").mkdir(exist_ok=True)
    (out / "scenario.yaml").write_text(scn.to_yaml())
    curve = _curve_callback(steps, progress)
    model = train(scn, algo=algo, steps=steps, seed=seed, callback=curve)
    model.save(out / "model.zip")             # SB3's format (pickled parts: load only your own)
    meta = {"algo": algo, "steps": steps, "seed": seed, "scenario": scn.name, "env": scn.env.model_dump()}
    save_policy(model, out, meta)             # policy.pt + policy.json: what `policy` loads, no unpickling
    curve_df = pd.DataFrame(curve.rows, columns=["timestep", "episode_return"])
    curve_df.to_csv(out / "learning_curve.csv", index=False)

    seeds = list(range(1, eval_seeds + 1))
    results = [evaluate(lambda env, s: ModelPolicy(model), scn, seeds, eval_episodes, name=algo)]
    known = registry.available("recommenders")
    for name in baselines:
        if name != "random" and name not in known:
            log.warning("baseline %r is not a registered recommender here; skipped", name)
            continue
        results.append(evaluate(lambda env, s, n=name: builtin_policy(n, env, s), scn, seeds, eval_episodes, name=name))
    save_results(results, out / "results.json")
    _plots(out, curve_df, results, scn.env.reward)
    return {"model": out / "model.zip", "results": results}


def _plots(out: Path, curve, results, reward: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    if len(curve):
        window = max(1, len(curve) // 30)
        ax.plot(curve["timestep"], curve["episode_return"].rolling(window, min_periods=1).mean(), label="policy")
    for r in results[1:]:
        ax.axhline(r.mean, ls="--", lw=1, label=r.policy, color={"random": "grey", "popularity": "tab:orange"}.get(r.policy))
    ax.set(xlabel="training steps", ylabel=f"episode return ({reward})", title="Learning curve")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "plots" / "learning_curve.png", dpi=110)

    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ax.bar([r.policy for r in results], [r.mean for r in results], yerr=[r.std for r in results], capsize=4,
           color=["tab:blue"] + ["tab:gray"] * (len(results) - 1))
    ax.set(ylabel=f"mean episode return ({reward})", title="Evaluation (same seeds)")
    fig.tight_layout()
    fig.savefig(out / "plots" / "evaluation.png", dpi=110)
