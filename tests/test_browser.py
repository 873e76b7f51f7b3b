"""report.html in a real headless Chromium: pick a user, and what the page shows matches
events.parquet and llm_calls.jsonl; the charts, the social views, the comparison page and
``recworld view`` work; the page loads nothing from anywhere.

Needs Debian's ``chromium`` and ``chromium-driver`` (CI installs them) and the ``selenium``
package (dev extra); Selenium is given the system driver, so nothing is downloaded.  They
skip, naming what is missing, where there is no browser; with RECWORLD_REQUIRE_BROWSER=1 (CI)
a missing browser is an error instead."""

import json
import os
import threading
from pathlib import Path

import pytest
from conftest import tiny_run_scenario as scenario

from recworld.simulator.output.browser import missing

WHY = missing()
if WHY is not None and os.environ.get("RECWORLD_REQUIRE_BROWSER"):       # CI: a skip would hide a gap
    raise RuntimeError(f"RECWORLD_REQUIRE_BROWSER is set but the browser tests cannot run: {WHY}")
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"headless browser tests: {WHY}")

DATA = Path(__file__).resolve().parent / "data"
TIMEOUT = 20


@pytest.fixture(scope="module")
def browser():
    from recworld.simulator.output.browser import Browser

    with Browser(width=1400, height=1000) as b:
        yield b


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A parametric run and an LLM run (scripted answers from a loopback fake server)."""
    from recworld.simulator.run import load_run, run_scenario

    root = tmp_path_factory.mktemp("browser")
    out = {"parametric": load_run(run_scenario(scenario(), root / "parametric", progress=False))}
    pytest.importorskip("litellm")
    from recworld.simulator.testing.fakellm import FakeLLMServer
    from recworld.simulator.testing.scripted import answer

    with FakeLLMServer(answer) as srv:
        scn = scenario(population={"size": 8, "activity": {"median_sessions_per_day": 5}, "brain": {"name": "llm"}})
        scn["llm"] = {"model": "openai/fake", "api_base": srv.url, "cache": False, "backoff_s": 0.01,
                      "timeout_s": 3, "retries": 1}
        out["llm"] = load_run(run_scenario(scn, root / "llm", progress=False))
    return out


def wait(browser, css):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser.driver, TIMEOUT).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def find(browser, css, root=None):
    from selenium.webdriver.common.by import By

    return (root or browser.driver).find_elements(By.CSS_SELECTOR, css)


def open_report(browser, run, fragment=""):
    browser.driver.get((run.path / "report.html").resolve().as_uri() + fragment)
    wait(browser, "body[data-ready='1']")


def pick_user(browser, uid):
    """Go to the Users tab, type the id in the filter and click the user's row."""
    find(browser, "#tab-users")[0].click()
    box = wait(browser, "#user-filter")
    box.clear()
    box.send_keys(str(uid))
    wait(browser, f"#user-table tr[data-user='{uid}']").click()
    return wait(browser, f"#user-head[data-user='{uid}']")


def busiest(run, kinds=("chat", "slate")):
    ev = run.events
    chatty = set(ev.loc[ev["kind"] == "chat", "user_id"]) | set(ev.loc[ev["kind"] == "chat", "other_id"].dropna())
    counts = ev[ev["kind"].isin(kinds)].groupby("user_id").size().sort_values(ascending=False, kind="stable")
    return int(next((u for u in counts.index if u in chatty), counts.index[0]))


