"""Attackers inside the world: the shill brain, how far its word spreads, and the A/B over seeds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from recworld.agents.shill import ShillBrain
from recworld.simulator import registry
from recworld.simulator.testing.checks import check_brain

TARGET = "ColdBrew Master"


def coffee_world(**over) -> dict:
    """Parametric shoppers on the bundled coffee catalog: no LLM, a few seconds a run."""
    scn = {"name": "shill-test", "seed": 3, "duration_days": 2,
           "data": {"source": "products", "path": "coffee_machines"},
           "population": {"size": 60, "activity": {"median_sessions_per_day": 3}},
           "social": {"graph": "small_world", "degree": 4},
           "recommender": {"name": "popularity"},
           "session": {"page_size": 3, "max_pages": 2},
           "output": {"plots": False, "html_users": 0}}
    scn.update(over)
    return scn


# ----------------------------------------------------------------------------- the brain


def test_shill_passes_the_brain_checker_and_is_registered():
    report = check_brain(ShillBrain, {"target": "Item 3"})
    assert {"deterministic", "chat", "write-post", "world-run"} <= set(report["rules"])
    assert report["events"] > 0
    assert registry.load("brains", "shill") is ShillBrain


def test_shill_params_say_what_is_wrong():
    with pytest.raises(ValueError, match="target"):
        ShillBrain.Params()
    with pytest.raises(ValueError, match=r"does not contain '\{target\}'"):
        ShillBrain.Params(target=TARGET, chat_messages=["buy it now"])
    from recworld.simulator.build import build_parts
    from recworld.simulator.scenario import load_scenario

    parts = build_parts(load_scenario(coffee_world()))
    with pytest.raises(ValueError, match="not an item of the catalog.*group's brain"):
        ShillBrain({"target": "Espresso Nope"}, catalog=parts.catalog, population=parts.population)


def test_shill_talks_and_posts_about_the_target():
    from recworld.simulator.build import build_parts
    from recworld.simulator.protocols import UserState
    from recworld.simulator.scenario import load_scenario

    parts = build_parts(load_scenario(coffee_world()))
    brain = ShillBrain({"target": "coldbrew master", "target_rating": 5}, catalog=parts.catalog,
                       population=parts.population)
    t = brain.target
    assert parts.catalog.titles[t] == TARGET
    st = UserState(0, 1, np.random.default_rng(0))
    friend = UserState(1, 2, np.random.default_rng(1))
    kinds = [brain.choose_activity(st, 0.0).kind for _ in range(400)]
    assert 0.55 < (kinds.count("chat") + kinds.count("post")) / len(kinds) < 0.75     # default mix: 65%
    dlg = brain.chat(st, friend, 1.0)
    assert dlg.mentioned[t] == 0 and TARGET in dlg.lines[0][1] and dlg.lines[1][0] == 2
    draft = brain.write_post(st, 2.0)
    assert draft.item == t and TARGET in draft.text
    assert brain.consume(st, t, 3.0).rating == 5.0
    from recworld.simulator.protocols import Post

    assert brain.read_post(st, Post(1, 1, 1, t, "x", 0, 4.0), 4.0).repost


# ----------------------------------------------------------------------------- who the attackers are


def test_attacker_seats_are_the_users_the_builder_gives_the_shill_brain():
    from recworld.simulator.build import build_parts, make_brains
    from recworld.simulator.scenario import load_scenario
    from recworld.simulator.studies.sts_world import (
        attacker_indices,
        attackers_override,
    )

    raw = coffee_world(population={"size": 40, "groups": [{"share": 0.25, "brain": {"name": "parametric",
                                                                                  "fatigue": 1.0}}]})
    scn = load_scenario(raw, [attackers_override(raw, 0.1, TARGET)])
    assert [g.brain.name for g in scn.population.groups] == ["parametric", "shill"]
    brains = make_brains(scn, build_parts(scn))
    truth = [u for u, b in enumerate(brains) if isinstance(b, ShillBrain)]
    assert len(truth) == 4 and attacker_indices(scn, 40) == truth


# ----------------------------------------------------------------------------- spread on a hand-made run


def _hand_made_run(folder):
    """Five users on a path 1-2-3-4 and a loner 5; user 1 is the attacker."""
    from recworld.simulator.data.sources import load_products
    from recworld.simulator.engine.events import EventKind as K
    from recworld.simulator.engine.events import EventLog

    folder.mkdir()
    items = load_products("coffee_machines").items.copy()
    items["genres"] = items["genres"].map(list)
    items.to_parquet(folder / "items.parquet", index=False)
    tid = int(items.loc[items["title"] == TARGET, "item_id"].iloc[0])
    other = int(items.loc[items["title"] != TARGET, "item_id"].iloc[0])
    pd.DataFrame({"user_id": [1, 2, 3, 4, 5]}).to_parquet(folder / "users.parquet", index=False)
    (folder / "edges.txt").write_text("1 2\n2 3\n3 4\n")
    scn = coffee_world(population={"size": 5}, social={"graph": "edgelist", "path": str(folder / "edges.txt")})
    (folder / "scenario.yaml").write_text(yaml.safe_dump(scn))
    (folder / "metrics.json").write_text(json.dumps({"status": "completed", "simulated_days": 1.0}))
    with EventLog(folder) as log:
        log.emit(K.SESSION_START, 0.5, 2, session=1, text="browse")
        log.emit(K.CHAT, 1.0, 1, session=1, other_id=2, items=[tid], text=f"1: Try {TARGET}!\n2: ok")
        log.emit(K.HEARD, 1.0, 2, session=1, item_id=tid, other_id=1, text="chat")
        log.emit(K.SLATE, 1.5, 2, session=1, slate_id=1, page=0, items=[tid, other, tid + 100])
        log.emit(K.WATCH, 2.0, 2, session=1, item_id=tid, slate_id=1, position=0, value=30.0)
        log.emit(K.RATE, 2.5, 2, session=1, item_id=tid, slate_id=1, value=2.0)
        log.emit(K.LEAVE, 2.6, 2, session=1, slate_id=1, text="done")
        log.emit(K.SESSION_START, 5.0, 3, session=1, text="browse")
        log.emit(K.CHAT, 6.0, 2, session=2, other_id=3, items=[tid], text=f"2: {TARGET} was meh\n3: ok")
        log.emit(K.HEARD, 6.0, 3, session=1, item_id=tid, other_id=2, text="chat")
        log.emit(K.SLATE, 7.0, 3, session=1, slate_id=2, page=0, items=[other, tid])
        log.emit(K.WATCH, 7.5, 3, session=1, item_id=other, slate_id=2, position=0, value=30.0)
        log.emit(K.RATE, 8.0, 3, session=1, item_id=other, slate_id=2, value=4.0)
        log.emit(K.LEAVE, 8.1, 3, session=1, slate_id=2, text="last page")
        log.emit(K.POST, 9.0, 1, session=2, post_id=1, root_id=1, item_id=tid, value=0.0, text=f"{TARGET} 5/5")
        log.emit(K.HEARD, 10.0, 5, session=1, item_id=tid, other_id=4, text="chat")
        log.emit(K.SESSION_START, 1000.0, 2, session=3, text="browse")
    return tid


def test_spread_counts_hops_chains_and_what_followed(tmp_path):
    from recworld.simulator.studies.sts_world import spread

    tid = _hand_made_run(tmp_path / "run")
    sp = spread(tmp_path / "run", TARGET.lower(), attackers=[1])
    assert sp["target_id"] == tid and sp["attackers"] == [1] and sp["ordinary_users"] == 4
    assert sp["by_hop"] == {"1": {"users": 1, "heard": 1, "share": 1.0}, "2": {"users": 1, "heard": 1, "share": 1.0},
                            "3": {"users": 1, "heard": 0, "share": 0.0}, "4+": {"users": 1, "heard": 1, "share": 1.0}}
    assert (sp["heard_hop1"], sp["heard_hop2"], sp["heard_hop3"], sp["heard_hop4plus"]) == (1, 1, 0, 1)
    assert sp["chain"] == {"by_hop": {"1": 1, "2": 1}, "independent": 1, "via": {"chat": 3}, "longest": 2}
    assert sp["target_heard_of"] == 3 and sp["heard_from_attackers"] == 1 and sp["heard_chain_2plus"] == 1
    assert sp["heard_then_watched"] == 1 and sp["target_watches"] == 1
    assert sp["target_mean_rating"] == 2.0 and sp["others_mean_rating"] == 4.0 and sp["target_rating_gap"] == -2.0
    assert sp["rating_told_buyers"] == 2.0 and sp["rating_other_buyers"] is None
    assert sp["target_impressions"] == 2 and sp["target_impression_share"] == pytest.approx(0.4)
    assert sp["target_mean_slot"] == 1.5
    assert sp["chats_naming_target"] == 1 and sp["attacker_chats"] == 1 and sp["attacker_posts"] == 1
    assert sp["posts_about_target"] == 0
    assert sp["leave_by_choice_share"] == 0.5 and sp["quiet_late_share"] == 0.5
    # a user left out of the measurement (world_ab leaves every arm's attacker seats out)
    less = spread(tmp_path / "run", TARGET, attackers=[1], exclude=[3])
    assert less["ordinary_users"] == 3 and less["target_heard_of"] == 2 and less["target_impressions"] == 1
    assert less["by_hop"]["2"] == {"users": 0, "heard": 0, "share": None}
    # without attackers named (and none in the scenario): no hops, the rest the same
    none = spread(tmp_path / "run", TARGET)
    assert none["by_hop"] == {} and none["heard_hop1"] is None and none["heard_from_attackers"] == 0
    with pytest.raises(ValueError, match="are not users of the run"):
        spread(tmp_path / "run", TARGET, attackers=[99])
    with pytest.raises(ValueError, match="not an item of the run"):
        spread(tmp_path / "run", "Teapot")


# ----------------------------------------------------------------------------- the A/B over seeds


def test_world_ab_attackers_spread_the_word_paired_over_seeds(tmp_path):
    from recworld.simulator.studies.sts_world import (
        attackers_override,
        world_ab,
        world_ab_plots,
        world_ab_report,
    )

    scn = coffee_world()
    arms = {"without": [], "attackers": [attackers_override(scn, 0.1, TARGET)],
            "broken": [attackers_override(scn, 0.1, "Teapot 3000")]}
    res = world_ab(scn, arms, 2, tmp_path / "ab", progress=False, target=TARGET)
    # the broken arm's runs fail, are recorded, and the others go on
    assert res["status"] == "partial: 2 of 6 runs failed"
    broken = [r for r in res["runs"] if r["arm"] == "broken"]
    assert all(r["status"] == "failed" and "Teapot 3000" in r["error"] for r in broken)
    assert res["seeds"] == [3, 4] and res["baseline"] == "without"
    by = {(r["arm"], r["seed"]): r for r in res["runs"]}
    for s in (3, 4):
        ab, base = by[("attackers", s)], by[("without", s)]
        assert ab["status"] == base["status"] == "completed"
        assert ab["attacker_posts"] > 0 and ab["heard_from_attackers"] > 0
        assert ab["target_heard_of"] > base["target_heard_of"]
        assert ab["heard_hop1"] > base["heard_hop1"]
    d = res["differences"]["attackers"]["target_heard_of"]
    assert d["n"] == 2 and d["mean"] > 0 and d["low"] is not None and d["low"] <= d["mean"] <= d["high"]
    assert res["summary"]["without"]["target_watches"]["n"] == 2
    assert res["differences"]["broken"]["target_heard_of"]["n"] == 0
    assert (tmp_path / "ab" / "world_ab.json").exists()
    text = world_ab_report(res)
    assert "| attackers | 2 |" in text and "Teapot 3000" in text and "hop 1" in text
    plots = world_ab_plots(res, tmp_path / "plots")
    assert {"world_ab_arms.png", "world_ab_differences.png", "world_ab_hops.png"} <= set(plots)
    # a second call reuses the finished runs: same figures
    again = world_ab(scn, {a: arms[a] for a in ("without", "attackers")}, 2, tmp_path / "ab", progress=False,
                     target=TARGET)
    assert again["status"] == "completed"
    assert again["summary"]["attackers"]["target_heard_of"] == res["summary"]["attackers"]["target_heard_of"]


def test_command_line_writes_the_report(tmp_path, capsys):
    from recworld.simulator.studies.sts_world import main

    path = tmp_path / "scn.yaml"
    path.write_text(yaml.safe_dump(coffee_world(duration_days=1, sts={"target": TARGET})))
    assert main([str(path), "--set", "population.size=30", "--seeds", "2", "--share", "0.2", "--out",
                 str(tmp_path / "ab"), "--no-progress"]) == 0
    assert "| shills_0.2 | 2 |" in capsys.readouterr().out
    report = (tmp_path / "ab" / "report.md").read_text()
    assert "Difference from `without`" in report and "plots/world_ab_hops.png" in report
    assert sorted(p.name for p in (tmp_path / "ab").glob("*-seed*")) == [
        "shills_0.2-seed3", "shills_0.2-seed4", "without-seed3", "without-seed4"]


def test_llm_shoppers_read_the_shills_words(tmp_path):
    """Shills among LLM users (scripted server): their posts reach the LLM users' prompts."""
    pytest.importorskip("litellm")
    from recworld.simulator.run import run_scenario
    from recworld.simulator.testing.fakellm import FakeLLMServer
    from recworld.simulator.testing.scripted import answer

    scn = coffee_world(duration_days=0.5, population={
        "size": 12, "activity": {"median_sessions_per_day": 6},
        "groups": [{"share": 0.5, "brain": {"name": "llm", "prompts": "shopping", "item_chars": 120}},
                   {"share": 0.25, "brain": {"name": "shill", "target": TARGET,
                                             "post_messages": ["{target} changed my mornings. 5/5!"]}}]})
    with FakeLLMServer(answer) as srv:
        scn["llm"] = {"model": "openai/fake", "api_base": srv.url, "cache": False, "backoff_s": 0.01,
                      "timeout_s": 5, "retries": 1}
        out = run_scenario(scn, tmp_path / "run", progress=False)
        prompts = [m["content"] for b in srv.requests for m in b["messages"]]
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
    assert any(f"post about {TARGET}: {TARGET} changed my mornings. 5/5!" in p for p in prompts)


