"""llm_ranker and toolrec against a scripted OpenAI-compatible server; rank by first mention."""

import numpy as np
import pytest

pytest.importorskip("litellm")

from recworld.simulator.testing.scripted import answer  # noqa: E402
from recworld.recommenders.llm import LLMRanker, ToolRec, rank_by_first_mention, short_name  # noqa: E402
from recworld.simulator.data.sources import load_movielens  # noqa: E402
from recworld.simulator.testing.fakellm import FakeLLMServer, Reply  # noqa: E402
from recworld.simulator.llm.service import LLMService  # noqa: E402
from recworld.simulator.protocols import SlateRequest  # noqa: E402


def test_rank_by_first_mention():
    names = ["Alpha", "Beta", "Gamma", "Alpha Max"]
    text = "1. Gamma\n2. Alpha Max is great\n3. Alpha\nnothing about the fourth"
    assert rank_by_first_mention(text, names).tolist() == [3, 5, 1, 2]
    assert rank_by_first_mention("", names).tolist() == [5, 5, 5, 5]
    assert rank_by_first_mention("beta BETA alpha", names).tolist() == [2, 1, 5, 5]


@pytest.fixture
def ml(tiny_ml):
    return load_movielens(tiny_ml)


def fitted(cls, ml, srv, tmp_path, **params):
    svc = LLMService({"model": "openai/fake", "api_base": srv.url, "cache": False, "backoff_s": 0.01,
                      "timeout_s": 3, "retries": 0}, log_path=tmp_path / "calls.jsonl")
    rec = cls(params, rng=np.random.default_rng(0), llm=svc)
    rec.fit(ml.ratings, ml.catalog)
    return rec


def req(ml, **kw):
    uid = int(ml.ratings["user_id"].iloc[0])
    return SlateRequest(user=0, k=5, user_id=uid, **kw)


def test_llm_ranker_follows_the_numbered_list(ml, tmp_path):
    with FakeLLMServer(answer) as srv:          # lists the shown items in reverse order
        rec = fitted(LLMRanker, ml, srv, tmp_path, candidates=6, shuffle=False)
        slate = rec.recommend(req(ml))
        prompt = srv.requests[0]["messages"][-1]["content"]
    shown = [line for line in prompt.splitlines() if line.startswith("{")]
    assert len(shown) == 6
    base = LLMRanker({"candidates": 6, "shuffle": False}, rng=np.random.default_rng(0))
    base.fit(ml.ratings, ml.catalog)
    retrieved = super(LLMRanker, base)._rank(req(ml))[:6]
    assert slate.items.tolist() == retrieved[::-1][:5].tolist()
    assert rec.stats()["llm_calls"] == 1 and rec.stats()["fallbacks"] == 0


def test_llm_ranker_unparseable_answer_falls_back_and_is_counted(ml, tmp_path):
    with FakeLLMServer(lambda b, n: Reply("I cannot help with that.")) as srv:
        rec = fitted(LLMRanker, ml, srv, tmp_path, candidates=6, shuffle=False)
        slate = rec.recommend(req(ml))
    assert len(slate.items) == 5 and rec.stats()["fallbacks"] == 1


def test_llm_ranker_pages_continue_one_ranking(ml, tmp_path):
    with FakeLLMServer(answer) as srv:
        rec = fitted(LLMRanker, ml, srv, tmp_path, candidates=8)
        p0 = rec.recommend(req(ml))
        p1 = rec.recommend(req(ml, page=1))
        assert len(srv.requests) == 1                   # one LLM call per browsing run
    assert not set(p0.items) & set(p1.items)


def test_toolrec_loop_counts_tools_and_calls(ml, tmp_path):
    with FakeLLMServer(answer) as srv:    # retrieve genre, retrieve year, retrieve similar, rerank, finish
        rec = fitted(ToolRec, ml, srv, tmp_path, candidates=8)
        slate = rec.recommend(req(ml))
        purposes = [b["messages"][0]["content"][:20] for b in srv.requests]
    st = rec.stats()
    assert st["requests"] == 1 and st["tool_calls"] == 4
    assert st["llm_calls"] == len(purposes) == 5 + 1 + 1      # 5 actions, the rerank tool, the final rerank
    assert len(slate.items) == 5 and len(set(slate.items)) == 5


