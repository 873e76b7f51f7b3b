"""llm_calls.jsonl as an audit trail: each call's prompt and answer, the API key scrubbed."""

import json

import pytest
from pydantic import BaseModel

pytest.importorskip("litellm")

from recworld.simulator.testing.fakellm import FakeLLMServer, Reply  # noqa: E402
from recworld.simulator.llm.service import LLMService  # noqa: E402

SECRET = "sk-audit-0123456789abcdef"
GOOD = '{"watch": [2], "reason": "funny"}'


class Choice(BaseModel):
    watch: list[int]
    reason: str


def service(srv, tmp_path, **cfg):
    base = {"model": "openai/fake", "api_base": srv.url, "cache": False, "backoff_s": 0.01, "timeout_s": 3,
            "retries": 0}
    return LLMService(base | cfg, log_path=tmp_path / "llm_calls.jsonl")


def records(tmp_path):
    return [json.loads(line) for line in (tmp_path / "llm_calls.jsonl").read_text().splitlines()]


EXISTING = {"time", "prompt_hash", "model", "ok", "fallback", "cache_hit", "calls", "prompt_tokens",
            "completion_tokens", "cost_usd", "latency_s", "error"}


def test_a_record_carries_the_messages_and_the_answer(tmp_path):
    msgs = [{"role": "system", "content": "You are a viewer."}, {"role": "user", "content": "Pick one."}]
    with FakeLLMServer(lambda b, n: Reply(GOOD)) as srv:
        svc = service(srv, tmp_path)
        svc.complete(msgs, Choice, seed=3, user=7, purpose="page")
        svc.complete(msgs[1:], user=8)
        svc.close()
    structured, plain = records(tmp_path)
    assert EXISTING <= set(structured) and structured["user"] == 7 and structured["purpose"] == "page"
    assert len(structured["prompt_hash"]) == 16 and structured["fallback_reason"] is None
    assert structured["messages"] == msgs and structured["answer"] == GOOD
    assert structured["parsed"] == {"watch": [2], "reason": "funny"}
    assert plain["messages"] == msgs[1:] and plain["answer"] == GOOD and "parsed" not in plain


def test_a_repaired_answer_keeps_the_first_one(tmp_path):
    with FakeLLMServer(lambda b, n: Reply("no idea" if n == 0 else GOOD)) as srv:
        svc = service(srv, tmp_path)
        svc.complete([{"role": "user", "content": "Pick."}], Choice)
        svc.close()
    (rec,) = records(tmp_path)
    assert rec["invalid_answer"] == "no idea" and rec["answer"] == GOOD and rec["calls"] == 2


def test_audit_off_keeps_the_hash_only(tmp_path):
    with FakeLLMServer(lambda b, n: Reply(GOOD)) as srv:
        svc = service(srv, tmp_path, audit=False)
        svc.complete([{"role": "user", "content": "Pick."}], Choice, user=1)
        svc.close()
    (rec,) = records(tmp_path)
    assert EXISTING <= set(rec) and rec["user"] == 1
    assert not {"messages", "answer", "parsed", "invalid_answer"} & set(rec)


def test_the_key_is_scrubbed_from_messages_answers_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("RECWORLD_AUDIT_KEY", SECRET)

    def responder(body, n):
        if n == 0:                                            # an answer that echoes the key
            return Reply(f"my key is {SECRET}")
        return Reply(status=401, error_message=f"invalid api key {SECRET}")
    with FakeLLMServer(responder) as srv:
        svc = service(srv, tmp_path, api_key_env="RECWORLD_AUDIT_KEY")
        ok = svc.complete([{"role": "user", "content": f"the key {SECRET} leaked into a prompt"}], note=SECRET)
        bad = svc.complete([{"role": "user", "content": "Pick."}], Choice)
        svc.close()
    text = (tmp_path / "llm_calls.jsonl").read_text()
    assert SECRET not in text and bad.fallback and SECRET not in bad.error
    first, second = records(tmp_path)
    assert first["messages"][0]["content"] == "the key *** leaked into a prompt"
    assert first["answer"] == "my key is ***" and first["note"] == "***" and ok.ok
    assert "***" in second["error"] and second["fallback_reason"] == "http_4xx" and second["parsed"] is None