def test_item_path_follows_the_target_through_users(tmp_path):
    from recworld.simulator.studies.sts_world import item_path

    _hand_made_run(tmp_path / "run")
    path = item_path(tmp_path / "run", TARGET, attackers=[1])
    assert path["event"].tolist() == ["chat", "heard", "watch", "rate", "chat", "heard", "post", "heard"]
    assert path["user_id"].tolist() == [1, 2, 2, 2, 2, 3, 1, 5]
    heard = path[path["event"] == "heard"]
    assert heard["chain_hop"].fillna(-1).tolist() == [1, 2, -1] and heard["other_id"].tolist() == [1, 2, 4]
    assert heard["graph_hop"].fillna(-1).tolist() == [1, 2, -1]
    assert path["attacker"].tolist() == [True, False, False, False, False, False, True, False]
    assert path.loc[path["event"] == "rate", "value"].tolist() == [2.0]
    shown = item_path(tmp_path / "run", TARGET, attackers=[1], shown=True)
    assert shown.loc[shown["event"] == "shown", "value"].tolist() == [1, 2]


def test_world_ab_interrupted_keeps_what_ran(tmp_path, monkeypatch):
    import recworld.simulator.run as run_module
    from recworld.simulator.studies.sts_world import world_ab

    real, calls = run_module.run_scenario, []

    def stop_second(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(run_module, "run_scenario", stop_second)
    scn = coffee_world(duration_days=0.5, population={"size": 20}, sts={"target": TARGET})
    with pytest.raises(KeyboardInterrupt):
        world_ab(scn, {"a": [], "b": ["recommender.name=random"]}, [5, 6], tmp_path / "ab", progress=False)
    saved = json.loads((tmp_path / "ab" / "world_ab.json").read_text())
    assert saved["status"] == "interrupted" and [r["arm"] for r in saved["runs"]] == ["a"]
    assert saved["summary"]["a"]["target_watches"]["n"] == 1
    with pytest.raises(ValueError, match="population.size"):
        world_ab(scn, {"a": ["population.size=-3"]}, 1, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()          # a bad arm fails before anything runs
