"""A dead endpoint fails fast: preflight, the circuit breaker, fallback reasons in the metrics."""

import time

import pytest
from pydantic import BaseModel

pytest.importorskip("litellm")

from recworld.simulator.testing.fakellm import FakeLLMServer, Reply  # noqa: E402
from recworld.simulator.llm.service import CircuitBreaker, LLMRequest, LLMService, LLMUnavailableError  # noqa: E402

GOOD = '{"watch": [1], "reason": "ok"}'
SECRET = "sk-breaker-0123456789abcdef"


class Choice(BaseModel):
    watch: list[int]
    reason: str


def msg(i=0):
    return [{"role": "user", "content": f"Pick {i}."}]


def service(url, **cfg):
    base = {"model": "openai/fake", "api_base": url, "cache": False, "backoff_s": 0.01, "timeout_s": 3,
            "retries": 0}
    return LLMService(base | cfg)


def closed_port_url() -> str:
    srv = FakeLLMServer().start()
    url = srv.url
    srv.stop()
    return url


# ---------------------------------------------------------------- preflight


def test_preflight_passes_on_a_live_endpoint_without_touching_cache_or_totals(tmp_path):
    with FakeLLMServer(lambda b, n: Reply("OK")) as srv:
        svc = service(srv.url, cache=True, cache_path=str(tmp_path / "c.sqlite"))
        svc.preflight(timeout_s=5)
        m = svc.metrics()
        svc.close()
    assert len(srv.requests) == 1 and srv.requests[0]["max_tokens"] <= 4
    assert m["requests"] == 0 and m["calls"] == 0


def test_preflight_names_model_endpoint_and_error_on_a_closed_port():
    url = closed_port_url()
    svc = service(url, retries=5)
    t0 = time.perf_counter()
    with pytest.raises(LLMUnavailableError, match="unreachable") as err:
        svc.preflight(timeout_s=3)
    assert time.perf_counter() - t0 < 3
    assert "openai/fake" in str(err.value) and url in str(err.value) and "Connection" in str(err.value)
    assert isinstance(err.value, RuntimeError)


def test_preflight_on_a_malformed_api_base_and_an_unknown_model():
    with pytest.raises(LLMUnavailableError, match="api_base is not an http"):
        service("localhost:8000/v1").preflight(timeout_s=2)
    with pytest.raises(LLMUnavailableError, match="no-such-provider-model"):   # litellm knows no such model
        LLMService({"model": "no-such-provider-model", "cache": False}).preflight(timeout_s=2)
    with FakeLLMServer(lambda b, n: Reply(status=404, error_message="model 'nope' not found")) as srv:
        with pytest.raises(LLMUnavailableError, match="not found") as err:
            service(srv.url, model="openai/nope").preflight(timeout_s=2)
    assert "openai/nope" in str(err.value) and srv.url in str(err.value)


def test_preflight_gives_up_on_a_server_that_does_not_answer():
    with FakeLLMServer(lambda b, n: Reply(GOOD, delay=6)) as srv:
        t0 = time.perf_counter()
        with pytest.raises(LLMUnavailableError, match="timeout"):
            service(srv.url, timeout_s=120).preflight(timeout_s=1)
        assert time.perf_counter() - t0 < 4


def test_preflight_errors_are_scrubbed(monkeypatch):
    monkeypatch.setenv("RECWORLD_BREAKER_KEY", SECRET)
    with FakeLLMServer(lambda b, n: Reply(status=401, error_message=f"bad key {SECRET}")) as srv:
        with pytest.raises(LLMUnavailableError) as err:
            service(srv.url, api_key_env="RECWORLD_BREAKER_KEY").preflight(timeout_s=2)
    assert SECRET not in str(err.value) and "***" in str(err.value)


# ---------------------------------------------------------------- circuit breaker


def test_the_circuit_opens_after_n_failures_then_lets_one_probe_through():
    state = {"up": False}
    with FakeLLMServer(lambda b, n: Reply(GOOD) if state["up"] else Reply(status=503)) as srv:
        svc = service(srv.url, breaker_failures=3, breaker_cooldown_s=0.5)
        out = [svc.complete(msg(i), Choice) for i in range(6)]
        assert len(srv.requests) == 3                                    # the last three never left
        assert [r.fallback_reason for r in out] == ["http_5xx"] * 3 + ["circuit_open"] * 3
        assert all(r.calls == 0 and r.error.startswith("circuit open:") and not r.cache_hit for r in out[3:])
        time.sleep(0.6)
        probe = svc.complete(msg(), Choice)                              # still down: the probe fails
        assert probe.calls == 1 and probe.fallback_reason == "http_5xx"
        assert svc.complete(msg(), Choice).fallback_reason == "circuit_open"   # open for another cool-down
        state["up"] = True
        time.sleep(0.6)
        back = [svc.complete(msg(i), Choice) for i in range(3)]          # the probe succeeds: closed
    assert all(r.ok and r.calls == 1 for r in back)
    m = svc.metrics()
    assert m["requests"] == 11 and m["fallbacks"] == 8 and m["circuit_open"] == 4
    assert m["fallback_reasons"] == {"circuit_open": 4, "http_5xx": 4}
    assert m["fallback_rate"] == pytest.approx(8 / 11, abs=1e-6)


