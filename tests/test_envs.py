import pickle
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import recworld.simulator  # noqa: F401  (registers the environments)
from recworld.simulator.gym.features import slate_from_action

ROOT = Path(__file__).resolve().parents[1]
RL = str(ROOT / "scenarios" / "rl_session.yaml")
IDS = ["recworld/Session-v0", "recworld/World-v0"]
SMALL = ["population.size=60", "data.n_items=300"]


def make(env_id, **kw):
    kw.setdefault("overrides", SMALL)
    return gym.make(env_id, scenario=RL, **kw)


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_checker(env_id):
    check_env(make(env_id).unwrapped, skip_render_check=False)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.filterwarnings("ignore:Your observation .* unconventional shape")  # CandidateScorer handles 2-D
def test_sb3_checker(env_id):
    sb3 = pytest.importorskip("stable_baselines3.common.env_checker")
    sb3.check_env(make(env_id).unwrapped, warn=True)
    sb3.check_env(make(env_id, flatten=True).unwrapped, warn=True)


@pytest.mark.parametrize("env_id", IDS)
def test_make_in_a_fresh_interpreter_by_module_path(env_id):
    code = (f"import gymnasium as gym; e = gym.make('recworld.simulator:{env_id}'); o, i = e.reset(seed=0); "
            f"print(sorted(o))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "candidates" in out


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_trajectory(env_id):
    def rollout(seed):
        env = make(env_id)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        traj = [obs["candidates"].copy()]
        for _ in range(40):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            traj += [obs["candidates"].copy(), np.array([r, term, trunc])]
            if term or trunc:
                obs, _ = env.reset()
        return traj
    a, b, c = rollout(3), rollout(3), rollout(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("env_id", IDS)
def test_observations_lie_in_their_space_and_info_is_small(env_id):
    env = make(env_id, flatten=True)
    obs, info = env.reset(seed=1)
    for _ in range(30):
        assert obs.dtype == np.float32 and env.observation_space.contains(obs)
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        assert len(pickle.dumps(info)) < 500
        if term or trunc:
            obs, info = env.reset()


def test_session_terminates_when_the_user_leaves_and_truncates_at_horizon():
    env = make("recworld/Session-v0", overrides=SMALL + ["env.horizon=3"])
    ends = {"terminated": 0, "truncated": 0}
    for ep in range(60):
        env.reset(seed=ep)
        for t in range(10):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            assert not (term and trunc)
            if term or trunc:
                ends["terminated" if term else "truncated"] += 1
                assert t < 3
                break
    assert ends["terminated"] > 0 and ends["truncated"] > 0


def test_world_env_covers_many_users_and_ends_truncated():
    env = make("recworld/World-v0", overrides=SMALL + ["duration_days=0.25"])
    env.reset(seed=0)
    users, steps = set(), 0
    while True:
        _, _, term, trunc, info = env.step(env.action_space.sample())
        users.add(info["user_id"])
        steps += 1
        assert not term
        if trunc:
            break
    assert len(users) > 5 and steps > 10


@pytest.mark.parametrize("reward", ["click", "watch_minutes", "rating"])
def test_reward_kinds(reward):
    env = make("recworld/Session-v0", overrides=SMALL + [f"env.reward={reward}"])
    env.reset(seed=0)
    seen = []
    for k in range(400):
        _, r, term, trunc, info = env.step(env.action_space.sample())
        if info["clicks"]:
            seen.append((r, info["clicks"], info["watch_minutes"]))
        if term or trunc:
            env.reset(seed=k + 1)
    assert seen
    for r, clicks, minutes in seen:
        if reward == "click":
            assert r == clicks
        elif reward == "watch_minutes":
            assert r == pytest.approx(minutes)
        else:
            assert clicks <= r <= 5 * clicks


def test_duplicate_rule():
    assert slate_from_action([3, 3, 3], 5).tolist() == [3, 0, 1]
    assert slate_from_action([0, 1, 0, 2], 4).tolist() == [0, 1, 2, 3]
    assert slate_from_action([4, 2], 5).tolist() == [4, 2]


@pytest.mark.parametrize("vector", ["sync", "async"])
def test_vector_envs(vector):
    venv = gym.make_vec("recworld/Session-v0", num_envs=2, vectorization_mode=vector, scenario=RL, overrides=SMALL)
    obs, _ = venv.reset(seed=5)
    assert obs["candidates"].shape[0] == 2
    for _ in range(20):
        obs, r, term, trunc, info = venv.step(venv.action_space.sample())
        assert r.shape == (2,)
    venv.close()


def test_env_config_is_validated():
    with pytest.raises(recworld.simulator.ScenarioError, match="env.slate_size"):
        make("recworld/Session-v0", overrides=SMALL + ["env.slate_size=30"])
    with pytest.raises(recworld.simulator.ScenarioError, match="env.reward"):
        make("recworld/Session-v0", overrides=SMALL + ["env.reward=money"])
