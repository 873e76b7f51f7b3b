"""The embedded llama.cpp server with the packaged model, for real (the 'local' extra)."""

import pytest
from pydantic import BaseModel

pytest.importorskip("xllamacpp")
pytest.importorskip("litellm")

from recworld.simulator.llm.service import LLMService  # noqa: E402
from recworld.simulator.llm.embedded import EmbeddedLLM  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.local_llm]


class Pick(BaseModel):
    watch: list[int]


@pytest.fixture(scope="module")
def llm():
    with EmbeddedLLM(parallel=2) as server:
        yield server


def test_serves_an_openai_compatible_answer_through_the_llm_service(llm, tmp_path):
    svc = LLMService({"model": llm.model, "api_base": llm.api_base, "cache": False, "max_tokens": 24,
                      "temperature": 0.0, "timeout_s": 120}, log_path=tmp_path / "llm_calls.jsonl")
    r = svc.complete([{"role": "user", "content": "Say hello in one word."}], seed=1)
    svc.close()
    assert r.calls == 1 and r.error is None and r.text and r.completion_tokens > 0
    assert (tmp_path / "llm_calls.jsonl").read_text().count("\n") == 1


def test_schema_requests_are_constrained_or_fall_back(llm):
    """With a schema the server constrains decoding; a tiny model may still run out of tokens
    inside the JSON, which must end in a logged fallback, never an exception."""
    svc = LLMService({"model": llm.model, "api_base": llm.api_base, "cache": False, "max_tokens": 48,
                      "temperature": 0.0, "timeout_s": 120})
    r = svc.complete([{"role": "user", "content": "Items: 0 comedy, 1 horror. Which do you watch? JSON."}], Pick, seed=1)
    assert r.calls >= 1 and (r.ok and isinstance(r.parsed, Pick) or r.fallback)


def test_stops_and_frees_its_port():
    server = EmbeddedLLM(parallel=1).start()
    port = server.port
    server.stop()
    assert server.port is None
    import socket

    with socket.socket() as s:               # nothing listens there any more
        assert s.connect_ex(("127.0.0.1", port)) != 0
    with socket.socket() as s:               # and a new server could listen on it at once
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (closed connections may sit in TIME_WAIT)
        s.bind(("127.0.0.1", port))
    with pytest.raises(RuntimeError, match="not running"):
        server.api_base