def test_a_dead_endpoint_fails_fast():
    svc = service(closed_port_url(), retries=3, breaker_failures=4, breaker_cooldown_s=60)
    t0 = time.perf_counter()
    out = svc.complete_many([LLMRequest(msg(i), Choice) for i in range(40)])
    elapsed = time.perf_counter() - t0
    m, conc = svc.metrics(), svc.config.max_concurrency
    assert all(r.fallback for r in out) and elapsed < 10
    # only requests that started before the circuit opened made calls (at most 4 tries each)
    assert m["calls"] <= (conc + 4) * 4 and m["fallback_reasons"]["circuit_open"] >= 40 - conc - 4
    assert set(m["fallback_reasons"]) <= {"unreachable", "circuit_open"} and m["fallback_rate"] == 1.0


def test_a_flaky_endpoint_does_not_open_the_circuit():
    """Failures that a retry cures are not failed calls: every other try fails, nothing falls back."""
    with FakeLLMServer(lambda b, n: Reply(status=503) if n % 2 == 0 else Reply(GOOD)) as srv:
        svc = service(srv.url, retries=3, breaker_failures=2)
        out = [svc.complete(msg(i), Choice) for i in range(12)]
    assert all(r.ok and r.calls == 2 for r in out) and not svc.breaker.is_open
    assert svc.metrics()["fallback_reasons"] == {} and svc.metrics()["fallback_rate"] == 0.0


def test_cached_answers_are_served_while_the_circuit_is_open(tmp_path):
    state = {"up": True}
    with FakeLLMServer(lambda b, n: Reply(GOOD) if state["up"] else Reply(status=500)) as srv:
        svc = service(srv.url, cache=True, cache_path=str(tmp_path / "c.sqlite"), breaker_failures=2,
                      breaker_cooldown_s=60)
        cached = svc.complete(msg(99), Choice)
        state["up"] = False
        for i in range(3):
            svc.complete(msg(i), Choice)
        assert svc.breaker.is_open
        again = svc.complete(msg(99), Choice)
        svc.close()
    assert cached.ok and again.ok and again.cache_hit and again.parsed == cached.parsed


def test_fallback_reasons_by_kind():
    def responder(body, n):
        kind = body["messages"][0]["content"]
        return {"slow": Reply(GOOD, delay=2), "429": Reply(status=429), "400": Reply(status=400),
                "prose": Reply("prose, not JSON"), "500": Reply(status=500)}.get(kind, Reply(GOOD))
    with FakeLLMServer(responder) as srv:
        svc = service(srv.url, timeout_s=0.5, breaker_failures=100)
        kinds = ["slow", "429", "400", "prose", "500", "fine"]
        out = {k: svc.complete([{"role": "user", "content": k}], Choice) for k in kinds}
    svc2 = service(closed_port_url())
    dead = svc2.complete(msg(), Choice)
    assert {k: r.fallback_reason for k, r in out.items()} == {
        "slow": "timeout", "429": "rate_limited", "400": "http_4xx", "prose": "invalid_answer", "500": "http_5xx",
        "fine": None}
    assert dead.fallback_reason == "unreachable"
    m = svc.metrics()
    assert m["requests"] == 6 and m["fallbacks"] == 5 and m["fallback_rate"] == pytest.approx(5 / 6, abs=1e-6)
    assert m["fallback_reasons"] == {"timeout": 1, "rate_limited": 1, "http_4xx": 1, "invalid_answer": 1,
                                     "http_5xx": 1}
    assert m["circuit_open"] == 0


def test_the_breaker_lets_exactly_one_probe_through():
    now = {"t": 0.0}
    b = CircuitBreaker(failures=2, cooldown_s=10, clock=lambda: now["t"])
    assert b.allow()[0]
    b.failure("e1")
    assert b.allow()[0] and not b.is_open
    b.failure("e2")
    assert b.is_open and not b.allow()[0] and "2 consecutive" in b.allow()[2]
    now["t"] = 10.0
    assert b.allow()[:2] == (True, True)                       # the probe
    assert not b.allow()[0] and "probe" in b.allow()[2]          # everyone else waits for it
    b.release_probe()                                            # cancelled: the next request probes
    assert b.allow()[:2] == (True, True)
    b.success()
    assert not b.is_open and b.allow() == (True, False, "") and b.consecutive == 0
