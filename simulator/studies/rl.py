"""Reinforcement learning on RecWorld envs with stable-baselines3 (the ``recworld[rl]`` extra).

``CandidateScorer`` is the policy network's feature extractor: one small MLP, shared by all
candidates, scores each candidate from its own features, the user's and the recent history,
so the policy treats candidates alike whatever their position (permutation-equivariant)
and learns from far fewer steps than a flat MLP over all candidates at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from recworld.simulator.gym.policies import (ALGOS, CandidateScorer, _algo, load_policy,  # noqa: F401
                                             policy_kwargs, save_policy, slate_policy_class)


TRAIN_ENVS = 4            # envs ``train`` steps together (its default ``n_envs``)


def make_env(scenario, overrides=None, env_id: str = "recworld/Session-v0"):
    import gymnasium as gym

    import recworld  # noqa: F401  (registers the environments)

    return gym.make(env_id, scenario=scenario, overrides=overrides)


def train(scenario, algo: str = "ppo", steps: int = 30_000, seed: int = 0, overrides=None, n_envs: int = TRAIN_ENVS,
          progress: bool = False, env_id: str = "recworld/Session-v0", callback=None, threads: int | None = 1,
          vec_env: str = "native", log_dir: str | Path | None = None):
    """Train a policy on ``n_envs`` copies of the env; returns the stable-baselines3 model.

    ``threads``: torch threads while training (1 suits these small networks; ``None`` keeps
    torch's setting); the previous setting is restored afterwards.  ``vec_env``: ``"native"``
    steps Session-v0's copies together (the natively vectorised env, one random stream per
    copy: the same trajectories, and so the same model, as ``"dummy"``, SB3's DummyVecEnv of
    single envs); other env ids use ``"dummy"``; ``"subproc"`` runs each copy in a process.
    ``log_dir``: where SB3 writes its training log (``progress.csv``: losses, entropy, steps
    per second per update); without it nothing is written (SB3 alone would leave an empty
    ``SB3-<date>`` folder in the temp directory on every call)."""
    from stable_baselines3.common.env_util import make_vec_env

    from recworld.simulator.gym.policies import torch_threads

    if vec_env not in ("native", "dummy", "subproc"):
        raise ValueError(f"vec_env must be 'native', 'dummy' or 'subproc', got {vec_env!r}")
    with torch_threads(threads):
        if vec_env == "native" and env_id == "recworld/Session-v0":
            import gymnasium as gym

            from recworld.simulator.gym.sb3 import SB3VectorEnv

            venv = SB3VectorEnv(gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point",
                                             scenario=scenario, overrides=overrides, rng="per_env",
                                             autoreset_mode=gym.vector.AutoresetMode.SAME_STEP))
            venv.seed(seed)
        else:
            from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

            cls = SubprocVecEnv if vec_env == "subproc" else DummyVecEnv
            venv = make_vec_env(lambda: make_env(scenario, overrides, env_id), n_envs=n_envs, seed=seed, vec_env_cls=cls)
        algo_cls = _algo(algo)
        kw = dict(n_steps=512, batch_size=256, learning_rate=1e-3, ent_coef=0.0) if algo == "ppo" else {}
        model = algo_cls(slate_policy_class(), venv, seed=seed, policy_kwargs=policy_kwargs(), verbose=0, device="cpu",
                         **kw)
        from stable_baselines3.common.logger import Logger, configure

        if log_dir is not None:
            model.set_logger(configure(str(log_dir), ["csv"]))
        else:
            model.set_logger(Logger(folder=None, output_formats=[]))
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
    """A policy's evaluation: ``returns[i][k]`` is episode k's return on seed ``seeds[i]``."""
    policy: str
    mean: float           # mean episode return over all seeds and episodes
    std: float            # std of the per-seed means
    per_seed: list[float]
    episodes: int
    ci_low: float = float("nan")      # 95% interval of the mean: bootstrap over seeds, then episodes
    ci_high: float = float("nan")
    seeds: list[int] = field(default_factory=list)
    returns: list[list[float]] = field(default_factory=list)
    #: for a baseline: the evaluated policy's name and its advantage over this one (its return minus
    #: this one's, paired by seed and episode reset), with the 95% interval
    advantage_of: str | None = None
    advantage: float = float("nan")
    advantage_low: float = float("nan")
    advantage_high: float = float("nan")


BOOTSTRAP = 2000


def bootstrap_interval(returns, level: float = 0.95, reps: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """Interval of the mean of ``returns`` (per seed, a list of episode returns) by a two-level
    bootstrap: seeds drawn with replacement, then episodes within each drawn seed, so both
    sources of variation count.  Its own generator (``seed``): the same input gives the same
    interval.  With one seed it is the bootstrap over episodes."""
    groups = [np.asarray(r, dtype=np.float64) for r in returns if len(r)]
    if not groups or sum(len(g) for g in groups) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n = len(groups)
    means = np.empty(reps)
    for b in range(reps):
        picked = rng.integers(0, n, n) if n > 1 else np.zeros(1, dtype=np.int64)
        total = count = 0.0
        for i in picked:
            g = groups[i]
            total += g[rng.integers(0, len(g), len(g))].sum()
            count += len(g)
        means[b] = total / count
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def evaluate(policy_factory, scenario, seeds, episodes: int = 50, overrides=None, name: str = "",
             env_id: str = "recworld/Session-v0") -> EvalResult:
    """Mean episode return of a policy with its 95% interval over seeds and episodes; each
    seed runs ``episodes`` episodes from ``reset(seed=seed * 100_000 + k)``, so every policy
    meets the same users and candidates."""
    env = make_env(scenario, overrides, env_id)
    per_seed, returns = [], []
    for seed in seeds:
        policy = policy_factory(env, seed)
        episode_returns = []
        for k in range(episodes):
            obs, _ = env.reset(seed=int(seed) * 100_000 + k)
            done, total = False, 0.0
            while not done:
                action = policy(env, obs)
                obs, r, term, trunc, info = env.step(action)
                if isinstance(policy, EnvPolicy):
                    policy.observe(env, action, info)
                total += float(r)
                done = term or trunc
            episode_returns.append(total)
        returns.append(episode_returns)
        per_seed.append(float(np.mean(episode_returns)))
    env.close()
    lo, hi = bootstrap_interval(returns)
    return EvalResult(name, float(np.mean([x for r in returns for x in r])), float(np.std(per_seed)), per_seed,
                      episodes, lo, hi, [int(s) for s in seeds], returns)


def compare_to(result: EvalResult, reference: EvalResult) -> EvalResult:
    """Set ``result``'s advantage fields: ``reference``'s return minus ``result``'s, paired by
    seed and episode reset, with its two-level bootstrap interval."""
    if result.seeds != reference.seeds or [len(r) for r in result.returns] != [len(r) for r in reference.returns]:
        raise ValueError("paired differences need the same seeds and episodes for both policies")
    diffs = [list(np.asarray(a) - np.asarray(b)) for a, b in zip(reference.returns, result.returns)]
    result.advantage_of = reference.policy
    result.advantage = float(np.mean([x for d in diffs for x in d]))
    result.advantage_low, result.advantage_high = bootstrap_interval(diffs)
    return result


def save_results(results: list[EvalResult], path: Path) -> None:
    def clean(v):
        return None if isinstance(v, float) and np.isnan(v) else v

    path.write_text(json.dumps([{k: clean(v) for k, v in asdict(r).items()} for r in results], indent=2))


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


ENGINES = ("sb3", "rllib")


def train_and_evaluate(scenario, out: str | Path, algo: str = "ppo", steps: int = 30_000, seed: int = 0,
                       overrides=None, eval_seeds: int = 5, eval_episodes: int = 100,
                       baselines=DEFAULT_BASELINES, progress: bool = True, overwrite: bool = False,
                       engine: str = "sb3", address: str | None = None, env_runners: int = 1,
                       envs_per_runner: int = 4, num_cpus: int | None = None) -> dict:
    """Train, save ``model.zip`` + ``policy.json``, write the learning curve and an evaluation of
    the policy against baselines on the same seeds and episode resets (``results.json``: each
    mean with its 95% interval over seeds and episodes, each baseline with the policy's paired
    advantage over it; ``report.md``, ``plots/``).

    ``engine``: ``"sb3"`` (stable-baselines3 in this process) or ``"rllib"`` (PPO on RLlib,
    ``env_runners`` Ray actors of ``envs_per_runner`` envs each, on a local Ray or the cluster
    at ``address``; writes ``policy.pt`` + ``policy.json`` and ``rllib_checkpoint/``, no
    ``model.zip``).  Both are evaluated the same way."""
    if engine not in ENGINES:
        raise ValueError(f"unknown training engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "rllib" and algo != "ppo":
        raise ValueError(f"--engine rllib trains PPO only, got --algo {algo}")
    if engine == "sb3" and address:
        raise ValueError("--address is a Ray cluster's address: it goes with --engine rllib")
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
    meta = {"algo": algo, "steps": steps, "seed": seed, "scenario": scn.name, "env": scn.env.model_dump()}
    if engine == "rllib":
        rows, model_file, speed = _train_rllib(scn, out, steps, seed, meta, progress, address, env_runners,
                                               envs_per_runner, num_cpus)
        model = load_policy(out)              # the saved policy.pt, as the `policy` recommender loads it
        policy_name = "ppo-rllib"
    else:
        curve = _curve_callback(steps, progress)
        t0, c0 = time.perf_counter(), time.process_time()
        model = train(scn, algo=algo, steps=steps, seed=seed, callback=curve, log_dir=out / "sb3")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        done = int(model.num_timesteps)
        speed = {"engine": "sb3", "algo": algo, "steps": done, "envs": TRAIN_ENVS, "vec_env": "native",
                 "torch_threads": 1, "train_seconds": round(wall, 3), "train_cpu_seconds": round(cpu, 3),
                 "steps_per_second": round(done / max(wall, 1e-9), 1),
                 "env_steps_per_second": None}
        try:                              # a figure for the report: its failure costs the figure, not the run
            speed["env_steps_per_second"] = round(env_steps_per_second(scn, TRAIN_ENVS, seed=seed), 1)
        except Exception:  # noqa: BLE001 - logged with its traceback
            log.exception("could not measure the env alone's speed; training.json leaves it out")
        (out / "training.json").write_text(json.dumps(speed, indent=2))
        model.save(out / "model.zip")         # SB3's format (pickled parts: load only your own)
        save_policy(model, out, meta)         # policy.pt + policy.json: what `policy` loads, no unpickling
        rows, model_file, policy_name = curve.rows, out / "model.zip", algo
    curve_df = pd.DataFrame(rows, columns=["timestep", "episode_return"])
    curve_df.to_csv(out / "learning_curve.csv", index=False)

    seeds = list(range(1, eval_seeds + 1))
    results = [evaluate(lambda env, s: ModelPolicy(model), scn, seeds, eval_episodes, name=policy_name)]
    known = registry.available("recommenders")
    for name in baselines:
        if name != "random" and name not in known:
            log.warning("baseline %r is not a registered recommender here; skipped", name)
            continue
        res = evaluate(lambda env, s, n=name: builtin_policy(n, env, s), scn, seeds, eval_episodes, name=name)
        results.append(compare_to(res, results[0]))
    save_results(results, out / "results.json")
    _plots(out, curve_df, results, scn.env.reward)
    _report(out, scn, policy_name, steps, results, model_file.name, speed)
    return {"model": model_file, "results": results, "speed": speed}


def env_steps_per_second(scenario, n_envs: int = TRAIN_ENVS, seed: int = 0, seconds: float = 0.5) -> float:
    """Steps per second (wall) of the env alone as ``train`` builds it (the native vector env of
    ``n_envs`` Session-v0 users, random slates): what training would reach with a free policy."""
    import gymnasium as gym

    import recworld  # noqa: F401  (registers the environments)

    env = gym.make_vec("recworld/Session-v0", num_envs=n_envs, vectorization_mode="vector_entry_point",
                       scenario=scenario, rng="per_env", autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    try:
        rng = np.random.default_rng(seed)
        e = env.unwrapped
        env.reset(seed=seed)
        steps, t0 = 0, time.perf_counter()
        while True:
            for _ in range(64):
                env.step(np.argsort(rng.random((n_envs, e.C)), axis=1)[:, : e.S])
            steps += 64 * n_envs
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                return steps / elapsed
    finally:
        env.close()


def _train_rllib(scn, out: Path, steps: int, seed: int, meta: dict, progress: bool, address, env_runners: int,
                 envs_per_runner: int, num_cpus) -> tuple[list, Path, dict]:
    import json

    from recworld.simulator.output.progress import progress_bar
    from recworld.simulator.studies.rllib import save_rllib_policy, train_rllib

    bar = progress_bar(total=steps, unit="step", desc="training (RLlib)", enabled=progress, dynamic_ncols=True)

    def tick(res):
        bar.update(max(0, min(steps, int(res.get("num_env_steps_sampled_lifetime", 0))) - bar.n))

    try:
        res = train_rllib(scn, steps=steps, seed=seed, address=address, env_runners=env_runners,
                          envs_per_runner=envs_per_runner, num_cpus=num_cpus, on_iteration=tick,
                          checkpoint=out / "rllib_checkpoint")
    finally:
        bar.close()
    save_rllib_policy(res["net"], res["observation_space"], out, dict(meta, steps_sampled=res["info"]["steps"]))
    (out / "training.json").write_text(json.dumps(res["info"], indent=2, default=str))
    return res["curve"], out / "policy.pt", res["info"]


def evaluation_lines(results: list[EvalResult], reward: str) -> list[str]:
    """The evaluation as text lines: each policy's mean [95% interval], and the trained
    policy's paired advantage over each baseline."""
    if not results:
        return []
    first = results[0]
    lines = [f"mean episode return ({reward}) over {len(first.seeds)} seed(s) x {first.episodes} episodes, "
             "95% interval (bootstrap over seeds and episodes):"]
    for r in results:
        text = f"  {r.policy:<12} {r.mean:8.3f}  [{r.ci_low:.3f}, {r.ci_high:.3f}]"
        if r.advantage_of:
            text += (f"   {r.advantage_of} - {r.policy}: {r.advantage:+.3f} "
                     f"[{r.advantage_low:+.3f}, {r.advantage_high:+.3f}]")
            if r.advantage_low > 0 or r.advantage_high < 0:
                text += " *"
        lines.append(text)
    if any(r.advantage_of for r in results):
        lines.append("  (* = the interval of the paired difference leaves out zero)")
    return lines


