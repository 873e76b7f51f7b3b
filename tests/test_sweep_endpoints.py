"""Several LLM servers: ``llm.api_base`` as a list spreads the calls over them with litellm's
Router, and ``metrics.json`` counts the answers per server."""

import json

import pytest

pytest.importorskip("litellm")

from recworld.simulator.llm.service import LLMService, LLMUnavailableError  # noqa: E402
from recworld.simulator.llm.settings import LLMSettings  # noqa: E402
from recworld.simulator.scenario import ScenarioError, load_scenario  # noqa: E402
from recworld.simulator.testing.fakellm import FakeLLMServer, Reply  # noqa: E402


def settings(urls, **kw):
    return {"model": "openai/fake", "api_base": urls, "cache": False, "backoff_s": 0.01, "timeout_s": 5,
            "retries": 1, **kw}


def test_api_base_takes_a_list_of_servers():
    assert LLMSettings(api_base=["http://a:1/v1"]).api_base == "http://a:1/v1"         # one is just that one
    assert LLMSettings(api_base=["http://a:1/v1", "http://b:1/v1"]).api_base == ["http://a:1/v1", "http://b:1/v1"]
    for bad, what in (([], "at least one"), (["http://a:1/v1", "http://a:1/v1"], "repeat")):
        with pytest.raises(ScenarioError, match=what):
            load_scenario({"llm": {"api_base": bad}})


def test_calls_are_spread_over_the_servers_and_counted():
    with FakeLLMServer() as a, FakeLLMServer() as b:
        svc = LLMService(settings([a.url, b.url]))
        try:
            svc.preflight()
            for i in range(24):
                assert svc.complete([{"role": "user", "content": f"hello {i}"}]).text
            m = svc.metrics()
        finally:
            svc.close()
    served = {a.url: len(a.requests) - 1, b.url: len(b.requests) - 1}          # less each one's preflight
    assert m["endpoints"] == served and sum(served.values()) == m["calls"] == 24
    assert min(served.values()) > 0


def test_a_dead_server_is_named_and_the_others_serve():
    with FakeLLMServer() as a:
        dead = FakeLLMServer().start()
        dead.stop()
        svc = LLMService(settings([a.url, dead.url]))
        try:
            svc.preflight()                                   # one answers: enough, the dead one is logged
        finally:
            svc.close()
    svc = LLMService(settings([dead.url, "http://127.0.0.1:9/v1"]))
    try:
        with pytest.raises(LLMUnavailableError, match="every server"):
            svc.preflight(timeout_s=3)
    finally:
        svc.close()


def test_a_world_run_over_two_servers_counts_answers_per_server(tmp_path, tiny_ml):
    from recworld.simulator import run_scenario
    from recworld.simulator.testing.scripted import answer

    def failing_half(body, n):                                 # one server answers 503 now and then
        return Reply(status=503) if n % 7 == 3 else answer(body, n)

    with FakeLLMServer(answer) as a, FakeLLMServer(failing_half) as b:
        scn = {"name": "two-servers", "seed": 3, "duration_days": 1,
               "data": {"source": "movielens", "path": str(tiny_ml), "min_ratings": 5},
               "population": {"size": 6, "activity": {"median_sessions_per_day": 5}, "brain": {"name": "llm"}},
               "social": {"graph": "small_world", "degree": 4}, "recommender": {"name": "popularity"},
               "session": {"page_size": 5}, "output": {"plots": False}, "llm": settings([a.url, b.url])}
        out = run_scenario(scn, tmp_path / "run", progress=False)
    llm = json.loads((out / "metrics.json").read_text())["llm"]
    refused = sum(1 for n in range(len(b.requests)) if n % 7 == 3)          # b's 503s, retried elsewhere or later
    # every answer is counted at the server that gave it (each server also answered one preflight)
    assert llm["endpoints"] == {a.url: len(a.requests) - 1, b.url: len(b.requests) - 1 - refused}
    assert min(llm["endpoints"].values()) > 0 and refused > 0
    assert llm["calls"] == sum(llm["endpoints"].values()) + refused and llm["fallbacks"] == 0
