"""report.html: a self-contained explorer in every run folder, its data checked against the
event log; the comparison page; recworld view; the static plots' bands."""

import json
import re
import threading
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_run_scenario as scenario

from recworld.simulator.run import load_run, run_scenario


DATA_RE = re.compile(r'<script id="recworld-data" type="application/json">(.*?)</script>', re.S)


def page_data(path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = DATA_RE.search(text)
    assert m, "no embedded data"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return run_scenario(scenario(), tmp_path_factory.mktemp("html") / "run", progress=False)


def timeline_entries(detail, kind=None):
    out = []
    for b in detail["blocks"]:
        out += [e for e in b["e"] if kind is None or e["k"] == kind]
    return out


def test_every_run_folder_gets_a_self_contained_report(run_dir):
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    # offline: nothing loaded from anywhere (no external scripts, styles, images or fonts)
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=", html, re.I)
    assert not re.search(r"url\(\s*['\"]?https?:", html, re.I) and "@import" not in html
    assert "default-src 'none'" in html                       # the page may not fetch anything
    assert "report.html" in (run_dir / "report.md").read_text()
    d = page_data(run_dir / "report.html")
    m = json.loads((run_dir / "metrics.json").read_text())
    assert d["status"] == m["status"] == "completed"
    assert d["metrics"]["ctr"] == pytest.approx(m["ctr"]) and d["provenance"] == m["provenance"]
    ts = pd.read_csv(run_dir / "timeseries.csv")
    assert len(d["timeseries"]["start_minute"]) == len(ts)
    lo, hi, ctr = (np.array(d["timeseries"]["cols"][c], dtype=float) for c in ("ctr_low", "ctr_high", "ctr"))
    ok = ~np.isnan(ctr)
    assert (lo[ok] <= ctr[ok] + 1e-9).all() and (ctr[ok] <= hi[ok] + 1e-9).all()
    assert d["lorenz"]["x"][0] == 0 and d["lorenz"]["y"][-1] == pytest.approx(1.0)


def test_user_timelines_match_the_event_log(run_dir):
    run = load_run(run_dir)
    d = page_data(run_dir / "report.html")
    ev = run.events
    assert d["embedded"]["users"] == ev["user_id"].nunique() == len(d["details"])      # small run: all of them
    index = {r[0]: dict(zip(d["users"]["cols"], r)) for r in d["users"]["rows"]}
    for uid, detail in d["details"].items():
        uid = int(uid)
        mine = ev[ev["user_id"] == uid]
        slates = timeline_entries(detail, "slate")
        assert sorted(s["id"] for s in slates) == sorted(mine.loc[mine["kind"] == "slate", "slate_id"].tolist())
        for s in slates:                     # each slate as shown, and what was watched from it
            row = mine[(mine["kind"] == "slate") & (mine["slate_id"] == s["id"])].iloc[0]
            assert s["it"] == list(row["items"])
            w = mine[(mine["kind"] == "watch") & (mine["slate_id"] == s["id"])]
            assert [x["i"] for x in s["w"]] == w["item_id"].tolist()
            r = mine[(mine["kind"] == "rate") & (mine["slate_id"] == s["id"])]
            assert [x["r"] for x in s["w"] if x["r"] is not None] == r["value"].tolist()
        assert len(timeline_entries(detail, "search")) == (mine["kind"] == "search").sum()
        assert len(timeline_entries(detail, "post")) == (mine["kind"] == "post").sum()
        assert len(timeline_entries(detail, "read")) == (mine["kind"] == "read_post").sum()
        chats = ev[(ev["kind"] == "chat") & ((ev["user_id"] == uid) | (ev["other_id"] == uid))]
        shown = timeline_entries(detail, "chat")
        assert sorted(c["text"] for c in shown) == sorted(chats["text"].tolist())       # the whole dialogue
        sessions = [b for b in detail["blocks"] if b["s"] is not None]
        assert len(sessions) == (mine["kind"] == "session_start").sum() == index[uid]["sessions"]
        assert index[uid]["watches"] == (mine["kind"] == "watch").sum()
        for e in timeline_entries(detail, "heard"):        # hearing -> watch: a watch at or after it
            later = mine[(mine["kind"] == "watch") & (mine["item_id"] == e["i"]) & (mine["time"] >= e["t"] - 1e-3)]
            assert (e["watched"] is not None) == (len(later) > 0)
        assert all(str(i) in d["items"] for s in slates for i in s["it"])          # every item has its title


def test_social_views_match_the_event_log(run_dir):
    run = load_run(run_dir)
    ev = run.events
    social = page_data(run_dir / "report.html")["social"]
    net = social["chat_network"]
    chats = ev[ev["kind"] == "chat"]
    assert net["chats"] == len(chats) and sum(e[2] for e in net["edges"]) == len(chats)
    posts = ev[ev["kind"] == "post"]
    cascades = social["cascades"]["list"]
    assert sum(c["posts"] for c in cascades) == len(posts)
    for c in cascades:
        reads = ev[(ev["kind"] == "read_post") & (ev["root_id"] == c["root"])]
        assert c["reach"] == reads["user_id"].nunique()
        for n in c["nodes"]:
            assert n["hop"] == 0 or n["parent"] in {x["post"] for x in c["nodes"]}
    heard = ev[ev["kind"] == "heard"]
    assert sum(r["heard"] for r in social["heard"]["by_channel"]) == len(heard)


def test_the_embedded_sample_is_bounded_in_users_and_bytes(run_dir):
    from recworld.simulator.output.html import write_html
    from recworld.simulator.output.view import RunView, dumps

    view = RunView(load_run(run_dir))
    b = view.bundle(max_users=3)
    assert len(b["details"]) == 3 and b["embedded"]["of"] == len(b["users"]["rows"])
    sizes = sorted(len(dumps(view.user(u))) for u in view.by_user)
    b = view.bundle(max_users=100, max_bytes=sizes[0] + sizes[1])
    assert 1 <= len(b["details"]) <= 2 and b["embedded"]["bytes"] <= sizes[0] + sizes[1]
    assert view.bundle(max_users=3)["details"].keys() == view.bundle(max_users=3)["details"].keys()   # seeded
    small = write_html(run_dir, load_run(run_dir), max_users=0, name="small.html")
    assert page_data(small)["details"] == {} and small.stat().st_size < (run_dir / "report.html").stat().st_size


def test_scenario_setting_for_embedded_users(tmp_path):
    from recworld.simulator.output.html import write_html

    import yaml

    out = run_scenario(scenario(), tmp_path / "run", progress=False)
    scn = yaml.safe_load((out / "scenario.yaml").read_text())
    scn.setdefault("output", {})["html_users"] = 2          # read from the folder's resolved scenario
    (out / "scenario.yaml").write_text(yaml.safe_dump(scn))
    assert len(page_data(write_html(out, load_run(out)))["details"]) == 2


def test_text_from_the_run_cannot_break_out_of_the_page(run_dir, tmp_path):
    import shutil

    from recworld.simulator.output.html import write_html

    out = tmp_path / "copy"
    shutil.copytree(run_dir, out)
    items = pd.read_parquet(out / "items.parquet")
    evil = "</script><script>window.PWNED=1</script><!-- & \u2028"
    items["title"] = evil
    items.to_parquet(out / "items.parquet", index=False)
    html = write_html(out, load_run(out)).read_text(encoding="utf-8")
    body = DATA_RE.search(html).group(1)
    assert "</script" not in body.lower() and "<!--" not in body
    assert page_data(out / "report.html")["items"][next(iter(page_data(out / "report.html")["items"]))][0] == evil


def test_a_failed_explorer_does_not_fail_the_run(tmp_path, monkeypatch, caplog):
    import recworld.simulator.output.html as h

    def broken(*a, **k):
        raise RuntimeError("explorer broke")
    monkeypatch.setattr(h, "write_html", broken)
    out = run_scenario(scenario(), tmp_path / "run", progress=False)
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
    assert not (out / "report.html").exists() and "could not write report.html" in caplog.text


# ----------------------------------------------------------------------------- LLM users


def test_llm_decisions_are_shown_with_their_prompt_and_answer(tmp_path):
    pytest.importorskip("litellm")
    from recworld.simulator.testing.fakellm import FakeLLMServer
    from recworld.simulator.testing.scripted import answer

    with FakeLLMServer(answer) as srv:
        scn = scenario(population={"size": 8, "activity": {"median_sessions_per_day": 5}, "brain": {"name": "llm"}})
        scn["llm"] = {"model": "openai/fake", "api_base": srv.url, "cache": False, "backoff_s": 0.01, "timeout_s": 3,
                      "retries": 1}
        out = run_scenario(scn, tmp_path / "run", progress=False)
    run = load_run(out)
    d = page_data(out / "report.html")
    assert d["llm"]["requests"] > 0
    dec = run.decisions()
    pages = dec[dec["purpose"] == "page"].dropna(subset=["slate_id"])
    checked = 0
    for uid, detail in d["details"].items():
        shown = {s["id"]: s for s in timeline_entries(detail, "slate")}
        for _, row in pages[pages["user_id"] == int(uid)].iterrows():
            s = shown[int(row["slate_id"])]
            assert [c["a"] for c in s["llm"]] == [row["answer"]]           # the answer behind this slate's picks
            assert s["llm"][0]["m"][-1][1] == row["messages"][-1]["content"]  # and its prompt
            checked += 1
        calls = run.llm_calls[run.llm_calls["user_id"] == int(uid)]
        assert detail["persona"] == calls["messages"].iloc[0][0]["content"]
        every = [c for b in detail["blocks"] for c in (b.get("llm") or [])]
        every += [c for e in timeline_entries(detail) for c in (e.get("llm") or []) if c.get("u") == int(uid)]
        assert len({c["n"] for c in every}) == len(calls)                   # every call of the user, once
        for e in timeline_entries(detail, "chat"):
            assert e.get("llm") and len(e["llm"]) == len(e["text"].splitlines())   # each turn's prompt
        for e in timeline_entries(detail, "reflect"):
            assert e["insight"]
    assert checked == len(pages[pages["user_id"].isin([int(u) for u in d["details"]])]) > 0


# ----------------------------------------------------------------------------- recworld view


def test_view_serves_every_user_on_demand(run_dir):
    from recworld.simulator.output.explorer import make_server

    server = make_server(run_dir, "127.0.0.1", 0)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        page = urllib.request.urlopen(base + "/", timeout=10).read().decode()
        data = json.loads(DATA_RE.search(page).group(1))
        assert data["served"] and data["details"] == {}
        run = load_run(run_dir)
        uid = int(run.events["user_id"].iloc[0])
        user = json.loads(urllib.request.urlopen(f"{base}/user/{uid}.json", timeout=10).read())
        assert user["id"] == uid
        mine = run.events[run.events["user_id"] == uid]
        assert len(timeline_entries(user, "slate")) == (mine["kind"] == "slate").sum()
        for bad, code in (("/user/999999999.json", 404), ("/user/x.json", 400), ("/plots/", 404)):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + bad, timeout=10)
            assert e.value.code == code
        assert urllib.request.urlopen(base + "/metrics.json", timeout=10).status == 200
    finally:
        server.shutdown()
        server.server_close()


