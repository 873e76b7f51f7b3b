"""The natively vectorised Session env: same dynamics as the single env, gymnasium 1.x vector API."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv

import recworld  # noqa: F401  (registers the environments)

ROOT = Path(__file__).resolve().parents[1]
RL = str(ROOT / "scenarios" / "rl_session.yaml")
SMALL = ["population.size=60", "data.n_items=300"]
CROWDED = ["population.size=60", "data.n_items=140", "env.candidates=100"]      # most candidate draws collide
ID = "recworld/Session-v0"


def native(n, **kw):
    kw.setdefault("overrides", SMALL)
    return gym.make_vec(ID, num_envs=n, vectorization_mode="vector_entry_point", scenario=RL, **kw)


def sync(n, mode=AutoresetMode.NEXT_STEP, **kw):
    kw.setdefault("overrides", SMALL)
    return gym.make_vec(ID, num_envs=n, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode},
                        scenario=RL, **kw)


def actions(n, steps, C=20, S=5, seed=0):
    """Random slates, some with duplicate or out-of-range positions (the duplicate rule applies)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        a = np.stack([rng.permutation(C)[:S] for _ in range(n)])
        if rng.random() < 0.2:
            a[:, 1] = a[:, 0]
        if rng.random() < 0.05:
            a[0, -1] = C + 3
        out.append(a)
    return out


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, np.ndarray) and a.dtype == object:
        return all(same(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def test_make_vec_gives_a_native_vector_env_with_batched_spaces():
    env = native(8)
    assert isinstance(env.unwrapped, VectorEnv) and type(env.unwrapped).__name__ == "SessionVectorEnv"
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    single = gym.make(ID, scenario=RL, overrides=SMALL)
    assert env.single_observation_space == single.observation_space
    assert env.single_action_space == single.action_space
    assert env.observation_space["candidates"].shape == (8, 20, single.observation_space["candidates"].shape[1])
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["user_id"].shape == (8,)
    for a in actions(8, 30):
        obs, r, term, trunc, info = env.step(a)
        assert env.observation_space.contains(obs)
        assert r.shape == term.shape == trunc.shape == (8,) and r.dtype == np.float64
        assert term.dtype == trunc.dtype == np.bool_ and not (term & trunc).any()
    env.close()


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("flatten", [False, True])
def test_per_env_streams_give_exactly_the_sync_vector_env_trajectories(mode, flatten):
    """Each sub-env is the single Session env with its own seed: observations, rewards, episode
    ends, users, clicks and final observations equal SyncVectorEnv's over the single env."""
    n = 5
    ours = native(n, rng="per_env", autoreset_mode=mode, flatten=flatten)
    theirs = sync(n, mode, flatten=flatten)
    o1, i1 = ours.reset(seed=7)
    o2, i2 = theirs.reset(seed=7)
    assert same(o1, o2) and same(i1["user_id"], i2["user_id"])
    ends = 0
    for a in actions(n, 150, seed=1):
        s1, s2 = ours.step(a), theirs.step(a)
        for x, y in zip(s1[:4], s2[:4]):
            assert same(x, y)
        i1, i2 = s1[4], s2[4]
        assert same(i1["user_id"], i2["user_id"])
        if "clicks" in i2:
            m = i2["_clicks"]
            assert same(i1["_clicks"], m) and same(i1["clicks"][m], i2["clicks"][m].astype(np.int64))
            assert np.array_equal(i1["watch_minutes"][m], i2["watch_minutes"][m])
        if mode == AutoresetMode.SAME_STEP and "final_obs" in i2:
            assert same(i1["_final_obs"], i2["_final_obs"]) and same(i1["final_obs"], i2["final_obs"])
        ends += int((s1[2] | s1[3]).sum())
    assert ends > 20


@pytest.mark.parametrize("flatten", [False, True])
def test_one_shared_stream_with_one_env_is_the_single_env(flatten):
    """rng='shared' with num_envs=1: the single env's trajectory for the same seed, step by step."""
    single = gym.make(ID, scenario=RL, overrides=SMALL, flatten=flatten).unwrapped
    vec = native(1, flatten=flatten)
    batch = (lambda o: {k: v[None] for k, v in o.items()}) if not flatten else (lambda o: o[None])
    o1, _ = single.reset(seed=11)
    o2, _ = vec.reset(seed=11)
    assert same(batch(o1), o2)
    episodes = 0
    for a in actions(1, 400, seed=2):
        o1, r1, t1, u1, info = single.step(a[0])
        o2, r2, t2, u2, vinfo = vec.step(a)
        assert same(batch(o1), o2) and (r1, t1, u1) == (r2[0], t2[0], u2[0])
        assert vinfo["clicks"][0] == info["clicks"] and vinfo["slate"][0].tolist() == info["slate"]
        assert [p for p in vinfo["clicked"][0].tolist() if p >= 0] == info["clicked"]
        if t1 or u1:
            episodes += 1
            o1, _ = single.reset()
            o2, r2, t2, u2, vinfo = vec.step(a)          # next-step autoreset
            assert same(batch(o1), o2) and r2[0] == 0 and not t2[0] and not u2[0]
    assert episodes > 50


def test_shared_stream_dynamics_match_the_single_env_in_distribution():
    """Many sub-envs on one stream: episode length and clicks per step as the single env's."""
    n, steps = 64, 120
    vec = native(n, overrides=SMALL + ["env.horizon=8"])
    vec.reset(seed=3)
    v_clicks, v_ends = 0, 0
    for a in actions(n, steps, seed=4):
        _, r, term, trunc, info = vec.step(a)
        v_clicks += info["clicks"][info["_clicks"]].sum()
        v_ends += int((term | trunc).sum())
    v_steps = n * steps - v_ends                    # autoreset steps are not steps of an episode
    single = sync(8, overrides=SMALL + ["env.horizon=8"])
    single.reset(seed=3)
    s_clicks = s_ends = s_steps = 0
    for a in actions(8, n * steps // 8, seed=5):
        _, _, term, trunc, info = single.step(a)
        if "clicks" in info:
            s_clicks += info["clicks"][info["_clicks"]].sum()
            s_steps += int(info["_clicks"].sum())
        s_ends += int((term | trunc).sum())
    v_rate, s_rate = v_clicks / v_steps, s_clicks / s_steps
    v_len, s_len = v_steps / v_ends, s_steps / s_ends
    assert abs(v_rate - s_rate) < 0.1 * s_rate + 0.02, (v_rate, s_rate)
    assert abs(v_len - s_len) < 0.15 * s_len, (v_len, s_len)


def test_seeding_reproduces_and_differs():
    def roll(seed, rng):
        env = native(6, rng=rng)
        out = [env.reset(seed=seed)[0]["candidates"]]
        for a in actions(6, 40):
            o, r, *_ = env.step(a)
            out += [o["candidates"], r]
        return out

    for rng in ("shared", "per_env"):
        a, b, c = roll(1, rng), roll(1, rng), roll(2, rng)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_disabled_autoreset_and_reset_mask():
    env = native(4, autoreset_mode=AutoresetMode.DISABLED)
    assert env.metadata["autoreset_mode"] == AutoresetMode.DISABLED
    env.reset(seed=0)
    for a in actions(4, 60):
        obs, _, term, trunc, info = env.step(a)
        done = term | trunc
        if done.any():
            before = {k: v.copy() for k, v in obs.items()}
            with pytest.raises(RuntimeError, match="reset_mask"):
                env.step(a)
            obs, info = env.reset(options={"reset_mask": done})
            assert info["_user_id"].tolist() == done.tolist()
            for k in obs:       # sub-envs left alone keep their observation
                assert np.array_equal(obs[k][~done], before[k][~done])
    with pytest.raises(ValueError, match="reset_mask"):
        env.reset(options={"reset_mask": np.zeros(4, dtype=bool)})


def test_reset_options_user_and_errors():
    env = native(3)
    _, info = env.reset(seed=0, options={"user": 5})
    assert len(set(info["user_id"].tolist())) == 1
    _, info = env.reset(seed=0, options={"user": [1, 2, 3]})
    assert len(set(info["user_id"].tolist())) == 3
    with pytest.raises(ValueError, match="user"):
        env.reset(options={"user": 10_000})
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="rng"):
        native(2, rng="global")


def test_a_brain_without_the_batch_model_is_refused():
    from recworld.agents.parametric import ParametricBrain

    class Changed(ParametricBrain):
        def consume(self, state, item, now):     # the batch model would no longer mirror it
            return super().consume(state, item, now)

    assert not Changed.batch_consistent(object.__new__(Changed))
    assert ParametricBrain.batch_consistent(object.__new__(ParametricBrain))


def test_sb3_adapter_trains_the_same_model_as_dummy_vec_env():
    """recworld train's native vector env: exactly the rollouts of SB3's DummyVecEnv (+ Monitor), so
    the same weights and the same episode statistics."""
    pytest.importorskip("stable_baselines3")
    import torch

    from recworld.simulator.studies.rl import train

    episodes = {}

    def run(vec_env):
        from stable_baselines3.common.callbacks import BaseCallback

        class Seen(BaseCallback):
            def _on_step(self):
                episodes.setdefault(vec_env, []).extend(
                    (i["episode"]["r"], i["episode"]["l"]) for i in self.locals["infos"] if "episode" in i)
                return True

        model = train(RL, steps=300, n_envs=3, seed=4, overrides=SMALL, vec_env=vec_env, callback=Seen())
        return {k: v.clone() for k, v in model.policy.state_dict().items()}

    threads = torch.get_num_threads()
    a, b = run("native"), run("dummy")
    assert torch.get_num_threads() == threads              # train restores torch's setting
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert episodes["native"] == episodes["dummy"] and len(episodes["native"]) > 50


def test_sb3_adapter_needs_same_step_autoreset():
    pytest.importorskip("stable_baselines3")
    from recworld.simulator.gym.sb3 import SB3VectorEnv

    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VectorEnv(native(2))


@pytest.mark.parametrize("rng", ["shared", "per_env"])
def test_many_colliding_candidate_draws_refill_as_one_by_one(rng):
    """With 100 candidates from 140 items nearly every draw collides, and some refills need a
    second round: the refill checked for many sub-envs at once gives the same candidates as
    refilling them one by one."""
    from recworld.simulator.gym.vector import SessionVectorEnv

    def roll(together):
        env = native(16, rng=rng, overrides=CROWDED)
        env.unwrapped.FILL_TOGETHER = 8 if together else 10**9
        out = [env.reset(seed=2)[0]["candidates"]]
        for a in actions(16, 40, C=100):
            o, r, *_ = env.step(a)
            out += [o["candidates"], r]
        return out

    assert SessionVectorEnv.FILL_TOGETHER == 8
    assert all(np.array_equal(x, y) for x, y in zip(roll(True), roll(False)))


def test_per_env_streams_match_sync_with_many_colliding_draws():
    n = 12
    ours, theirs = native(n, rng="per_env", overrides=CROWDED), sync(n, overrides=CROWDED)
    assert same(ours.reset(seed=3)[0], theirs.reset(seed=3)[0])
    for a in actions(n, 40, C=100, seed=6):
        s1, s2 = ours.step(a), theirs.step(a)
        assert all(same(x, y) for x, y in zip(s1[:4], s2[:4]))
