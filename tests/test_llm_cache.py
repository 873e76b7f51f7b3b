"""The response cache: only validated answers are kept; many writers and outside locks lose nothing."""

import logging
import multiprocessing
import sqlite3
import threading
import time

import pytest
from pydantic import BaseModel

from recworld.simulator.llm.service import ResponseCache, cache_key

GOOD = '{"watch": [1, 3], "reason": "I like comedies"}'
BAD = '{"watch": "two"}'
MSG = [{"role": "user", "content": "Pick from the slate."}]


class Choice(BaseModel):
    watch: list[int]
    reason: str


def rows(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


@pytest.fixture
def fake():
    pytest.importorskip("litellm")
    from recworld.simulator.testing.fakellm import FakeLLMServer, Reply

    return FakeLLMServer, Reply


def service(srv, tmp_path, **cfg):
    from recworld.simulator.llm.service import LLMService

    base = {"model": "openai/fake", "api_base": srv.url, "cache_path": str(tmp_path / "cache.sqlite"),
            "backoff_s": 0.01, "timeout_s": 3, "retries": 0}
    return LLMService(base | cfg)


# ---------------------------------------------------------------- only validated answers


def test_a_malformed_answer_is_not_cached_and_a_rerun_asks_again(fake, tmp_path):
    FakeLLMServer, Reply = fake
    answers = {"good": False}
    with FakeLLMServer(lambda b, n: Reply(GOOD if answers["good"] else BAD)) as srv:
        svc = service(srv, tmp_path)
        first = svc.complete(MSG, Choice, seed=1)
        svc.close()
        assert first.fallback and first.calls == 2 and rows(tmp_path / "cache.sqlite") == 0
        answers["good"] = True                            # the malformed answer was transient
        svc = service(srv, tmp_path)
        second = svc.complete(MSG, Choice, seed=1)
        third = svc.complete(MSG, Choice, seed=1)
        svc.close()
    assert second.ok and second.calls == 1 and not second.cache_hit
    assert third.ok and third.cache_hit and third.calls == 0 and third.parsed == second.parsed
    assert len(srv.requests) == 3 and rows(tmp_path / "cache.sqlite") == 1


def test_after_a_repair_only_the_valid_answer_is_cached(fake, tmp_path):
    FakeLLMServer, Reply = fake
    with FakeLLMServer(lambda b, n: Reply("not json" if n == 0 else GOOD)) as srv:
        svc = service(srv, tmp_path)
        r = svc.complete(MSG, Choice)
        svc.close()
    assert r.ok and r.calls == 2 and rows(tmp_path / "cache.sqlite") == 1


def test_answers_without_a_schema_are_cached(fake, tmp_path):
    FakeLLMServer, Reply = fake
    with FakeLLMServer(lambda b, n: Reply("just prose")) as srv:
        svc = service(srv, tmp_path)
        a, b = svc.complete(MSG), svc.complete(MSG)
        svc.close()
    assert a.text == b.text == "just prose" and b.cache_hit and len(srv.requests) == 1


def test_an_invalid_answer_already_in_the_cache_is_asked_again(fake, tmp_path):
    FakeLLMServer, Reply = fake
    with FakeLLMServer(lambda b, n: Reply(GOOD)) as srv:
        svc = service(srv, tmp_path)
        key = cache_key(svc.config.model, MSG, svc._params(Choice), 1)
        svc.cache.put(key, BAD, 1, 1)                    # as an older version would have cached it
        r = svc.complete(MSG, Choice, seed=1)
        again = svc.complete(MSG, Choice, seed=1)
        svc.close()
    assert r.ok and r.calls == 1 and again.cache_hit
    assert ResponseCache(tmp_path / "cache.sqlite").get(key)[0] == GOOD


# ---------------------------------------------------------------- contention


def _writer(path: str, worker: int, n: int, queue) -> None:
    cache = ResponseCache(path)
    for i in range(n):
        cache.put(f"w{worker}-{i}", f"answer {worker} {i}", i, worker)
    queue.put((worker, cache.write_errors))
    cache.close()


def test_several_processes_write_into_one_cache_and_lose_nothing(tmp_path):
    path, workers, n = str(tmp_path / "shared.sqlite"), 4, 300
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, w, n, queue)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * workers
    errors = dict(queue.get(timeout=5) for _ in range(workers))
    assert errors == {w: 0 for w in range(workers)}
    cache = ResponseCache(path)
    assert rows(path) == workers * n
    assert all(cache.get(f"w{w}-{i}") == (f"answer {w} {i}", i, w) for w in range(workers) for i in range(n))
    cache.close()


def hold_write_lock(path, seconds: float) -> threading.Event:
    """Another connection takes the write lock now and keeps it for ``seconds``; the event is set
    once it holds the lock."""
    held = threading.Event()

    def hold():
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        db.execute("INSERT OR REPLACE INTO responses VALUES ('outsider', 'x', 0, 0, 0)")
        held.set()
        time.sleep(seconds)
        db.execute("COMMIT")
        db.close()
    threading.Thread(target=hold, daemon=True).start()
    assert held.wait(5)
    return held


def test_a_write_waits_for_an_outside_lock_and_succeeds(fake, tmp_path, caplog):
    FakeLLMServer, Reply = fake
    with FakeLLMServer(lambda b, n: Reply(GOOD)) as srv:
        svc = service(srv, tmp_path)
        hold_write_lock(tmp_path / "cache.sqlite", 3.0)
        t0 = time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="recworld.llm"):
            r = svc.complete(MSG, Choice, seed=1)
        waited = time.perf_counter() - t0
        again = svc.complete(MSG, Choice, seed=1)
        m = svc.metrics()
        svc.close()
    assert r.ok and waited > 2.0 and again.cache_hit and m["cache_write_errors"] == 0
    assert not [x for x in caplog.records if "cache" in x.getMessage()]
    assert rows(tmp_path / "cache.sqlite") == 2                         # ours and the outsider's


def test_a_lock_held_too_long_is_logged_and_the_answer_still_returned(fake, tmp_path, caplog):
    FakeLLMServer, Reply = fake
    with FakeLLMServer(lambda b, n: Reply(GOOD)) as srv:
        svc = service(srv, tmp_path)
        svc.cache.close()
        svc.cache = ResponseCache(tmp_path / "cache.sqlite", busy_timeout_s=0.2, attempts=2, backoff_s=0.05)
        hold_write_lock(tmp_path / "cache.sqlite", 4.0)
        with caplog.at_level(logging.WARNING, logger="recworld.llm"):
            r = svc.complete(MSG, Choice, seed=1)
        m = svc.metrics()
        svc.close()
    assert r.ok and r.parsed.watch == [1, 3] and not r.fallback
    assert m["cache_write_errors"] == 1 and m["fallbacks"] == 0
    assert any("cache write failed" in x.getMessage() for x in caplog.records)


def test_reads_do_not_wait_for_a_writer(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put("k", "v", 1, 2)
    hold_write_lock(tmp_path / "c.sqlite", 2.0)
    t0 = time.perf_counter()
    assert cache.get("k") == ("v", 1, 2)
    assert time.perf_counter() - t0 < 1.0
    cache.close()
    assert cache.get("k") is None and cache.put("k", "v", 0, 0) is False     # closed: no crash