def test_view_write_rewrites_the_report(run_dir, tmp_path, capsys):
    import argparse
    import shutil

    from recworld.simulator.output import explorer, view
    from recworld.simulator.output.explorer import add_view_arguments, cmd_view

    assert explorer._DEFAULT_USERS == view.DEFAULT_USERS          # the help text's default is the real one
    out = tmp_path / "copy"
    shutil.copytree(run_dir, out)
    (out / "report.html").unlink()
    p = argparse.ArgumentParser()
    add_view_arguments(p)
    assert cmd_view(p.parse_args([str(out), "--write", "--users", "2"])) == 0
    assert len(page_data(out / "report.html")["details"]) == 2 and "report:" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cmd_view(p.parse_args([str(tmp_path / "nope"), "--write"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no events.parquet"):
        cmd_view(p.parse_args([str(tmp_path / "empty"), "--write"]))


# ----------------------------------------------------------------------------- comparisons


def arms_runs():
    rng = np.random.default_rng(0)
    rows = []
    for arm, mu in (("random", 0.03), ("popularity", 0.06), ("mf", 0.05)):
        for seed in range(4):
            rows.append({"arm": arm, "seed": seed, "status": "completed",
                         "ctr": mu + 0.002 * seed + rng.normal(0, 0.001), "watches": 100 + 10 * seed})
    rows.append({"arm": "mf", "seed": 9, "status": "failed", "ctr": 99.0, "watches": 0})      # not summarised
    return pd.DataFrame(rows)


def test_arms_report_has_intervals_over_seeds(tmp_path):
    from scipy import stats

    from recworld.simulator.output.arms import write_arms_html

    runs = arms_runs()
    series = {arm: [pd.DataFrame({"start_minute": [0.0, 60.0], "ctr": [0.01 * k, 0.02 * k + s]}) for s in range(3)]
              for k, arm in enumerate(["random", "popularity", "mf"], 1)}
    path = write_arms_html(tmp_path / "cmp", runs, series, baseline="random", title="three arms")
    d = page_data(path)
    assert d["kind"] == "arms" and d["arms"] == ["random", "popularity", "mf"]
    assert set(d["metrics"]) == {"ctr", "watches"}
    cell = next(r for r in d["summary"] if r["arm"] == "popularity" and r["metric"] == "ctr")
    x = runs[(runs["arm"] == "popularity")]["ctr"].to_numpy()
    half = stats.t.ppf(0.975, 3) * x.std(ddof=1) / 2
    assert cell["n"] == 4 and cell["mean"] == pytest.approx(x.mean())
    assert (cell["low"], cell["high"]) == pytest.approx((x.mean() - half, x.mean() + half))
    assert next(r for r in d["summary"] if r["arm"] == "mf" and r["metric"] == "ctr")["n"] == 4   # failed run left out
    diff = next(r for r in d["differences"] if r["arm"] == "popularity" and r["metric"] == "ctr")
    assert diff["low"] > 0                                     # clearly better than random, seed by seed
    curve = next(c for c in d["curves"] if c["column"] == "ctr")
    assert curve["arms"]["mf"]["n"] == 3 and curve["arms"]["mf"]["low"][1] < curve["arms"]["mf"]["mean"][1]


def test_arms_from_run_folders_link_to_their_explorers(run_dir, tmp_path):
    from recworld.simulator.output.arms import runs_from_folders, write_arms_html

    runs, series = runs_from_folders({"popularity": [run_dir]})
    assert runs.loc[0, "status"] == "completed" and runs.loc[0, "ctr"] == pytest.approx(
        json.loads((run_dir / "metrics.json").read_text())["ctr"])
    d = page_data(write_arms_html(tmp_path / "cmp", runs, series))
    assert d["runs"][0]["report"].endswith("report.html")
    one = next(r for r in d["summary"] if r["metric"] == "ctr")
    assert one["n"] == 1 and one["low"] is None                  # one seed: no interval


# ----------------------------------------------------------------------------- static plots


def test_static_plots_ctr_band_and_arm_bands(run_dir, tmp_path):
    from recworld.simulator.output.report import ctr_interval, plot_bands, wilson

    lo, hi = wilson(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert lo[0] == 0 and 0 < hi[0] < 0.35 and lo[1] < 0.5 < hi[1] and hi[2] == pytest.approx(1.0)
    lo, hi = wilson(np.array([0]), np.array([0]))
    assert np.isnan(lo[0]) and np.isnan(hi[0])
    ts = pd.read_csv(run_dir / "timeseries.csv")
    lo, hi = ctr_interval(ts)
    ok = ts["ctr"].notna().to_numpy()
    assert (lo[ok] <= ts["ctr"][ok] + 1e-12).all() and (ts["ctr"][ok] <= hi[ok] + 1e-12).all()
    assert all((run_dir / "plots" / f).exists() for f in ("ctr_over_time.png", "exposure_lorenz.png",
                                                          "diversity_over_time.png", "activity.png"))
    p = plot_bands({"a": [ts, ts.assign(ctr=ts["ctr"] * 1.1)], "b": [ts]}, "ctr", tmp_path / "bands.png")
    assert p.exists() and p.stat().st_size > 1000
    assert plot_bands({"a": [ts]}, "no_such_column", tmp_path / "none.png") is None


def test_each_bins_ctr_is_of_the_slates_shown_in_it(run_dir):
    """A slate's watches count in its slate's bin, also those watched one after another into
    the next bin: every bin's CTR is at most 1 and the bins add up to every slate watch."""
    run = load_run(run_dir)
    ts, ev = run.timeseries, run.events
    watches = ev[(ev["kind"] == "watch") & ev["slate_id"].notna()]
    assert (ts["ctr"].dropna() <= 1).all()
    assert (ts["ctr"].fillna(0) * ts["impressions"]).round().sum() == len(watches)
    slates = ev[ev["kind"] == "slate"].set_index("slate_id")["time"]
    bin_of = lambda t: min(int(t // (ts["start_minute"].iloc[1] - ts["start_minute"].iloc[0])), len(ts) - 1)  # noqa: E731
    crossed = sum(bin_of(t) != bin_of(slates[s]) for t, s in zip(watches["time"], watches["slate_id"]))
    assert crossed > 0                          # the case this is about happens in this run


def test_user_timelines_are_made_when_asked_for(run_dir, monkeypatch):
    """A big run's events as one dict each would not fit in memory: the explorer makes a user's
    records when that user is shown, in the log's order, and nothing per event up front."""
    from recworld.simulator.output import view as V

    real, made = V._records, []
    monkeypatch.setattr(V, "_records", lambda df, cols: (cols is V._EVENT_COLS and made.append(len(df))) or real(df, cols))
    v = V.RunView(load_run(run_dir))
    assert made == []
    ev = v.events
    users = ev["user_id"].astype("int64")
    assert list(v.by_user) == list(dict.fromkeys(users.tolist()))       # by first event, as before
    assert len(v.by_user) == users.nunique() and -5 not in v.by_user and "x" not in v.by_user
    for uid in list(v.by_user)[:8]:
        assert v.by_user[uid] == real(ev[users == uid], V._EVENT_COLS)
    assert made and sum(made) < len(ev)


def test_view_indexes_match_pandas_groupby():
    """The explorer's lazy indexes give what the pandas groupby they replace gives."""
    import numpy as np
    import pandas as pd

    from recworld.simulator.output.view import _Groups, _readers, _WatchTimes

    rng = np.random.default_rng(5)
    n = 400
    frame = pd.DataFrame({
        "time": np.sort(rng.random(n) * 100),
        "user_id": pd.array(rng.integers(0, 30, n), dtype="Int64"),
        "item_id": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 12, n)), dtype="Int64"),
        "post_id": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 40, n)), dtype="Int64"),
        "text": pd.array(rng.choice(["a", "b", None], n), dtype="str"),
    })
    groups = _Groups(frame, "item_id")
    expected = dict(iter(frame.groupby("item_id")))
    assert len(groups) == len(expected)
    for key, g in expected.items():
        pd.testing.assert_frame_equal(groups.get(key), g)
    assert groups.get(999) is None and groups.get(pd.NA) is None

    readers = frame.groupby("post_id")["user_id"].agg(list).to_dict()
    assert _readers(frame) == {int(k): [int(u) for u in v] for k, v in readers.items()}

    times: dict = {}
    for u, i, t in zip(frame["user_id"], frame["item_id"], frame["time"]):
        if i is not pd.NA:
            times.setdefault((int(u), int(i)), []).append(float(t))
    wt = _WatchTimes(frame)
    for u in range(32):
        for i in range(14):
            assert wt.get((u, i)) == times.get((u, i))