def test_toolrec_stops_after_max_rounds(ml, tmp_path):
    def never_done(body, n):
        if (body.get("response_format") or {}).get("json_schema", {}).get("name") == "ToolAction":
            return Reply('{"thought": "more", "action": "retrieve", "attribute": "popularity", "value": "", "k": 3}')
        return answer(body, n)
    with FakeLLMServer(never_done) as srv:
        rec = fitted(ToolRec, ml, srv, tmp_path, max_rounds=4)
        rec.recommend(req(ml))
    assert rec.stats()["tool_calls"] == 4 and rec.stats()["llm_calls"] == 4 + 1


def test_toolrec_genre_and_year_tools(ml, tmp_path):
    rec = ToolRec({}, rng=np.random.default_rng(0))
    rec.fit(ml.ratings, ml.catalog)
    allowed = np.ones(len(ml.catalog), dtype=bool)
    c = ml.catalog
    g = rec._tool(req(ml), allowed, "genre", "comedy", 5)
    assert len(g) and all("Comedy" in c.genre_lists[i] for i in g)
    y = rec._tool(req(ml), allowed, "year", "1990s", 50)
    assert len(y) and all(1990 <= c.year[i] <= 1999 for i in y)
    assert len(rec._tool(req(ml), allowed, "genre", "no such genre", 5)) == 0


def test_list_answers_hold_to_the_shown_names_and_stop_with_the_list(ml, tmp_path):
    import json

    from recworld.recommenders.llm import answer_entries, list_length, unknown_entries

    with FakeLLMServer(answer) as srv:             # the scripted list answer: the allowed names reversed
        rec = fitted(LLMRanker, ml, srv, tmp_path, candidates=6, shuffle=False, list_items=4)
        slate = rec.recommend(req(ml))
        body = srv.requests[0]
    shown = [json.loads(line)["name"] for line in body["messages"][-1]["content"].splitlines()
             if line.startswith("{")]
    spec = body["response_format"]["json_schema"]["schema"]["properties"]["ranking"]
    assert spec["items"]["enum"] == shown and spec["maxItems"] == 4      # only these names, at most 4
    assert [short_name(ml.catalog.titles[i]) for i in slate.items[:4]] == shown[::-1][:4]
    st = rec.stats()
    assert st["fallbacks"] == 0 and st["ranking_answers"] == 1 and st["unknown_name_answers"] == 0
    # the list is as long as fits in max_tokens: 20 names of 30 characters, 13 tokens each, 8 for the rest
    assert list_length(["x" * 30] * 20, 20, 160) == 11 and list_length(["ab"] * 20, 5, 160) == 5
    assert answer_entries('{"ranking": ["A", "B"]}') == ["A", "B"]
    assert unknown_entries("1. **Alpha** - good\n2. Omega 3000\nHope this helps!", ["Alpha", "Beta"]) == 1


def test_free_answers_are_read_by_first_mention_and_their_made_up_names_counted(ml, tmp_path):
    def chatty(body, n):
        assert "response_format" not in body                # free text: no schema, no grammar
        first = [line for line in body["messages"][-1]["content"].splitlines() if line.startswith("{")][2]
        name = json.loads(first)["name"]
        return Reply(f"1. {name}\n2. Espresso Deluxe 3000\n\nHope this helps! Enjoy", completion_tokens=160)

    import json

    with FakeLLMServer(chatty) as srv:
        rec = fitted(LLMRanker, ml, srv, tmp_path, candidates=6, shuffle=False, answer="free")
        slate = rec.recommend(req(ml))
    st = rec.stats()
    assert st["unknown_name_answers"] == 1 and st["answers_at_max_tokens"] == 1 and st["fallbacks"] == 0
    base = LLMRanker({"candidates": 6, "shuffle": False}, rng=np.random.default_rng(0))
    base.fit(ml.ratings, ml.catalog)
    retrieved = super(LLMRanker, base)._rank(req(ml))[:6]
    assert slate.items[0] == retrieved[2]                   # the one name it gave goes first