def test_user_explorer_shows_what_the_event_log_holds(browser, runs):
    run = runs["parametric"]
    open_report(browser, run)
    assert find(browser, "#status-badge")[0].text == run.metrics["status"] == "completed"
    uid = busiest(run)
    pick_user(browser, uid)
    ev = run.events
    mine = ev[ev["user_id"] == uid]
    detail = find(browser, "#user-detail")[0]
    assert len(find(browser, ".block.session", detail)) == (mine["kind"] == "session_start").sum()
    slates = find(browser, ".entry-slate", detail)
    assert len(slates) == (mine["kind"] == "slate").sum() > 0
    assert sorted(int(s.get_attribute("data-slate")) for s in slates) == sorted(mine.loc[mine["kind"] == "slate",
                                                                                         "slate_id"])
    assert len(find(browser, "li.watched", detail)) == (mine["kind"] == "watch").sum()
    titles = dict(zip(run.items["item_id"], run.items["title"]))
    for s in slates:                                     # each slate lists its items in order
        sid = int(s.get_attribute("data-slate"))
        items = mine[(mine["kind"] == "slate") & (mine["slate_id"] == sid)]["items"].iloc[0]
        shown = [li.text for li in find(browser, "ol.slate li", s)]
        assert len(shown) == len(items) and all(x.startswith(titles[i]) for x, i in zip(shown, items))
        rates = mine[(mine["kind"] == "rate") & (mine["slate_id"] == sid)].set_index("item_id")
        for li in find(browser, "ol.slate li.watched", s):              # in slate order, whatever order watched
            rate = rates.loc[int(li.get_attribute("data-item"))]
            assert f"rated {rate['value']:g}/5" in li.text and (not rate["text"] or rate["text"] in li.text)
    assert len(find(browser, ".entry-search", detail)) == (mine["kind"] == "search").sum()
    chats = ev[(ev["kind"] == "chat") & ((ev["user_id"] == uid) | (ev["other_id"] == uid))]
    shown = [c.text for c in find(browser, ".entry-chat .dialogue", detail)]
    assert len(shown) == len(chats) > 0
    for text in chats["text"]:                           # the whole dialogue, line by line
        assert any(all(line.strip() in s for line in text.splitlines() if line.strip()) for s in shown)
    assert len(find(browser, ".entry-post", detail)) == (mine["kind"] == "post").sum()
    assert len(find(browser, ".entry-read", detail)) == (mine["kind"] == "read_post").sum()
    assert len(find(browser, ".entry-heard", detail)) == (mine["kind"] == "heard").sum()
    # following a link to the chat partner opens the partner's timeline
    partner = find(browser, ".entry-chat a.u", detail)[0]
    other = int(partner.get_attribute("data-user"))
    partner.click()
    wait(browser, f"#user-head[data-user='{other}']")
    assert browser.console_errors() == []


def test_llm_users_show_the_prompt_and_answer_behind_each_decision(browser, runs):
    run = runs["llm"]
    dec = run.decisions()
    pages = dec[(dec["purpose"] == "page") & dec["slate_id"].notna()]
    uid = int(pages.groupby("user_id").size().idxmax())
    open_report(browser, run)
    pick_user(browser, uid)
    find(browser, "#expand-llm")[0].click()                # open every prompt
    detail = find(browser, "#user-detail")[0]
    for _, row in pages[pages["user_id"] == uid].iterrows():
        slate = find(browser, f".entry-slate[data-slate='{int(row['slate_id'])}']", detail)[0]
        answers = [a.text for a in find(browser, "details.llm .llm-answer", slate)]
        assert len(answers) == 1 and row["answer"] in answers[0]
        prompt = find(browser, "details.llm .msg.user", slate)[0].text
        assert row["messages"][-1]["content"].splitlines()[0] in prompt
        watched = [li.get_attribute("data-item") for li in find(browser, "li.watched", slate)]
        assert [int(i) for i in watched] == list(row["watched"] if isinstance(row["watched"], list) else [])
    n_calls = (run.llm_calls["user_id"] == uid).sum()
    shown = find(browser, "details.llm", detail)
    assert len(shown) >= n_calls                            # plus the partner's turns in its chats
    assert find(browser, "details.llm", detail)[0].get_attribute("open") is not None
    assert browser.console_errors() == []