def speed_line(speed: dict) -> str | None:
    """How fast training ran, from ``training.json`` (None if it was not measured)."""
    rate = speed.get("steps_per_second")
    if not rate:
        return None
    line = f"{speed.get('steps', 0):,} steps in {speed.get('train_seconds', 0):.1f} s = {rate:,.0f} steps/s"
    env = speed.get("env_steps_per_second")
    if env:
        line += (f"; the env alone: {env:,.0f} steps/s (the policy's forward passes and updates take "
                 f"{max(0.0, 1 - rate / env):.0%} of training time)")
    return line


def _report(out: Path, scn, algo: str, steps: int, results: list[EvalResult], model_file: str = "model.zip",
            speed: dict | None = None) -> None:
    saved = "`policy.pt`" if model_file == "policy.pt" else f"`{model_file}` / `policy.pt`"
    fast = speed_line(speed or {})
    text = [f"# Training: {algo} on {scn.name}", "", f"{steps} training steps; policy in {saved}.",
            *([f"Training speed: {fast} (`training.json`)."] if fast else []),
            "", "## Evaluation", "", "Every policy meets the same users and candidates (same seeds, same episode "
            "resets). The interval is a 95% two-level bootstrap (seeds, then episodes within them); the advantage "
            "is the trained policy's return minus the baseline's, paired by episode.", "", "```",
            *evaluation_lines(results, scn.env.reward), "```", "",
            "![learning curve](plots/learning_curve.png)", "", "![evaluation](plots/evaluation.png)", ""]
    (out / "report.md").write_text("\n".join(text), encoding="utf-8")


