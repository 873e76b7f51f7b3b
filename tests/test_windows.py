"""Synchronous windows (``world.sync_minutes``): lanes per user, barriers, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from recworld.simulator.build import build_world
from recworld.simulator.engine.events import read_events
from recworld.simulator.llm.service import LLMService
from recworld.simulator.scenario import load_scenario
from recworld.simulator.testing.fakellm import FakeLLMServer
from recworld.simulator.testing.scripted import answer

W = 60.0


def _parametric(sync: float, **extra):
    spec = {"name": "windows", "seed": 3, "duration_days": 1.0,
            "data": {"source": "synthetic", "n_items": 300, "n_genres": 8},
            "population": {"size": 120, "activity": {"median_sessions_per_day": 4.0}},
            "social": {"graph": "small_world", "degree": 4},
            "recommender": {"name": "popularity"},
            "world": {"sync_minutes": sync},
            "output": {"plots": False}}
    spec.update(extra)
    return load_scenario(spec)


def _run(scn, folder, llm=None):
    world = build_world(scn, folder, llm=llm)
    world.run(progress=False)
    world.close()
    return world, read_events(folder)


def test_strict_is_the_default_and_zero_is_strict(tmp_path):
    _, a = _run(_parametric(0.0), tmp_path / "a")
    spec = _parametric(0.0).model_dump(mode="json")
    del spec["world"]
    _, b = _run(load_scenario(spec), tmp_path / "b")
    assert a.equals(b)


def test_windowed_parametric_world_is_deterministic_time_ordered_and_coupled_at_barriers(tmp_path):
    world, a = _run(_parametric(W), tmp_path / "a")
    _, b = _run(_parametric(W), tmp_path / "b")
    assert a.equals(b)
    assert a["time"].is_monotonic_increasing
    assert world.env.now == pytest.approx(1440.0)
    _, strict = _run(_parametric(0.0), tmp_path / "s")
    assert not a.equals(strict)             # windows change when users affect each other
    # a post reaches followers at the barrier after it was written, never inside its window
    posts = a[a.kind == "post"].set_index("post_id")["time"]
    reads = a[a.kind == "read_post"]
    assert len(reads) > 0
    written = posts.loc[reads["post_id"].to_numpy()].to_numpy()
    assert np.all(reads["time"].to_numpy() >= (np.floor(written / W) + 1) * W)
    # the partner of a chat hears of mentioned items at the barrier, stamped with the chat's time
    assert set(a.kind) >= {"session_start", "slate", "watch", "rate"}


class _Recording:
    """Wraps a recommender: logs when it is asked and when it learns."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def recommend(self, request):
        self.calls.append(("recommend", request.time))
        return self.inner.recommend(request)

    def update(self, fb):
        self.calls.append(("update", fb.time))
        self.inner.update(fb)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_recommender_learns_only_at_barriers_in_time_order(tmp_path):
    scn = _parametric(W, recommender={"name": "popularity"})
    world = build_world(scn, tmp_path / "r")
    rec = world.recommender = _Recording(world.recommender)
    world.run(progress=False)
    world.close()
    updates = [t for k, t in rec.calls if k == "update"]
    assert len(updates) > 10
    # between two requests, the updates applied belong to earlier windows and come in time order
    learned_until = 0.0
    batch: list[float] = []
    for kind, t in rec.calls:
        if kind == "update":
            batch.append(t)
            continue
        if batch:
            assert batch == sorted(batch)
            learned_until = max(batch)
            batch = []
        assert learned_until < np.floor(t / W) * W + 1e-9      # nothing from the request's own window


def _llm_scenario(sync: float):
    return load_scenario({
        "name": "windows-llm", "seed": 5, "duration_days": 0.25,
        "data": {"source": "synthetic", "n_items": 200, "n_genres": 8},
        "population": {"size": 24, "activity": {"median_sessions_per_day": 12.0},
                       "brain": {"name": "llm", "max_watch_per_page": 2}},
        "social": {"graph": "small_world", "degree": 4},
        "recommender": {"name": "popularity"},
        "session": {"page_size": 5, "max_pages": 3, "think_minutes": 1.0},
        "world": {"sync_minutes": sync},
        "output": {"plots": False},
    })


def _llm_run(folder, sync: float, jitter_seed: int, capacity: int = 8):
    rng = np.random.default_rng(jitter_seed)
    delays = rng.uniform(0.0, 0.05, size=100_000)

    def jittery(body, n):              # answers come back in a different order in every run
        r = answer(body, n)
        r.delay = float(delays[n % len(delays)])
        return r

    with FakeLLMServer(jittery, max_in_flight=capacity) as srv:
        svc = LLMService({"model": "openai/fake", "api_base": srv.url, "cache": False, "max_concurrency": capacity,
                          "timeout_s": 30})
        try:
            world, ev = _run(_llm_scenario(sync), folder, llm=svc)
        finally:
            svc.close()
    return world, ev, srv


@pytest.mark.slow
def test_windowed_llm_world_is_deterministic_whatever_order_answers_come_in(tmp_path):
    w1, a, srv = _llm_run(tmp_path / "a", W, jitter_seed=1)
    _, b, _ = _llm_run(tmp_path / "b", W, jitter_seed=2)
    assert a.equals(b)
    assert a["time"].is_monotonic_increasing
    stats = w1.batcher.stats()
    assert stats["requests"] > 50 and stats["windows"] == 6
    # the lanes' calls were in flight together, not one at a time
    assert srv.max_seen_in_flight >= 4 and stats["mean_in_flight"] > 1.5
    assert max(chain for _, chain in w1.batcher.window_log) >= 2


def test_gym_envs_keep_strict_time():
    import gymnasium as gym

    import recworld  # noqa: F401 - registers the envs

    env = gym.make("recworld/World-v0", scenario={
        "name": "w", "seed": 1, "duration_days": 0.1, "data": {"source": "synthetic", "n_items": 100},
        "population": {"size": 10}, "world": {"sync_minutes": 60}})
    obs, _ = env.reset(seed=0)
    obs, reward, term, trunc, _ = env.step(env.action_space.sample())
    assert env.unwrapped.world._lanes is None
    env.close()