def test_charts_social_views_and_no_network(browser, runs):
    run = runs["parametric"]
    open_report(browser, run, "#series")
    wait(browser, "#chart-ctr svg path.line")
    assert find(browser, "#chart-ctr polygon.band")                    # the CTR's interval band
    for chart in ("#chart-activity", "#chart-diversity", "#chart-lorenz"):
        assert find(browser, f"{chart} svg path.line")
    legend = find(browser, "#chart-activity .legend span[data-series='chats']")[0]
    before = len(find(browser, "#chart-activity path.line"))
    legend.click()                                                     # a legend entry hides its series
    assert len(find(browser, "#chart-activity path.line")) == before - 1
    find(browser, "#tab-social")[0].click()
    wait(browser, "#chat-network")
    ev = run.events
    chatters = set(ev.loc[ev["kind"] == "chat", "user_id"]) | set(ev.loc[ev["kind"] == "chat", "other_id"])
    circles = find(browser, "#chat-network circle")
    assert {int(c.get_attribute("data-user")) for c in circles} == {int(u) for u in chatters}
    heard = ev[ev["kind"] == "heard"]
    rows = {r.get_attribute("data-via"): r.text for r in find(browser, "#heard-summary tr[data-via]")}
    for via, n in heard.groupby("text").size().items():
        assert f"{via} {n}" in rows[via]
    roots = ev.loc[(ev["kind"] == "post") & (ev["value"] == 0), "root_id"]
    assert len(find(browser, "#cascade-table tr.cascade")) == len(roots)
    if len(roots):
        find(browser, "a.cas")[0].click()
        assert find(browser, "tr.tree-row li[data-post]")[0].is_displayed()
    circles[0].click()                                                 # a user in the network opens
    wait(browser, f"#user-head[data-user='{circles[0].get_attribute('data-user')}']")
    for tab in ("overview", "scenario"):
        find(browser, f"#tab-{tab}")[0].click()
    assert "tiny" in wait(browser, "#scenario-yaml").text
    loaded = browser.driver.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })")
    assert loaded == []                                                # nothing fetched: works offline
    assert browser.console_errors() == []


