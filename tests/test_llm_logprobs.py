"""Page decisions by log-probabilities: the scoring, the service's score requests (cache, audit
log, servers without logprobs) and the LLM brain in a world, against a scripted server."""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("litellm")

from recworld.agents.llm import (NONE_LABEL, LLMBrain, draw_picks, label_logprobs, pick_labels,  # noqa: E402
                                 rate_schema)
from recworld.simulator.llm.service import LLMService  # noqa: E402
from recworld.simulator.run import load_run, run_scenario  # noqa: E402
from recworld.simulator.testing.fakellm import FakeLLMServer, Reply  # noqa: E402
from recworld.simulator.testing.scripted import answer, schema_name  # noqa: E402

MSG = [{"role": "user", "content": "Which one? Answer with its number only."}]


# ----------------------------------------------------------------------------- scoring


def test_labels_digits_then_letters_and_a_clear_error_past_26():
    assert pick_labels(5) == ["1", "2", "3", "4", "5"]
    assert pick_labels(12)[:3] == ["A", "B", "C"] and pick_labels(12)[-1] == "L"
    with pytest.raises(ValueError, match="page_size"):
        pick_labels(27)


def test_label_logprobs_merge_spaced_and_cased_tokens_and_miss_absent_labels():
    top = [{"2": np.log(0.5), " 2": np.log(0.1), "b": np.log(0.2), "{": np.log(0.15)}]
    got = label_logprobs(top, ["1", "2", "3"])
    assert got[0] == -np.inf and got[2] == -np.inf
    assert np.exp(got[1]) == pytest.approx(0.6)
    assert np.exp(label_logprobs(top, ["A", "B"])[1]) == pytest.approx(0.2)
    assert np.isneginf(label_logprobs(None, ["1"])).all()


def test_draw_picks_greedy_and_sampled_follow_the_scores():
    scores = np.log([0.1, 0.6, 0.3])
    none = np.log(0.05)
    # temperature 0: the most likely, then the next one while it beats "none" (damped after a pick)
    assert draw_picks(scores, none, np.random.default_rng(0), 2, temperature=0) == [1, 2]
    assert draw_picks(scores, none, np.random.default_rng(0), 2, temperature=0, after_pick=20.0) == [1]
    assert draw_picks(scores, np.log(0.9), np.random.default_rng(0), 2, temperature=0) == []
    # sampled: first picks as often as their share among options (none included), same seed same picks
    rng = np.random.default_rng(1)
    firsts = [(draw_picks(scores, none, rng, 1) or [-1])[0] for _ in range(4000)]
    share = np.bincount(np.array(firsts) + 1, minlength=4) / 4000        # none, 0, 1, 2
    assert share == pytest.approx(np.array([0.05, 0.1, 0.6, 0.3]) / 1.05, abs=0.03)
    again = [(draw_picks(scores, none, np.random.default_rng(7), 2)) for _ in range(3)]
    assert again[0] == again[1] == again[2]
    # a low temperature sharpens: the best option wins almost always
    rng = np.random.default_rng(2)
    sharp = [draw_picks(scores, none, rng, 1, temperature=0.1) for _ in range(500)]
    assert sum(p == [1] for p in sharp) > 490
    assert draw_picks(np.full(3, -np.inf), -np.inf, rng, 2) == []


def test_rate_schema_wants_one_rating_per_pick():
    schema = rate_schema(2)
    ok = schema.model_validate({"watched": [{"rating": 5, "feeling": "great"}, {"rating": 2}], "next": "leave"})
    assert [w.rating for w in ok.watched] == [5, 2]
    with pytest.raises(ValueError):
        schema.model_validate({"watched": [{"rating": 5}], "next": "leave"})


# ----------------------------------------------------------------------------- the service


def service(srv, tmp_path, **cfg):
    base = {"model": "openai/fake", "api_base": srv.url, "cache_path": str(tmp_path / "cache.sqlite"),
            "backoff_s": 0.01, "timeout_s": 3, "retries": 0}
    return LLMService(base | cfg, log_path=tmp_path / "llm_calls.jsonl")


