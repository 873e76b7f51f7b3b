"""The plug-in conformance checkers: every registered plug-in passes, broken ones are named."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from pydantic import BaseModel

import recworld
from recworld.recommenders.baselines import PopularityRecommender, RandomRecommender
from recworld.simulator import registry
from recworld.simulator.protocols import Recommender, Slate
from recworld.simulator.testing.checks import PluginCheckError, check_brain, check_recommender

OFFLINE = ("random", "popularity", "slate_ts", "mf", "itemknn", "content", "linucb")
LLM_RECS = ("llm_ranker", "toolrec")


def test_public_names():
    assert recworld.check_recommender is check_recommender and recworld.check_brain is check_brain


def test_every_registered_plugin_is_covered_here():
    covered = set(OFFLINE) | set(LLM_RECS) | {"policy"}
    builtin = set(registry.BUILTIN["recommenders"])
    assert builtin <= covered, f"add a conformance test for {sorted(builtin - covered)}"
    assert set(registry.BUILTIN["brains"]) <= {"parametric", "llm", "shill"}     # shill: tests/test_sts_world.py


@pytest.mark.parametrize("name", OFFLINE)
def test_builtin_recommenders_pass(name):
    report = check_recommender(registry.load("recommenders", name))
    assert {"slate-distinct", "slate-excludes", "deterministic", "world-run"} <= set(report["rules"])
    assert report["events"] > 0


@pytest.fixture
def fake_llm(tmp_path):
    pytest.importorskip("litellm")
    from recworld.simulator.llm.service import LLMService
    from recworld.simulator.testing.fakellm import FakeLLMServer
    from recworld.simulator.testing.scripted import answer

    with FakeLLMServer(answer) as srv:
        svc = LLMService({"model": "openai/fake", "api_base": srv.url, "cache": False, "backoff_s": 0.01,
                          "timeout_s": 5, "retries": 0}, log_path=tmp_path / "calls.jsonl")
        try:
            yield svc
        finally:
            svc.close()


@pytest.mark.parametrize("name", LLM_RECS)
def test_llm_recommenders_pass_on_a_scripted_server(name, fake_llm):
    report = check_recommender(registry.load("recommenders", name), llm=fake_llm)
    assert report["events"] > 0


def test_brains_pass(fake_llm):
    assert "oracle" in check_brain(registry.load("brains", "parametric"))["rules"]
    assert check_brain(registry.load("brains", "llm"), llm=fake_llm)["events"] > 0


def test_llm_plugin_without_an_llm_is_named(fake_llm):
    with pytest.raises(PluginCheckError, match=r"\[needs-llm\]"):
        check_recommender(registry.load("recommenders", "llm_ranker"))


def test_policy_recommender_passes(tmp_path):
    pytest.importorskip("stable_baselines3")
    from recworld.simulator.studies.rl import train

    scenario = {"data": {"source": "synthetic", "n_items": 60, "n_genres": 4},
                "population": {"size": 20}, "env": {"candidates": 8, "slate_size": 4}}
    from recworld.simulator.gym.policies import save_policy

    model = train(scenario, steps=256, n_envs=1)
    model.save(tmp_path / "model.zip")
    save_policy(model, tmp_path, {"algo": "ppo", "env": {"candidates": 8, "slate_size": 4, "history": 5}})
    report = check_recommender(registry.load("recommenders", "policy"), params={"path": str(tmp_path / "model.zip")})
    assert report["events"] > 0


# ----------------------------------------------------------------------------- broken plug-ins


class Duplicates(PopularityRecommender):
    name = "duplicates"

    def recommend(self, request):
        s = super().recommend(request)
        return Slate(np.repeat(s.items[:1], 2), None) if len(s.items) else s


class IgnoresExclusion(PopularityRecommender):
    name = "ignores_exclusion"

    def recommend(self, request):
        return Slate(np.arange(request.k), None)


class GlobalRandom(RandomRecommender):
    name = "global_random"

    def item_scores(self, request, candidates):
        return np.random.random(len(candidates))          # the mistake: global random state


class LooseParams(PopularityRecommender):
    name = "loose_params"

    class Params(BaseModel):
        window_minutes: float = 60.0


class NotASubclass:
    name = "stranger"


class WrongReturn(Recommender):
    name = "wrong_return"

    def fit(self, interactions, catalog):
        self.catalog = catalog

    def recommend(self, request):
        return [1, 2, 3]


@pytest.mark.parametrize("cls,rule", [
    (Duplicates, "slate-distinct"),
    (IgnoresExclusion, "slate-excludes"),
    (GlobalRandom, "deterministic"),
    (LooseParams, "params-forbid-unknown"),
    (NotASubclass, "subclass"),
    (WrongReturn, "recommend-returns-slate"),
])
def test_broken_recommenders_are_rejected_with_the_rule_named(cls, rule):
    with pytest.raises(PluginCheckError) as e:
        check_recommender(cls)
    assert e.value.rule == rule and f"[{rule}]" in str(e.value) and repr(cls.name) in str(e.value)


def _parametric():
    return registry.load("brains", "parametric")


class BadPositions(_parametric()):
    name = "bad_positions"

    def choose_from_slate(self, state, items, page, now):
        choice = super().choose_from_slate(state, items, page, now)
        choice.watch = [len(items) + 3]
        return choice


class BadRating(_parametric()):
    name = "bad_rating"

    def consume(self, state, item, now):
        c = super().consume(state, item, now)
        c.rating = 7.0
        return c


class GlobalRandomBrain(_parametric()):
    name = "global_random_brain"
    _shared: ClassVar = np.random.default_rng()        # shared, unseeded: not the user's rng

    def consume(self, state, item, now):
        c = super().consume(state, item, now)
        c.minutes = float(self._shared.random())
        return c


@pytest.mark.parametrize("cls,rule", [(BadPositions, "page-positions"), (BadRating, "consume"),
                                      (GlobalRandomBrain, "deterministic")])
def test_broken_brains_are_rejected_with_the_rule_named(cls, rule):
    with pytest.raises(PluginCheckError) as e:
        check_brain(cls)
    assert e.value.rule == rule and f"[{rule}]" in str(e.value)


def test_registry_refuses_a_class_that_is_not_a_plugin():
    registry.register("recommenders", "stranger", NotASubclass)
    try:
        with pytest.raises(registry.PluginContractError, match="must be a subclass of recworld.Recommender"):
            registry.load("recommenders", "stranger")
    finally:
        registry.unregister("recommenders", "stranger")
