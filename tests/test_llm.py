"""The LLM service against a real HTTP server on loopback (litellm does the talking)."""

import json
import time

import pytest
from pydantic import BaseModel

pytest.importorskip("litellm")

from recworld.simulator.testing.fakellm import FakeLLMServer, Reply  # noqa: E402
from recworld.simulator.llm.service import LLMRequest, LLMService  # noqa: E402


class Choice(BaseModel):
    watch: list[int]
    reason: str


GOOD = '{"watch": [1, 3], "reason": "I like comedies"}'
MSG = [{"role": "user", "content": "Pick from the slate."}]


def service(srv, tmp_path, **cfg):
    base = {"model": "openai/fake", "api_base": srv.url, "cache_path": str(tmp_path / "cache.sqlite"),
            "backoff_s": 0.01, "timeout_s": 2}
    return LLMService(base | cfg, log_path=tmp_path / "llm_calls.jsonl")


def records(tmp_path):
    return [json.loads(line) for line in (tmp_path / "llm_calls.jsonl").read_text().splitlines()]


def test_structured_answer_tokens_and_log(tmp_path):
    with FakeLLMServer(lambda b, n: Reply(GOOD, prompt_tokens=42, completion_tokens=7)) as srv:
        svc = service(srv, tmp_path)
        r = svc.complete(MSG, Choice, seed=1, user=5)
        svc.close()
    assert r.ok and r.parsed == Choice(watch=[1, 3], reason="I like comedies")
    assert (r.calls, r.prompt_tokens, r.completion_tokens) == (1, 42, 7)
    body = srv.requests[0]
    assert body["response_format"]["type"] == "json_schema" and body["seed"] == 1
    rec = records(tmp_path)[0]
    assert rec["user"] == 5 and rec["prompt_tokens"] == 42 and rec["cache_hit"] is False and len(rec["prompt_hash"]) == 16


def test_cache_makes_a_rerun_free_and_identical(tmp_path):
    with FakeLLMServer(lambda b, n: Reply(GOOD if n == 0 else '{"watch": [], "reason": "other"}')) as srv:
        first = service(srv, tmp_path).complete(MSG, Choice, seed=1)
        svc = service(srv, tmp_path)
        again = svc.complete(MSG, Choice, seed=1)
        other_seed = svc.complete(MSG, Choice, seed=2)
    assert again.cache_hit and again.calls == 0 and again.parsed == first.parsed
    assert not other_seed.cache_hit and other_seed.parsed.reason == "other"
    assert len(srv.requests) == 2 and svc.metrics()["cache_hits"] == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_on_rate_limits_and_server_errors(status, tmp_path):
    with FakeLLMServer(lambda b, n: Reply(GOOD) if n >= 2 else Reply(status=status)) as srv:
        r = service(srv, tmp_path, cache=False).complete(MSG, Choice)
    assert r.ok and r.calls == 3 and not r.fallback


def test_timeouts_are_retried(tmp_path):
    with FakeLLMServer(lambda b, n: Reply(GOOD, delay=3.0 if n == 0 else 0.0)) as srv:
        r = service(srv, tmp_path, cache=False, timeout_s=0.5).complete(MSG, Choice)
    assert r.ok and r.calls == 2


def test_non_retryable_errors_fall_back_at_once(tmp_path):
    with FakeLLMServer(lambda b, n: Reply(status=400, error_message="bad request")) as srv:
        r = service(srv, tmp_path, cache=False).complete(MSG, Choice)
    assert not r.ok and r.fallback and r.calls == 1 and "BadRequest" in r.error


def test_malformed_answer_gets_one_repair_then_falls_back(tmp_path):
    with FakeLLMServer(lambda b, n: Reply("not json at all" if n == 0 else GOOD)) as srv:
        r = service(srv, tmp_path, cache=False).complete(MSG, Choice)
    assert r.ok and r.calls == 2 and r.parsed.watch == [1, 3]
    assert "not valid" in srv.requests[1]["messages"][-1]["content"]
    with FakeLLMServer(lambda b, n: Reply('{"watch": "two"}')) as srv:
        svc = service(srv, tmp_path, cache=False)
        r = svc.complete(MSG, Choice)
    assert not r.ok and r.fallback and r.calls == 2 and "watch" in r.error
    assert svc.metrics()["fallbacks"] == 1


def test_broken_body_and_dead_server_end_in_fallback_not_a_crash(tmp_path):
    with FakeLLMServer(lambda b, n: Reply(raw="{this is not json")) as srv:
        r = service(srv, tmp_path, cache=False, retries=1).complete(MSG, Choice)
    assert r.fallback and r.error
    srv = FakeLLMServer().start()
    url = srv.url
    srv.stop()                                   # the server dies
    svc = LLMService({"model": "openai/fake", "api_base": url, "cache": False, "retries": 2, "backoff_s": 0.01,
                      "timeout_s": 2})
    r = svc.complete(MSG, Choice)
    assert r.fallback and r.calls == 3 and "Connection" in r.error


def test_concurrency_limit_and_order(tmp_path):
    import random

    delays = random.Random(0)
    with FakeLLMServer(lambda b, n: Reply(json.dumps({"watch": [int(b["messages"][0]["content"])], "reason": "x"}),
                                          delay=delays.uniform(0.05, 0.25))) as srv:
        svc = service(srv, tmp_path, cache=False, max_concurrency=4)
        reqs = [LLMRequest([{"role": "user", "content": str(i)}], Choice) for i in range(16)]
        t0 = time.perf_counter()
        out = svc.complete_many(reqs)
        elapsed = time.perf_counter() - t0
    assert [r.parsed.watch[0] for r in out] == list(range(16))      # request order, whatever the answer order
    assert srv.max_seen_in_flight <= 4
    assert elapsed < 16 * 0.25 / 2                                    # it really ran in parallel


def test_api_key_never_leaks(tmp_path, monkeypatch):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("RECWORLD_TEST_KEY", secret)
    with FakeLLMServer(lambda b, n: Reply(status=401, error_message=f"invalid key {secret}")) as srv:
        svc = service(srv, tmp_path, cache=False, api_key_env="RECWORLD_TEST_KEY")
        r = svc.complete(MSG, Choice)
        svc.close()
    assert r.fallback and secret not in r.error and "***" in r.error
    assert secret not in (tmp_path / "llm_calls.jsonl").read_text()


def test_missing_key_variable_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="NO_SUCH_VAR"):
        LLMService({"api_key_env": "NO_SUCH_VAR", "cache": False})


def test_local_prices_give_a_cost(tmp_path):
    with FakeLLMServer(lambda b, n: Reply(GOOD, prompt_tokens=1000, completion_tokens=500)) as srv:
        r = service(srv, tmp_path, cache=False, input_cost_per_token=1e-6, output_cost_per_token=2e-6).complete(MSG, Choice)
    assert r.cost_usd == pytest.approx(1000 * 1e-6 + 500 * 2e-6)
