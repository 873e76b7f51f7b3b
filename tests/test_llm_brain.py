"""LLM user agents in the world, against a scripted OpenAI-compatible server on loopback."""

import hashlib
import json
import random

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("litellm")

from recworld.simulator.testing.scripted import answer, schema_name  # noqa: E402
from recworld.agents.memory import Memory, MemoryParams, embed  # noqa: E402
from recworld.simulator.testing.fakellm import FakeLLMServer, Reply  # noqa: E402
from recworld.simulator.run import load_run, run_scenario  # noqa: E402


def llm_scenario(small_scenario, srv, tmp_path, **llm):
    scn = dict(small_scenario)
    scn["population"] = dict(scn["population"], brain={"name": "llm"})
    scn["llm"] = {"model": "openai/fake", "api_base": srv.url, "cache_path": str(tmp_path / "cache.sqlite"),
                  "backoff_s": 0.01, "timeout_s": 3, "retries": 1, **llm}
    return scn


PREFLIGHT = [{"role": "user", "content": "Reply with OK."}]      # the service's one check before a run


def decisions(srv):
    """What the server was asked, without the preflight check."""
    return [b for b in srv.requests if b["messages"] != PREFLIGHT]


def run(scn, out):
    return load_run(run_scenario(scn, out, progress=False, overwrite=True))


def calls_log(run_):
    return [json.loads(x) for x in (run_.path / "llm_calls.jsonl").read_text().splitlines()]


def test_llm_agents_run_and_every_answer_is_logged(small_scenario, tmp_path):
    with FakeLLMServer(answer) as srv:
        r = run(llm_scenario(small_scenario, srv, tmp_path), tmp_path / "run")
        served = len(decisions(srv))
        assert len(srv.requests) == served + 1                     # one preflight call before the world starts
    m = r.metrics["llm"]
    assert r.metrics["status"] == "completed"
    assert m["calls"] == served > 0 and m["fallbacks"] == 0 and m["brain_decisions"] <= len(calls_log(r))
    assert {x["purpose"] for x in calls_log(r)} >= {"activity", "page"}
    rates = r.of_kind("rate")
    assert len(rates) and set(rates["text"]) == {"fine"}          # the LLM's feelings reach the log
    # the prompts carry the persona and what the user sees
    page = next(b for b in srv.requests if schema_name(b).startswith("PageAnswer"))
    assert "you like" in page["messages"][0]["content"] and "1. " in page["messages"][1]["content"]


def test_cache_rerun_makes_no_calls_and_gives_identical_events(small_scenario, tmp_path):
    with FakeLLMServer(answer) as srv:
        a = run(llm_scenario(small_scenario, srv, tmp_path), tmp_path / "a")
        b = run(llm_scenario(small_scenario, srv, tmp_path), tmp_path / "b")
    assert a.metrics["llm"]["calls"] > 0
    assert b.metrics["llm"]["calls"] == 0 and b.metrics["llm"]["cache_hits"] == len(calls_log(a))
    pd.testing.assert_frame_equal(a.events, b.events)


def test_answer_order_does_not_change_the_run(small_scenario, tmp_path):
    """Lookahead batching: answers that arrive in another order give the same events."""
    jitter = random.Random(1)

    def slow(body, n):
        rep = answer(body, n)
        rep.delay = jitter.uniform(0, 0.05)
        return rep
    scn = dict(small_scenario, population=dict(small_scenario["population"], size=30),
               data={"source": "movielens", "path": None})           # the bundled 200-user sample
    with FakeLLMServer(answer) as srv:
        a = run(llm_scenario(scn, srv, tmp_path, cache=False), tmp_path / "a")
    with FakeLLMServer(slow) as srv:
        b = run(llm_scenario(scn, srv, tmp_path, cache=False), tmp_path / "b")
    assert b.metrics["llm"]["batching"]["max_batch"] > 1          # requests were in flight together
    pd.testing.assert_frame_equal(a.events, b.events)


