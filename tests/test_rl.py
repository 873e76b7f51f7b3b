import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("stable_baselines3")

from recworld.simulator import load_run, run_scenario  # noqa: E402
from recworld.simulator.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RL = ROOT / "scenarios" / "rl_session.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`recworld train` on the shipped RL scenario with its default budget."""
    out = tmp_path_factory.mktemp("train")
    assert main(["train", str(RL), "--out", str(out), "--eval-seeds", "3", "--eval-episodes", "100",
                 "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_trained_ppo_beats_random_and_popularity(trained):
    res = {r["policy"]: r for r in json.loads((trained / "results.json").read_text())}
    assert {"ppo", "random", "popularity"} <= set(res)
    for base in ("random", "popularity"):
        # better on every evaluation seed, not just on average
        assert all(p > b for p, b in zip(res["ppo"]["per_seed"], res[base]["per_seed"])), (res["ppo"], res[base])
    for f in ("model.zip", "policy.json", "learning_curve.csv", "plots/learning_curve.png", "plots/evaluation.png"):
        assert (trained / f).exists(), f
    curve = pd.read_csv(trained / "learning_curve.csv")
    assert len(curve) > 100 and curve["timestep"].is_monotonic_increasing


@pytest.mark.slow
def test_training_reports_its_speed_next_to_the_env_alone(trained):
    speed = json.loads((trained / "training.json").read_text())
    asked = json.loads((trained / "policy.json").read_text())["steps"]
    assert speed["engine"] == "sb3" and speed["envs"] == 4 and speed["steps"] >= asked     # whole rollouts
    assert 0 < speed["steps_per_second"] < speed["env_steps_per_second"]
    assert "steps/s; the env alone:" in (trained / "report.md").read_text()
    log = pd.read_csv(trained / "sb3" / "progress.csv")
    assert log["time/total_timesteps"].max() == speed["steps"]


@pytest.mark.slow
def test_saved_policy_serves_a_world_run(trained, tmp_path):
    out = run_scenario(RL, tmp_path / "run", progress=False,
                       overrides=["recommender.name=policy", f"recommender.path={trained / 'model.zip'}",
                                  "session.page_size=5", "population.size=100"])
    run = load_run(out)
    slates = run.of_kind("slate")
    assert len(slates) > 50 and run.metrics["watches"] > 0
    assert all(len(items) == 5 and len(set(items)) == 5 for items in slates["items"])


def test_policy_recommender_errors(tmp_path):
    from recworld.simulator.scenario import ScenarioError, load_scenario, validate_plugins

    with pytest.raises(ScenarioError, match="recommender.path"):
        validate_plugins(load_scenario({"recommender": {"name": "policy"}}))
    with pytest.raises(FileNotFoundError, match="recworld train"):
        run_scenario(RL, tmp_path / "r", progress=False,
                     overrides=["recommender.name=policy", f"recommender.path={tmp_path / 'none.zip'}"])


def test_builtin_recommenders_act_as_policies():
    import gymnasium as gym

    from recworld.simulator.studies.rl import builtin_policy

    env = gym.make("recworld/Session-v0", scenario=str(RL), overrides=["population.size=50", "data.n_items=300"])
    obs, _ = env.reset(seed=0)
    pol = builtin_policy("popularity", env)
    action = pol(env, obs)
    pop = obs["candidates"][:, env.unwrapped.featurizer.G]          # the popularity feature
    assert sorted(pop[action], reverse=True) == sorted(pop, reverse=True)[:5]
    assert len(set(builtin_policy("random", env, seed=1)(env, obs).tolist())) == 5


def test_load_policy_uses_the_algorithm_recorded_beside_the_model(tmp_path):
    from stable_baselines3 import A2C

    from recworld.simulator.studies.rl import load_policy, train

    model = train(str(RL), algo="a2c", steps=64, n_envs=1, overrides=["population.size=30", "data.n_items=100"])
    model.save(tmp_path / "model.zip")
    (tmp_path / "policy.json").write_text(json.dumps({"algo": "a2c"}))
    assert isinstance(load_policy(tmp_path / "model.zip", trust_pickle=True), A2C)


def _crafted_zip(path: Path, marker: Path) -> None:
    """An SB3-style model.zip whose pickled 'data' entry creates ``marker`` when unpickled."""
    import base64
    import pickle
    import zipfile

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    blob = base64.b64encode(pickle.dumps(Payload())).decode()
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": blob},
            "observation_space": {":type:": "<class 'x'>", ":serialized:": blob}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", json.dumps(data))
        z.writestr("_stable_baselines3_version", "2.9.2")


def test_a_crafted_policy_zip_runs_no_code(tmp_path):
    """Loading a policy never unpickles model.zip unless asked to: nothing in the zip runs."""
    from recworld.simulator.gym.policies import PolicyLoadError

    marker = tmp_path / "pwned"
    _crafted_zip(tmp_path / "model.zip", marker)
    (tmp_path / "policy.json").write_text(json.dumps({"algo": "ppo", "env": {"candidates": 20, "slate_size": 5}}))
    out = tmp_path / "run"
    with pytest.raises(PolicyLoadError, match="trust_pickle"):
        run_scenario(RL, out, progress=False, overrides=[
            "recommender.name=policy", f"recommender.path={tmp_path / 'model.zip'}", "session.page_size=5"])
    assert not marker.exists()
    assert main(["run", str(RL), "--out", str(tmp_path / "cli"), "--no-progress", "--set", "recommender.name=policy",
                 "--set", f"recommender.path={tmp_path / 'model.zip'}", "--set", "session.page_size=5"]) != 0
    assert not marker.exists()


def test_saved_weights_load_without_unpickling_and_act_as_the_model(tmp_path):
    import gymnasium as gym
    import numpy as np

    from recworld.simulator.gym.policies import SafePolicy, load_policy, save_policy
    from recworld.simulator.studies.rl import train

    overrides = ["population.size=30", "data.n_items=100"]
    model = train(str(RL), steps=256, n_envs=1, overrides=overrides)
    save_policy(model, tmp_path, {"algo": "ppo"})
    marker = tmp_path / "pwned"
    _crafted_zip(tmp_path / "model.zip", marker)         # a poisoned zip beside safe weights is never read
    safe = load_policy(tmp_path / "model.zip")
    assert isinstance(safe, SafePolicy) and not marker.exists()
    env = gym.make("recworld/Session-v0", scenario=str(RL), overrides=overrides)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert np.array_equal(safe.predict(obs)[0], model.predict(obs, deterministic=True)[0])


def test_the_greedy_sb3_slate_is_the_best_scored_distinct_candidates():
    """Served greedily, an SB3 policy shows its S best-scored candidates (not one candidate in
    every slot, padded by the env with the lowest-numbered ones); sampling stays SB3's."""
    import gymnasium as gym
    import numpy as np
    import torch

    from recworld.simulator.studies.rl import train

    overrides = ["population.size=30", "data.n_items=100"]
    model = train(str(RL), steps=256, n_envs=1, overrides=overrides)
    env = gym.make("recworld/Session-v0", scenario=str(RL), overrides=overrides)
    S = env.unwrapped.S
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        action, _ = model.predict(obs, deterministic=True)
        t, _ = model.policy.obs_to_tensor(obs)
        with torch.no_grad():
            scores = model.policy.get_distribution(t).distribution[0].logits[0].numpy()
        assert len(set(action.tolist())) == S
        assert np.array_equal(action, np.argsort(-scores, kind="stable")[:S]) or \
            np.allclose(np.sort(scores[action])[::-1], np.sort(scores)[::-1][:S])
        sampled, _ = model.predict(obs, deterministic=False)
        assert sampled.shape == action.shape and ((0 <= sampled) & (sampled < env.unwrapped.C)).all()


def test_training_keeps_sb3s_log_in_the_run_folder_and_leaves_nothing_in_tmp(tmp_path, monkeypatch):
    """SB3 alone makes an ``SB3-<date>`` folder in the temp directory on every ``learn``."""
    import tempfile

    from recworld.simulator.studies.rl import train

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    train(RL, steps=4096, log_dir=tmp_path / "sb3")              # two PPO updates
    train(RL, steps=64)
    assert [p.name for p in scratch.iterdir() if p.name.startswith("SB3")] == []
    log = pd.read_csv(tmp_path / "sb3" / "progress.csv")
    assert len(log) >= 1 and {"train/loss", "time/fps"} <= set(log.columns)