def complete_scores(svc, k=20, seed=1):
    from recworld.simulator.llm.service import LLMRequest

    return svc.complete_many([LLMRequest(MSG, None, seed, {"purpose": "page_pick"}, logprobs=k)])[0]


TOP = [{"3": -0.2, "1": -2.0, "0": -3.0, "I": -4.0}]


def test_score_request_asks_one_token_and_caches_and_logs_the_logprobs(tmp_path):
    with FakeLLMServer(lambda b, n: Reply("3", top_logprobs=TOP, completion_tokens=1)) as srv:
        svc = service(srv, tmp_path)
        r = complete_scores(svc, k=3)
        svc.close()
        again_svc = service(srv, tmp_path)
        again = complete_scores(again_svc, k=3)
        other_k = complete_scores(again_svc, k=20)      # other parameters: another cache entry
        again_svc.close()
    assert r.ok and r.text == "3" and r.top_logprobs == [{"3": -0.2, "1": -2.0, "0": -3.0}]   # the best 3
    body = srv.requests[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 3 and body["max_tokens"] == 1
    assert "response_format" not in body and "grammar" not in json.dumps(body)
    assert again.cache_hit and again.top_logprobs == r.top_logprobs
    assert not other_k.cache_hit and len(other_k.top_logprobs[0]) == 4 and len(srv.requests) == 2
    rec = [json.loads(x) for x in (tmp_path / "llm_calls.jsonl").read_text().splitlines()][0]
    assert rec["logprobs"] == 3 and rec["top_logprobs"] == [{"3": -0.2, "1": -2.0, "0": -3.0}]


def test_a_server_without_logprobs_gives_a_clear_fallback_and_is_not_cached(tmp_path):
    with FakeLLMServer(lambda b, n: Reply("3")) as srv:
        svc = service(srv, tmp_path)
        r = complete_scores(svc)
        r2 = complete_scores(svc)
        svc.close()
    assert not r.ok and r.fallback and r.fallback_reason == "no_logprobs" and "decision: json" in r.error
    assert not r2.cache_hit and len(srv.requests) == 2
    assert svc.metrics()["fallback_reasons"] == {"no_logprobs": 2}


# ----------------------------------------------------------------------------- the brain in a world


def _user_prompt(body):
    return body["messages"][-1]["content"]


def liker(genre):
    """A scripted user who scores the first item of ``genre`` on each page highest (else "none"),
    and rates what it picked 5 stars ("loved it")."""
    def reply(body, n):
        if body.get("logprobs"):
            lines = [x for x in _user_prompt(body).splitlines() if x[:1].isalnum() and ". " in x]
            labels = [x.split(".", 1)[0] for x in lines]
            hit = next((lab for lab, x in zip(labels, lines) if genre in x.split("[", 1)[-1]), None)
            top = {NONE_LABEL: -0.1} if hit is None else {hit: -0.05, NONE_LABEL: -4.0}
            top |= {lab: -8.0 for lab in labels if lab != hit}
            return Reply(hit or NONE_LABEL, top_logprobs=[top], completion_tokens=1)
        name = schema_name(body)
        if name.startswith("RatePage"):
            k = int(name[len("RatePage"):])
            return Reply(json.dumps({"watched": [{"rating": 5, "feeling": "loved it"}] * k, "next": "next",
                                     "query": ""}))
        return answer(body, n)
    return reply


def logprob_scenario(small_scenario, srv, tmp_path, **brain):
    scn = dict(small_scenario)
    scn["population"] = dict(scn["population"], brain={"name": "llm", "decision": "logprobs",
                                                       "pick_temperature": 0, **brain})
    scn["llm"] = {"model": "openai/fake", "api_base": srv.url, "cache_path": str(tmp_path / "cache.sqlite"),
                  "backoff_s": 0.01, "timeout_s": 3, "retries": 1}
    return scn


def test_logprob_pages_pick_what_scores_best_and_rate_in_a_second_pass(small_scenario, tmp_path):
    with FakeLLMServer(liker("Comedy")) as srv:
        r = load_run(run_scenario(logprob_scenario(small_scenario, srv, tmp_path), tmp_path / "run",
                                  progress=False, overwrite=True))
        asked = list(srv.requests)
    assert r.metrics["status"] == "completed" and r.metrics["llm"]["fallbacks"] == 0
    picks = [b for b in asked if b.get("logprobs")]
    rates = [b for b in asked if schema_name(b).startswith("RatePage")]
    assert picks and rates and not [b for b in asked if schema_name(b).startswith("PageAnswer")]
    assert all(b["max_tokens"] == 1 and "label of your choice" in b["messages"][0]["content"] for b in picks)
    # item lines say title and genres once (the item text's copies of them are left out)
    lines = [x for b in picks for x in _user_prompt(b).splitlines() if x[:2] in {f"{k}." for k in range(1, 10)}]
    assert lines and not [x for x in lines if "Genres:" in x]
    assert all(x.count(x.split(". ", 1)[1].split(" [")[0]) == 1 for x in lines)
    assert "JSON" in rates[0]["messages"][0]["content"] and "you chose to watch" in _user_prompt(rates[0])
    # every watch is the first comedy of its page (the one label the script scores high), rated 5
    slates = r.of_kind("slate").set_index("slate_id")
    watches = r.of_kind("watch")
    assert len(watches) == len(rates)                 # one pick per page: "none" outweighs a second one
    movies = pd.read_csv(Path(small_scenario["data"]["path"]) / "movies.csv").set_index("movieId")["genres"]
    for _, w in watches.iterrows():
        shown = list(slates.loc[w["slate_id"], "items"])
        first_comedy = next(i for i in shown if "Comedy" in movies[i])
        assert w["item_id"] == first_comedy and shown.index(w["item_id"]) == w["position"]
    rated = r.of_kind("rate")
    assert set(rated["value"]) == {5.0} and set(rated["text"]) == {"loved it"}
    # a page without a comedy is left with no pick and no second request
    no_comedy = [s for s in slates["items"] if len(s) and not any("Comedy" in movies[i] for i in s)]
    assert len(picks) == len(rates) + len(no_comedy)


def test_a_server_without_logprobs_switches_the_brain_to_json_with_a_warning(small_scenario, tmp_path, caplog):
    with FakeLLMServer(answer) as srv, caplog.at_level(logging.WARNING, logger="recworld.agents"):
        r = load_run(run_scenario(logprob_scenario(small_scenario, srv, tmp_path), tmp_path / "run",
                                  progress=False, overwrite=True))
        asked = list(srv.requests)
    assert r.metrics["status"] == "completed"
    assert sum(1 for m in caplog.messages if "no log-probabilities" in m) == 1
    score_requests = [b for b in asked if b.get("logprobs")]
    assert 1 <= len(score_requests) <= 4               # only the first window's pages asked for scores
    assert [b for b in asked if schema_name(b).startswith("PageAnswer")]
    assert len(r.of_kind("watch")) > 0


def test_decision_setting_is_validated():
    with pytest.raises(ValueError, match="decision"):
        LLMBrain.Params(decision="scores")
    with pytest.raises(ValueError, match="top_logprobs"):
        LLMBrain.Params(top_logprobs=50)


def test_item_note_leaves_out_what_the_item_line_says(tiny_ml):
    from recworld.simulator.data.sources import load_movielens

    catalog = load_movielens(tiny_ml).catalog
    brain = LLMBrain.__new__(LLMBrain)             # only the catalog and the parameters are used
    brain.catalog, brain.params = catalog, LLMBrain.Params()
    tagged = next(i for i in range(len(catalog.titles)) if "Tags:" in str(catalog.items["text"].iat[i]))
    line = brain._item_line(1, tagged)
    title, genres = catalog.titles[tagged], ", ".join(catalog.genre_lists[tagged])
    assert line.startswith(f"1. {title} [{genres}] - Tags: ") and line.count(title) == 1 and "Genres:" not in line
    brain.params = LLMBrain.Params(item_chars=len(title) + 12)    # the text cut inside its genre sentence
    assert brain._item_line(2, tagged) == f"2. {title} [{genres}]"
    brain.params = LLMBrain.Params(item_chars=0)
    assert brain._item_line(3, tagged) == f"3. {title} [{genres}]"