@pytest.mark.parametrize("fault", ["malformed", "status500", "timeout", "rate_limited"])
def test_faults_end_in_retries_or_logged_fallbacks(fault, small_scenario, tmp_path):
    def faulty(body, n):
        if fault == "malformed":          # the same prompts always get prose, so their repair fails too
            key = json.dumps(body["messages"][:2], sort_keys=True).encode()
            if int(hashlib.sha256(key).hexdigest()[:6], 16) % 4 == 0:
                return Reply("I would like to watch the first one!")
            return answer(body, n)
        if n == 0 or n % (10 if fault == "timeout" else 3):   # n 0: the preflight; timeouts cost time: fewer
            return answer(body, n)
        return {"status500": Reply(status=500), "rate_limited": Reply(status=429),
                "timeout": Reply(delay=1.5, content="{}")}[fault]
    with FakeLLMServer(faulty) as srv:
        r = run(llm_scenario(small_scenario, srv, tmp_path, cache=False, timeout_s=0.5), tmp_path / "run")
    m = r.metrics["llm"]
    # a run whose fallbacks exceed llm.max_fallback_rate says so; below it, retries made it whole
    assert r.metrics["status"] == ("degraded" if m["fallback_rate_max"] > 0.05 else "completed")
    assert len(r.of_kind("slate")) > 0
    assert m["calls"] > m["brain_decisions"]                      # retries or repairs happened
    recs = calls_log(r)           # also requests still in flight when the run ended
    assert len(recs) >= m["brain_decisions"] and sum(x["fallback"] for x in recs) == m["fallbacks"]
    assert m["brain_fallbacks"] <= m["fallbacks"]
    if fault == "malformed":              # each fallback took the answer and one repair try, no more
        assert m["brain_fallbacks"] > 0
        assert all(x["calls"] == 2 for x in recs if x["fallback"])


def test_a_server_that_dies_mid_run_ends_in_fallbacks_not_a_lost_run(small_scenario, tmp_path):
    srv = FakeLLMServer(answer).start()
    served = {"n": 0}

    def dying(body, n):
        served["n"] += 1
        if served["n"] == 20:
            import threading

            threading.Thread(target=srv.stop).start()
        return answer(body, n)
    srv.responder = dying
    r = run(llm_scenario(small_scenario, srv, tmp_path, cache=False, retries=0), tmp_path / "run")
    m = r.metrics["llm"]
    assert r.metrics["status"] == "degraded"                     # not 'completed': most decisions fell back
    assert m["fallbacks"] > 0 and m["brain_decisions"] > 20
    assert m["fallback_reasons"].get("unreachable", 0) + m["fallback_reasons"].get("circuit_open", 0) > 0
    assert "DEGRADED" in (r.path / "report.md").read_text().splitlines()[2]
    assert len(r.of_kind("slate")) > 0 and (r.path / "events.parquet").exists()


def test_mixed_population_only_llm_users_call(small_scenario, tmp_path):
    scn = dict(small_scenario)
    with FakeLLMServer(answer) as srv:
        s = llm_scenario(scn, srv, tmp_path, cache=False)
        s["population"] = dict(s["population"], brain={"name": "parametric"},
                               groups=[{"share": 0.3, "brain": {"name": "llm"}}])
        r = run(s, tmp_path / "run")
    recs = calls_log(r)
    callers = {x["user"] for x in recs if x["purpose"] != "chat"}     # a chat also voices the partner
    assert 0 < len(callers) <= 3
    assert {x["purpose"] for x in recs if x["user"] not in callers} <= {"chat"}
    active = set(r.of_kind("session_start")["user_id"])
    assert active - callers                                       # parametric users ran without the LLM


def test_prompt_templates_can_be_overridden(small_scenario, tmp_path):
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "persona.txt").write_text("PIRATE PERSONA for $user_id. Answer JSON.")
    with FakeLLMServer(answer) as srv:
        s = llm_scenario(small_scenario, srv, tmp_path, cache=False)
        s["population"]["brain"] = {"name": "llm", "prompts": str(folder)}
        run(s, tmp_path / "run")
        systems = {b["messages"][0]["content"] for b in decisions(srv)}
    assert systems and all(x.startswith("PIRATE PERSONA for ") for x in systems)