def test_a_user_not_embedded_is_named_and_served_on_demand(browser, runs, tmp_path):
    import shutil

    from recworld.simulator.output.explorer import make_server
    from recworld.simulator.output.html import write_html

    run = runs["parametric"]
    folder = tmp_path / "run"
    shutil.copytree(run.path, folder)
    html = write_html(folder, run, max_users=1).read_text(encoding="utf-8")
    data = json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0])
    embedded = {int(u) for u in data["details"]}
    assert len(embedded) == 1
    uid = int(next(u for u in run.events["user_id"].unique() if int(u) not in embedded))
    browser.driver.get((folder / "report.html").as_uri() + f"#user={uid}")
    assert "recworld view" in wait(browser, "#user-absent").text
    server = make_server(folder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.driver.get(f"http://127.0.0.1:{server.server_address[1]}/#user={uid}")
        wait(browser, f"#user-head[data-user='{uid}']")
        mine = run.events[run.events["user_id"] == uid]
        assert len(find(browser, "#user-detail .entry-slate")) == (mine["kind"] == "slate").sum()
        assert browser.console_errors() == []
    finally:
        server.shutdown()
        server.server_close()


def test_comparison_page(browser, runs, tmp_path):
    from recworld.simulator.output.arms import runs_from_folders, write_arms_html

    table, series = runs_from_folders({"parametric": [runs["parametric"].path], "llm": [runs["llm"].path]})
    path = write_arms_html(tmp_path / "cmp", table, series, title="parametric vs llm users")
    browser.driver.get(path.as_uri())
    wait(browser, "#arms-table tr[data-arm='llm']")
    assert len(find(browser, "#forest svg")) >= 2
    find(browser, "#tab-curves")[0].click()
    wait(browser, "#curve-0 svg path.line")
    find(browser, "#tab-runs")[0].click()
    wait(browser, "#runs-table a")
    links = find(browser, "#runs-table a")
    assert len(links) == 2
    links[0].click()                                                   # each run's own explorer
    wait(browser, "#status-badge")
    assert browser.console_errors() == []


def test_a_run_with_no_events_renders_every_view(browser, tmp_path):
    from recworld.simulator.run import load_run, run_scenario

    scn = scenario(duration_days=0.0001, population={"size": 3, "activity": {"median_sessions_per_day": 1}})
    run = load_run(run_scenario(scn, tmp_path / "empty", progress=False))
    assert run.events.empty
    open_report(browser, run)
    for tab in ("series", "users", "social", "scenario", "overview"):
        find(browser, f"#tab-{tab}")[0].click()
    browser.driver.get((run.path / "report.html").resolve().as_uri() + "#user=424242")
    assert "no user 424242" in wait(browser, "#user-absent").text
    idle = int(run.users["user_id"].iloc[0])
    browser.driver.get((run.path / "report.html").resolve().as_uri() + f"#user={idle}")
    assert "did nothing" in wait(browser, "#user-idle").text
    assert browser.console_errors() == []


def test_a_users_memories_and_reflections_are_in_the_timeline(browser, runs):
    from recworld.simulator.output.memories import read_memories

    run = runs["llm"]
    mem, covered = read_memories(run.path)
    assert covered is None and len(mem)
    calls = run.llm_calls
    insights = calls[(calls["purpose"] == "reflect") & ~calls["fallback"].fillna(False).astype(bool)]
    assert (mem["kind"] == "reflection").sum() == len(insights)      # every insight the LLM gave is remembered
    counts = mem.groupby("user_id").size()
    uid = int(mem.loc[mem["kind"] == "reflection", "user_id"].iloc[0]) if len(insights) else int(counts.idxmax())
    mine = mem[mem["user_id"] == uid]
    open_report(browser, run)
    pick_user(browser, uid)
    detail = find(browser, "#user-detail")[0]
    assert int(find(browser, "#user-memory", detail)[0].get_attribute("data-memories")) == len(mine)
    shown = find(browser, ".entry-memory", detail)
    obs = mine[mine["kind"] == "observation"]
    assert len(shown) == len(obs) > 0
    assert sorted(find(browser, ".mem-text", s)[0].text for s in shown) == sorted(obs["text"])
    stores = [find(browser, ".mem-meta", s)[0].get_attribute("data-store") for s in shown]
    assert sorted(stores) == sorted(obs["store"])
    refl = mine[mine["kind"] == "reflection"]
    texts = [q.text for q in find(browser, ".entry-reflect q.insight", detail)]
    assert sorted(texts) == sorted(t.removeprefix("insight: ") for t in refl["text"])
    box = [cb for cb in find(browser, "input.kindf", detail) if cb.get_attribute("value") == "memory"][0]
    box.click()                                                        # the filter hides them
    assert not any(s.is_displayed() for s in find(browser, ".entry-memory", detail))
    assert browser.console_errors() == []


def test_the_sts_and_fidelity_pages(browser, runs, tmp_path):
    """An STS folder (results from the study's own functions, the two world arms being runs of
    this module) and a fidelity folder on the tiny data: what the pages show is the files."""
    import shutil

    import numpy as np

    from recworld.simulator.output.studies import write_study_html
    from recworld.simulator.studies import fidelity, sts

    out = tmp_path / "sts"
    out.mkdir()
    run = runs["parametric"]
    for arm in ("with", "without"):
        shutil.copytree(run.path, out / f"world_{arm}")
    target = str(run.items["title"].iloc[0])
    w, o = np.array([1, 2, 1, 11]), np.array([4, 2, 7, 11])
    proto = dict(sts.protocol_stats(w, o, 10, seed=1), ranks_with=w.tolist(), ranks_without=o.tolist(), llm_calls=8)
    results = {"scenario": "sts_page", "target": target, "position": "after_description", "model": "openai/fake",
               "status": "completed", "studies": {"main": {
                   "catalog": "tiny", "target": target, "items": 10, "domain": "movie", "query": "q", "sts": "best top",
                   "search": {"sts": "best top", "best_mean_rank": 1.5, "no_sts_mean_rank": 6.0, "calls": 6, "orders": 2,
                              "scored_with": "llm_ranker",
                              "curve": [{"calls": 2, "best_mean_rank": 6.0, "candidate_mean_rank": 6.0},
                                        {"calls": 4, "best_mean_rank": 3.0, "candidate_mean_rank": 3.0},
                                        {"calls": 6, "best_mean_rank": 1.5, "candidate_mean_rank": 1.5}]},
                   "protocol": {"llm_ranker": proto}}},
               "world": dict(sts.world_effect(out / "world_with", out / "world_without", target),
                             recommender="popularity", brains=["parametric"])}
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    browser.driver.get(write_study_html(out, "sts").as_uri())
    row = wait(browser, ".sts-table tr[data-rec='llm_ranker']")
    assert f"{proto['mean_rank_without']:g} → {proto['mean_rank_with']:g}" in row.text
    assert f"{proto['mean_rank_gain']:g} [{proto['mean_rank_gain_ci'][0]:g}, {proto['mean_rank_gain_ci'][1]:g}]" in row.text
    find(browser, "#tab-ranks")[0].click()
    wait(browser, ".ranks[data-rec='llm_ranker'] line.trial")
    lines = find(browser, ".ranks[data-rec='llm_ranker'] line.trial")
    assert [(int(x.get_attribute("data-without")), int(x.get_attribute("data-with"))) for x in lines] == list(zip(o, w))
    bars = {(b.get_attribute("data-series"), b.get_attribute("data-cat")): float(b.get_attribute("data-value"))
            for b in find(browser, ".ranks rect.bar")}
    assert bars[("with STS", "1")] == 2 and bars[("without STS", "absent")] == 1 and bars[("with STS", "2")] == 1
    find(browser, "#tab-search")[0].click()        # a tab opens by the hash: its view is drawn a moment later
    assert wait(browser, "#search-main svg path.line")
    find(browser, "#tab-world")[0].click()
    wait(browser, "#world-table tr[data-key]")
    for key in results["world"]["difference"]:
        cells = find(browser, f"#world-table tr[data-key='{key}'] td")
        for cell, arm in zip(cells[1:3], ("without", "with")):
            v = results["world"][arm][key]
            assert cell.text == "–" if v is None else float(cell.text.replace(",", "")) == pytest.approx(v, abs=1e-3)
    assert browser.console_errors() == []
    find(browser, "#world-with")[0].click()                           # each arm's own explorer
    wait(browser, "#status-badge")
    # fidelity
    fid = tmp_path / "fid"
    fid.mkdir()
    scn = fidelity.fidelity_scenario(None, str(DATA / "movielens_tiny"), None, [])
    fidelity.write_fidelity(fidelity.run_fidelity(scn, fidelity.FidelitySettings(ratios=(1, 2), bootstrap=20)), fid, scn)
    body = json.loads((fid / "fidelity.json").read_text())
    browser.driver.get(write_study_html(fid, "fidelity").as_uri())
    wait(browser, "#fid-table")
    for ratio, res in body["ratios"].items():
        cell = find(browser, f"#fid-table tr[data-ratio='{ratio}'][data-chooser='brain'] td.f1u")[0]
        assert cell.text.startswith(f"{round(res['brain']['per_user']['f1'], 3):g}")
    for tab in ("choices", "ratings", "users"):
        find(browser, f"#tab-{tab}")[0].click()
    wait(browser, "#f1-users tr[data-ratio]")
    bars = find(browser, "#rating-histogram rect.bar[data-series='real (held out)']")
    assert [round(float(b.get_attribute("data-value")), 6) for b in bars] == \
        [round(v, 6) for v in body["ratings"]["histogram"]["real"]]
    assert len(find(browser, "#f1-users tr[data-ratio]")) == len(body["ratios"])
    assert browser.console_errors() == []


def test_the_sts_page_shows_the_logprob_search_and_the_attacks(browser, tmp_path):
    """A study run on the scripted server (a log-probability search, three attacks, two
    defences): the Search tab draws the curve, the Attacks tab has one row per defence and attack
    with the figures of results.json."""
    from test_sts import persuadable, sts_scenario

    from recworld.simulator.studies import sts
    from recworld.simulator.testing.fakellm import FakeLLMServer

    with FakeLLMServer(persuadable) as srv:
        cfg = sts_scenario(srv.url, catalogs=[], optimize={"budget_calls": 10}, trials=3, world=False, text="",
                           attacks=["sts", "instruction", "reviews"], defences=["none", "data_marking"],
                           recommenders=[{"name": "llm_ranker"}])
        res = sts.run_sts(cfg, tmp_path / "sts", progress=False)
    main = res["studies"]["main"]
    assert main["search"]["objective"] == "logprob"
    from recworld.simulator.output.studies import write_study_html

    browser.driver.get(write_study_html(tmp_path / "sts", "sts").as_uri())
    wait(browser, ".sts-table tr[data-rec='llm_ranker']")
    find(browser, "#tab-search")[0].click()        # a tab opens by the hash: its view is drawn a moment later
    assert wait(browser, "#search-main svg path.line")
    find(browser, "#tab-attacks")[0].click()
    wait(browser, ".matrix-table tr[data-attack]")
    rows = find(browser, ".matrix-table tr[data-attack]")
    assert len(rows) == 2 * 3
    for row in rows:
        p = main["matrix"][row.get_attribute("data-defence")]["llm_ranker"]["attacks"][row.get_attribute("data-attack")]
        assert f"{round(p['mean_rank_without'], 2):g} → {round(p['mean_rank_with'], 2):g}" in row.text
    assert browser.console_errors() == []
