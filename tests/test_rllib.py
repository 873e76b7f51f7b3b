"""`recworld train --engine rllib`: PPO on RLlib (a real local Ray, no mocks) trains, saves, loads and evaluates."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("tree")          # dm-tree: one of RLlib's dependencies (the rllib extra) that Ray lacks
pytest.importorskip("stable_baselines3")

from recworld.simulator import load_run, run_scenario  # noqa: E402
from recworld.simulator.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RL = ROOT / "scenarios" / "rl_session.yaml"
SMALL = ["population.size=100", "data.n_items=400"]


@pytest.mark.slow
def test_rllib_trains_saves_loads_evaluates_and_serves(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)    # a local Ray, whatever the environment says
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")      # nothing written to ~/.ray by this test
    import gymnasium as gym
    import torch

    from recworld.simulator.gym.policies import load_policy
    from recworld.simulator.gym.slate_net import ScorerPolicy, build_from_spec
    from recworld.simulator.studies.rl import ModelPolicy, evaluate

    out = tmp_path / "train"
    args = ["train", str(RL), "--engine", "rllib", "--steps", "2048", "--env-runners", "1", "--num-cpus", "2",
            "--eval-seeds", "2", "--eval-episodes", "40", "--out", str(out), "--no-progress"]
    for o in SMALL:
        args += ["--set", o]
    assert main(args) == 0

    spec = json.loads((out / "policy.json").read_text())
    assert spec["trainer"] == "rllib" and spec["action_nvec"] == [20] * 5
    assert (out / "rllib_checkpoint").is_dir() and not (out / "model.zip").exists()
    assert (out / "report.md").read_text().startswith("# Training: ppo-rllib on rl_session")
    info = json.loads((out / "training.json").read_text())
    assert info["steps"] >= 2048 and info["iterations"] == 1 and info["env_runners"] == 1
    curve = (out / "learning_curve.csv").read_text().splitlines()
    assert curve[0] == "timestep,episode_return" and len(curve) == 2     # one row per iteration

    # the evaluation: the trained policy and the baselines on the same seeds, with intervals
    res = {r["policy"]: r for r in json.loads((out / "results.json").read_text())}
    assert {"ppo-rllib", "random", "popularity", "slate_ts"} <= set(res)
    trained = res["ppo-rllib"]
    assert trained["seeds"] == [1, 2] and trained["ci_low"] <= trained["mean"] <= trained["ci_high"]
    assert res["random"]["advantage_of"] == "ppo-rllib"

    # learning happened: the same network untrained (fresh weights) does worse on the same episodes
    policy = load_policy(out / "policy.pt")
    assert isinstance(policy, ScorerPolicy)
    torch.manual_seed(0)
    fresh = ScorerPolicy(build_from_spec(spec))
    untrained = evaluate(lambda env, s: ModelPolicy(fresh), str(RL), [1, 2], 40, overrides=SMALL)
    assert trained["mean"] > untrained.mean, (trained["mean"], untrained.mean)
    assert trained["mean"] > res["random"]["mean"]

    # greedy actions: S distinct candidates, the best-scored first; batched and single observations agree
    env = gym.make("recworld/Session-v0", scenario=str(RL), overrides=SMALL)
    obs, _ = env.reset(seed=3)
    action, _ = policy.predict(obs, deterministic=True)
    assert action.shape == (5,) and len(set(action.tolist())) == 5
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    assert (policy.predict(batch)[0] == action).all()
    with torch.no_grad():
        scores = policy.net.scores({k: torch.as_tensor(v[None]) for k, v in obs.items()})[0].numpy()
    assert (np.sort(scores)[::-1][:5] == scores[action]).all()

    # the policy recommender serves it in a world run (a folder path is enough)
    run = load_run(run_scenario(RL, tmp_path / "run", progress=False,
                                overrides=["recommender.name=policy", f"recommender.path={out}",
                                           "session.page_size=5", *SMALL]))
    slates = run.of_kind("slate")
    assert len(slates) > 20 and all(len(set(items)) == 5 for items in slates["items"])


def test_rllib_policy_load_errors(tmp_path):
    from recworld.simulator.gym.policies import PolicyLoadError, load_policy

    (tmp_path / "policy.json").write_text(json.dumps({"trainer": "rllib", "algo": "ppo"}))
    (tmp_path / "policy.pt").write_bytes(b"")
    with pytest.raises(PolicyLoadError, match="--engine rllib"):
        load_policy(tmp_path)


def test_train_engine_arguments_are_checked(tmp_path):
    from recworld.simulator.studies.rl import train_and_evaluate

    with pytest.raises(ValueError, match="unknown training engine"):
        train_and_evaluate(str(RL), tmp_path / "a", engine="tune")
    with pytest.raises(ValueError, match="PPO only"):
        train_and_evaluate(str(RL), tmp_path / "b", engine="rllib", algo="a2c")
    with pytest.raises(ValueError, match="--engine rllib"):
        train_and_evaluate(str(RL), tmp_path / "c", address="127.0.0.1:6379")


def test_slate_module_rejects_a_flat_observation():
    import gymnasium as gym

    from recworld.simulator.gym.slate_net import SlateScorerNet

    env = gym.make("recworld/Session-v0", scenario=str(RL), overrides=SMALL, flatten=True)
    with pytest.raises(ValueError, match="flatten=True"):
        SlateScorerNet.for_spaces(env.observation_space, 5)