def test_a_world_without_llm_settings_for_an_llm_brain_names_the_problem(small_scenario, tmp_path):
    from recworld.simulator.scenario import ScenarioError, load_scenario, validate_plugins

    bad = dict(small_scenario, population=dict(small_scenario["population"], brain={"name": "llm", "memroy": {}}))
    with pytest.raises(ScenarioError, match="memroy.*did you mean 'memory'"):
        validate_plugins(load_scenario(bad))


# ----------------------------------------------------------------------------- memory


def test_memory_consolidates_forgets_and_retrieves_by_relevance():
    mem = Memory(MemoryParams(short_term=3, long_term=4, reflect_every=3))
    for t in range(10):
        mem.perceive(t * 60.0, f"read user {t}'s post about Film {t}")       # unimportant
    mem.perceive(700.0, "watched Alien (1979) and rated it 5/5 (loved it)")
    mem.perceive(710.0, "watched Heat (1995) and rated it 4/5")
    mem.perceive(720.0, "watched Up (2009) and rated it 2/5")
    mem.perceive(730.0, "chatted with user 4")
    mem.perceive(740.0, "read user 9's post about Toy Story")
    mem.consolidate()
    texts = [m.text for m in mem.long]
    assert len(mem.short) == 3 and len(mem.long) <= 4
    assert not any("Film" in t for t in texts) and mem.forgotten >= 10          # dropped, not promoted
    assert any("Alien" in t for t in texts)
    top = mem.retrieve("a space horror film like Alien", now=800.0, k=1)
    assert "Alien" in top[0].text
    assert mem.wants_reflection()
    mem.add_insight(800.0, "insight: I like tense films")
    assert not mem.wants_reflection() and any(m.kind == "insight" for m in mem.long)


def test_memory_over_capacity_forgets_the_least_retained():
    mem = Memory(MemoryParams(short_term=1, long_term=2, promote_importance=0.0))
    mem.perceive(0.0, "watched Old and rated it 3/5")
    mem.perceive(10_000.0, "watched Mid and rated it 5/5")
    mem.perceive(10_010.0, "watched New and rated it 3/5")
    mem.perceive(10_020.0, "watched Newest and rated it 3/5")
    mem.consolidate()
    assert [m.text.split()[1] for m in mem.long] == ["Mid", "New"]


def test_embeddings_are_stable_and_unit_length():
    a, b = embed("Toy Story comedy"), embed("Toy Story comedy")
    assert np.array_equal(a, b) and abs(float(np.linalg.norm(a)) - 1) < 1e-6
    assert float(a @ embed("toy story")) > float(a @ embed("horror in space"))


def test_load_run_joins_every_llm_decision_to_what_it_produced(small_scenario, tmp_path):
    """The audit trail: each page decision's prompt and answer, the slate it saw, what was watched."""
    with FakeLLMServer(answer) as srv:
        r = run(llm_scenario(small_scenario, srv, tmp_path, cache=False), tmp_path / "run")
    calls = r.llm_calls
    assert len(calls) == len(calls_log(r)) > 0
    assert calls["messages"].map(lambda m: isinstance(m, list) and len(m) == 2).all()
    assert calls["answer"].notna().all() and calls["user_id"].notna().all()
    d = r.decisions()
    pages = d[(d["purpose"] == "page") & ~d["fallback"].astype(bool)]
    assert len(pages) > 0 and pages["slate_id"].notna().all()
    slates = r.of_kind("slate").set_index("slate_id")
    checked = 0
    for _, row in pages.iterrows():
        shown = list(slates.at[row["slate_id"], "items"])
        assert list(row["items"]) == shown
        picked = [shown[w["item"] - 1] for w in row["parsed"]["watch"] if 1 <= w["item"] <= len(shown)]
        assert list(dict.fromkeys(picked)) == list(row["watched"] if isinstance(row["watched"], list) else [])
        checked += 1
    assert checked > 0
    assert set(d["activity"].dropna()) <= {"browse", "search", "chat", "post", "idle"}
