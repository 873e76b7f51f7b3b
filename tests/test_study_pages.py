"""The STS and fidelity pages (report.html of `recworld sts` / `recworld fidelity`), `recworld
report FOLDER`, and memories.parquet (what users remembered) in run folders and the user explorer."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_run_scenario as scenario

from recworld.simulator.cli import main
from recworld.simulator.run import load_run, run_scenario

DATA = Path(__file__).resolve().parent / "data"
DATA_RE = re.compile(r'<script id="recworld-data" type="application/json">(.*?)</script>', re.S)


def page_data(path) -> dict:
    m = DATA_RE.search(Path(path).read_text(encoding="utf-8"))
    assert m, "no embedded data"
    return json.loads(m.group(1))


# ----------------------------------------------------------------------------- fidelity


@pytest.fixture(scope="module")
def fidelity_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fid") / "fid"
    assert main(["fidelity", "--data", str(DATA / "movielens_tiny"), "--out", str(out), "--ratios", "1,2",
                 "--bootstrap", "30", "--no-progress"]) == 0
    return out


def test_recworld_fidelity_writes_its_page_from_its_files(fidelity_dir, capsys):
    d = page_data(fidelity_dir / "report.html")
    body = json.loads((fidelity_dir / "fidelity.json").read_text())
    assert d["kind"] == "fidelity" and set(d["result"]["ratios"]) == set(body["ratios"]) == {"1:1", "1:2"}
    for ratio, res in body["ratios"].items():
        for chooser in ("brain", "popularity", "genre", "random"):
            assert d["result"]["ratios"][ratio][chooser]["micro"] == pytest.approx(res[chooser]["micro"])
            assert d["result"]["ratios"][ratio][chooser]["per_user_ci"]["f1"] == pytest.approx(res[chooser]["per_user_ci"]["f1"])
    assert d["result"]["ratings"]["histogram"]["real"] == pytest.approx(body["ratings"]["histogram"]["real"])
    # the per-user F1 distribution, recomputed here from the CSV
    users = pd.read_csv(fidelity_dir / "fidelity_users.csv")
    for ratio, g in users.groupby("ratio"):
        f1 = (2 * g["hits"] / (g["picks"] + g["positives"])).fillna(0.0)
        got = d["per_user_f1"][f"1:{ratio}"]
        assert got["users"] == len(g) == sum(got["counts"])
        assert got["mean"] == pytest.approx(f1.mean()) and got["median"] == pytest.approx(f1.median())
        assert got["zero"] == pytest.approx((f1 == 0).mean())
    # an earlier fidelity folder with its page can be replaced
    assert main(["fidelity", "--data", str(DATA / "movielens_tiny"), "--out", str(fidelity_dir), "--ratios", "1,2",
                 "--bootstrap", "30", "--no-progress", "--overwrite"]) == 0
    assert "page:" in capsys.readouterr().out


def test_per_user_f1():
    from recworld.simulator.output.studies import per_user_f1

    got = per_user_f1([{"ratio": "1", "hits": "1", "picks": "2", "positives": "2"},      # F1 0.5
                       {"ratio": "1", "hits": "0", "picks": "0", "positives": "3"},      # 0
                       {"ratio": "1", "hits": "2", "picks": "2", "positives": "2"},      # 1
                       {"ratio": "3", "hits": "0", "picks": "0", "positives": "0"}])     # 0 (nothing either way)
    assert got["1:1"]["counts"] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert got["1:1"]["mean"] == pytest.approx(0.5) and got["1:1"]["median"] == 0.5
    assert got["1:1"]["zero"] == pytest.approx(1 / 3) and got["1:3"]["zero"] == 1.0


# ----------------------------------------------------------------------------- sts


def sts_yaml(tmp_path, url) -> Path:
    import yaml

    scn = {"name": "sts_page", "seed": 2, "duration_days": 0.25,
           "data": {"source": "products", "path": "coffee_machines"},
           "population": {"size": 6},
           "recommender": {"name": "llm_ranker", "candidates": 10, "domain": "coffee machine"},
           "session": {"page_size": 3, "max_pages": 1},
           "llm": {"model": "openai/fake", "api_base": url, "cache": False, "retries": 0},
           "sts": {"target": "ColdBrew Master", "text": "best", "trials": 3, "recommenders": [{"name": "llm_ranker"}],
                   "optimize": {"budget_calls": 6, "orders": 2, "length": 2}}}
    path = tmp_path / "sts.yaml"
    path.write_text(yaml.safe_dump(scn), encoding="utf-8")
    return path


def test_recworld_sts_writes_its_page_also_when_stopped(tmp_path, monkeypatch):
    pytest.importorskip("litellm")
    from recworld.simulator.studies import sts
    from recworld.simulator.testing.fakellm import FakeLLMServer
    from test_sts import persuadable

    with FakeLLMServer(persuadable) as srv:
        assert main(["sts", str(sts_yaml(tmp_path, srv.url)), "--out", str(tmp_path / "s"), "--no-world",
                     "--no-progress"]) == 0
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    d = page_data(tmp_path / "s" / "report.html")
    assert d["kind"] == "sts" and d["status"] == "completed" and d["world"] is None
    [study] = d["studies"]
    p = res["studies"]["main"]["protocol"]["llm_ranker"]
    [rec] = study["recommenders"]
    assert rec["trials_paired"] == [[o, w] for o, w in zip(p["ranks_without"], p["ranks_with"])]
    assert rec["mean_rank_gain_ci"] == p["mean_rank_gain_ci"] and rec["rank_distribution"] == p["rank_distribution"]
    assert study["search"]["curve"] == res["studies"]["main"]["search"]["curve"] and study["sts"] == res["studies"]["main"]["sts"]

    # a study stopped after its first results still gets its page, with its status
    def stopped(scenario, out, overrides=None, progress=True, overwrite=False):
        (Path(out) / "results.json").write_text(json.dumps(dict(res, status="interrupted")), encoding="utf-8")
        raise KeyboardInterrupt

    monkeypatch.setattr(sts, "run_sts", stopped)
    assert main(["sts", str(tmp_path / "sts.yaml"), "--out", str(tmp_path / "stopped"), "--no-progress"]) == 130
    assert page_data(tmp_path / "stopped" / "report.html")["status"] == "interrupted"


# ----------------------------------------------------------------------------- recworld report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return run_scenario(scenario(), tmp_path_factory.mktemp("mem") / "r", progress=False)


def test_recworld_report_rebuilds_any_output_folder(run_dir, fidelity_dir, tmp_path, capsys):
    import shutil

    run_dir = Path(shutil.copytree(run_dir, tmp_path / "run"))
    (run_dir / "report.html").unlink()
    assert main(["report", str(run_dir), "--users", "2"]) == 0
    assert len(page_data(run_dir / "report.html")["details"]) == 2
    before = page_data(fidelity_dir / "report.html")
    (fidelity_dir / "report.html").unlink()
    assert main(["report", str(fidelity_dir)]) == 0
    assert page_data(fidelity_dir / "report.html") == before
    assert "report (fidelity)" in capsys.readouterr().out
    # a folder without a marker is recognised by its files
    plain = tmp_path / "copy"
    plain.mkdir()
    for f in ("fidelity.json", "fidelity_users.csv"):
        (plain / f).write_bytes((fidelity_dir / f).read_bytes())
    assert main(["report", str(plain)]) == 0 and (plain / "report.html").exists()
    assert main(["report", str(tmp_path)]) == 2
    assert "not a RecWorld output folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- memories


def test_memories_are_kept_with_the_run(run_dir):
    from recworld.simulator.output.memories import read_memories

    run = load_run(run_dir)
    mem, covered = read_memories(run.path)
    assert covered is None and len(mem) > 0
    assert set(mem["kind"]) == {"observation"} and set(mem["store"]) == {"recent"}   # parametric: no brain memory
    assert mem["importance"].isna().all()
    ev = run.events
    titles = dict(zip(run.items["item_id"], run.items["title"]))
    rates = ev[ev["kind"] == "rate"]
    for uid, g in mem.groupby("user_id"):
        assert len(g) <= 50                                     # the world keeps the last 50
        mine = rates[rates["user_id"] == uid]                   # a watch is remembered when it is rated
        expected = {(round(t, 6), f"watched {titles[i]} and rated it {v:g}/5" + (f" ({f})" if isinstance(f, str) else ""))
                    for t, i, v, f in zip(mine["time"], mine["item_id"], mine["value"], mine["text"])}
        watched = g[g["text"].str.startswith("watched ")]
        assert {(round(t, 6), x) for t, x in zip(watched["time"], watched["text"])} <= expected
        if len(g) < 50:                                         # nothing dropped yet: every watch is remembered
            assert len(watched) == len(mine)
    # the explorer shows them in the user's timeline
    d = page_data(run.path / "report.html")
    uid, detail = next(iter(d["details"].items()))
    entries = [e for b in detail["blocks"] for e in b["e"] if e["k"] == "memory"]
    assert detail["memory"]["n"] == len(entries) == int((mem["user_id"] == int(uid)).sum())


def test_an_interrupted_run_keeps_its_memories(tmp_path):
    from recworld.recommenders.baselines import PopularityRecommender
    from recworld.simulator.output.memories import read_memories
    from recworld.simulator.registry import register, unregister

    class Interrupted(PopularityRecommender):
        name = "interrupted_mem"

        def recommend(self, request):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 30:
                raise KeyboardInterrupt
            return super().recommend(request)

    register("recommenders", Interrupted.name, Interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_scenario(scenario(), tmp_path / "r", progress=False, overrides=[f"recommender.name={Interrupted.name}"])
    finally:
        unregister("recommenders", Interrupted.name)
    run = load_run(tmp_path / "r")
    assert run.metrics["status"] == "interrupted"
    mem, _ = read_memories(run.path)
    rated = run.events[run.events["kind"] == "rate"]
    assert len(mem) > 0 and mem["time"].max() <= run.events["time"].max() + 1e-9
    assert (mem["text"].str.startswith("watched ")).sum() == len(rated)       # few enough: none dropped yet


def test_memory_rows_of_an_llm_brain():
    """The brain's memory gives each memory's importance and where it is; what the world
    remembered since the brain last looked, and what the brain forgot, are told apart."""
    import numpy as np

    from recworld.agents.memory import Memory, MemoryParams
    from recworld.simulator.output.memories import memory_rows
    from recworld.simulator.protocols import UserState

    st = UserState(0, 7, np.random.default_rng(0))
    mem = st.extra["memory"] = Memory(MemoryParams(short_term=2, promote_importance=0.5))
    for t, text in enumerate(["watched A and rated it 5/5", "read user 3's post about B", "chatted with user 4",
                              "read user 5's post about C"]):
        st.remember(float(t), text)
    for t, text in st.new_memories(0):
        mem.perceive(t, text)
    st.extra["memory_seen"] = st.remembered
    mem.consolidate()
    mem.add_insight(4.0, "insight: I like A")
    st.remember(5.0, "watched D and rated it 2/5")              # not perceived yet
    rows = {r[3]: r for r in memory_rows(st)}
    assert rows["watched A and rated it 5/5"][4:] == (0.9, "long_term")
    assert rows["read user 3's post about B"][4:] == (None, "forgotten")   # unimportant: dropped from short-term
    assert rows["chatted with user 4"][5] == "short_term" and rows["read user 5's post about C"][5] == "short_term"
    assert rows["insight: I like A"][2:] == ("reflection", "insight: I like A", 0.9, "long_term")
    assert rows["watched D and rated it 2/5"][4:] == (None, "not_perceived")
    assert [r[1] for r in memory_rows(st)] == sorted(r[1] for r in memory_rows(st))
    assert all(r[0] == 7 for r in rows.values())