def _plots(out: Path, curve, results, reward: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    if len(curve):
        window = max(1, len(curve) // 30)
        ax.plot(curve["timestep"], curve["episode_return"].rolling(window, min_periods=1).mean(), label="policy")
    for r in results[1:]:
        color = {"random": "grey", "popularity": "tab:orange"}.get(r.policy)
        ax.axhline(r.mean, ls="--", lw=1, label=r.policy, color=color)
        if not np.isnan(r.ci_low):
            ax.axhspan(r.ci_low, r.ci_high, alpha=0.12, color=color or "tab:green", lw=0)
    ax.set(xlabel="training steps", ylabel=f"episode return ({reward})", title="Learning curve")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "plots" / "learning_curve.png", dpi=110)

    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    means = np.array([r.mean for r in results])
    err = np.array([[max(r.mean - r.ci_low, 0.0), max(r.ci_high - r.mean, 0.0)] if not np.isnan(r.ci_low)
                    else [0.0, 0.0] for r in results]).T
    ax.bar([r.policy for r in results], means, yerr=err, capsize=4,
           color=["tab:blue"] + ["tab:gray"] * (len(results) - 1))
    ax.set(ylabel=f"mean episode return ({reward})", title="Evaluation (same seeds), 95% interval")
    fig.tight_layout()
    fig.savefig(out / "plots" / "evaluation.png", dpi=110)
