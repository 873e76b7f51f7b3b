import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recworld.recommenders.baselines import PopularityRecommender
from recworld.simulator import load_run, run_scenario
from recworld.simulator.output.metrics import gini, impressions
from recworld.simulator.registry import register, unregister

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ["scenario.yaml", "events.parquet", "users.parquet", "items.parquet", "metrics.json",
             "timeseries.csv", "report.md", "plots/ctr_over_time.png", "plots/exposure_lorenz.png",
             "plots/diversity_over_time.png", "plots/activity.png"]


def events_of(path):
    return pd.read_parquet(Path(path) / "events.parquet")


def test_run_writes_every_file_and_load_run_reads_them(small_scenario, tmp_path):
    out = run_scenario(small_scenario, tmp_path / "run", progress=False)
    for f in RUN_FILES:
        assert (out / f).exists(), f
    run = load_run(out)
    assert run.metrics["status"] == "completed"
    assert run.scenario["population"]["size"] == 10
    assert set(run.users["user_id"]) >= set(run.events["user_id"])
    assert len(run.items) == 41
    kinds = set(run.events["kind"])
    assert {"session_start", "slate", "watch", "rate", "session_end"} <= kinds
    assert run.events["time"].is_monotonic_increasing
    assert run.events["time"].max() <= 1440
    report = (out / "report.md").read_text()
    assert "![CTR over time](plots/ctr_over_time.png)" in report and "exposure Gini" in report


def test_same_seed_same_events_other_seed_other_events(small_scenario, tmp_path):
    a = events_of(run_scenario(small_scenario, tmp_path / "a", progress=False))
    b = events_of(run_scenario(small_scenario, tmp_path / "b", progress=False))
    pd.testing.assert_frame_equal(a, b)
    c = events_of(run_scenario(small_scenario, tmp_path / "c", progress=False, overrides=["seed=4"]))
    assert len(a) > 100 and not (len(a) == len(c) and a.equals(c))


def test_flush_size_does_not_change_events(small_scenario, tmp_path):
    a = events_of(run_scenario(small_scenario, tmp_path / "a", progress=False))
    b = events_of(run_scenario(small_scenario, tmp_path / "b", progress=False, overrides=["output.flush_every=100"]))
    pd.testing.assert_frame_equal(a, b)


def test_metrics_agree_with_the_event_log(small_scenario, tmp_path):
    out = run_scenario(small_scenario, tmp_path / "r", progress=False, overrides=["duration_days=2"])
    run = load_run(out)
    ev, m = run.events, run.metrics
    imp = impressions(ev)
    slate_watches = ev[(ev["kind"] == "watch") & ev["slate_id"].notna()]
    assert m["impressions"] == len(imp) == sum(len(x) for x in ev.loc[ev["kind"] == "slate", "items"])
    assert m["ctr"] == pytest.approx(len(slate_watches) / len(imp))
    assert m["sessions"] == (ev["kind"] == "session_start").sum()
    assert m["mean_rating"] == pytest.approx(ev.loc[ev["kind"] == "rate", "value"].mean())
    assert 0 <= m["exposure_gini"] <= 1 and 0 < m["catalog_coverage"] <= 1
    shown = imp["item_id"].nunique()
    assert m["catalog_coverage"] == pytest.approx(shown / 41)
    # every watch came from a slate shown to that user at that time
    sl = ev[ev["kind"] == "slate"].set_index("slate_id")
    for _, w in slate_watches.iterrows():
        s = sl.loc[w["slate_id"]]
        assert s["user_id"] == w["user_id"] and s["items"][w["position"]] == w["item_id"] and s["time"] <= w["time"]
    ts = run.timeseries
    assert ts["sessions"].sum() == m["sessions"]


def test_watching_keeps_users_busy(small_scenario, tmp_path):
    run = load_run(run_scenario(small_scenario, tmp_path / "r", progress=False))
    ev = run.events
    items = run.items.set_index("item_id")["duration"]
    keys = ["user_id", "slate_id", "item_id"]
    w = ev[ev["kind"] == "watch"][keys + ["time", "value"]]
    r = ev[ev["kind"] == "rate"][keys + ["time", "value"]]
    pairs = w.merge(r, on=keys, suffixes=("_watch", "_rate"), validate="one_to_one")
    # every rating follows a watch; only watches still running at the end lack one
    assert len(pairs) == len(r) > 0 and len(w) - len(r) <= 10
    assert np.allclose(pairs["time_rate"] - pairs["time_watch"], pairs["value_watch"])
    liked = pairs["value_rate"].to_numpy() >= 3
    full = items.loc[pairs["item_id"]].to_numpy()
    assert np.allclose(pairs["value_watch"].to_numpy()[liked], full[liked])
    assert (pairs["value_watch"].to_numpy()[~liked] < full[~liked]).all()


def test_social_activity_spreads(tmp_path):
    out = run_scenario(ROOT / "scenarios" / "quickstart.yaml", tmp_path / "q", progress=False)
    run = load_run(out)
    m, ev = run.metrics, run.events
    assert m["chats"] > 0 and m["posts"] > 0 and m["post_reads"] > 0 and m["heard_of"] > 0
    # a post is only read by followers of its poster, after it was posted
    posts = ev[ev["kind"] == "post"].set_index("post_id")
    reads = ev[ev["kind"] == "read_post"]
    assert (reads["time"].to_numpy() >= posts.loc[reads["post_id"], "time"].to_numpy()).all()
    assert (reads["other_id"].to_numpy() == posts.loc[reads["post_id"], "user_id"].to_numpy()).all()


def _shipped():
    """Every shipped scenario; those on the embedded LLM are marked (CI runs them too)."""
    for p in sorted((ROOT / "scenarios").glob("*.yaml")):
        llm = "llm:" in p.read_text() or p.name.startswith(("llm_", "sts_"))
        yield pytest.param(p, id=p.name, marks=[pytest.mark.slow, pytest.mark.local_llm] if llm else [])


@pytest.mark.parametrize("path", list(_shipped()))
def test_every_shipped_scenario_runs(path, tmp_path):
    out = run_scenario(path, tmp_path / "run", progress=False, overrides=[f"llm.cache_path={tmp_path / 'c.sqlite'}"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "completed" and m["sessions"] > 0 and m["watches"] > 0


def test_quickstart_on_full_movielens(ml_full, tmp_path):
    out = run_scenario(ROOT / "scenarios" / "quickstart.yaml", tmp_path / "full", progress=False,
                       overrides=[f"data.path={ml_full}"])
    run = load_run(out)
    assert len(run.items) == 9742 and run.metrics["watches"] > 0


def test_existing_run_folder_is_not_overwritten(small_scenario, tmp_path):
    run_scenario(small_scenario, tmp_path / "r", progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_scenario(small_scenario, tmp_path / "r", progress=False)
    run_scenario(small_scenario, tmp_path / "r", progress=False, overwrite=True)


class Exploding(PopularityRecommender):
    """Serves normally, then fails on its 40th slate (or is interrupted)."""
    name = "exploding"
    error: type = RuntimeError

    def recommend(self, request):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 40:
            raise self.error("recommender exploded")
        return super().recommend(request)


class Interrupted(Exploding):
    name = "interrupted"
    error = KeyboardInterrupt


@pytest.mark.parametrize("cls,status", [(Exploding, "failed"), (Interrupted, "interrupted")])
def test_failed_run_keeps_its_events_and_reports(cls, status, small_scenario, tmp_path):
    register("recommenders", cls.name, cls)
    try:
        with pytest.raises((RuntimeError, KeyboardInterrupt)):
            run_scenario(small_scenario, tmp_path / "r", progress=False, overrides=[f"recommender.name={cls.name}"])
    finally:
        unregister("recommenders", cls.name)
    run = load_run(tmp_path / "r")
    assert run.metrics["status"] == status
    assert (run.events["kind"] == "slate").sum() == 39          # every slate before the failure
    assert (tmp_path / "r" / "report.md").exists()
    if status == "failed":
        assert "recommender exploded" in (tmp_path / "r" / "error.txt").read_text()


@pytest.mark.slow
def test_killed_run_keeps_flushed_events(tmp_path):
    """kill -9 in the middle of a run: the parts flushed so far can still be loaded."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "recworld.simulator.cli", "run", str(ROOT / "scenarios" / "synthetic.yaml"), "--out", str(out),
           "--no-progress", "--set", "duration_days=60", "--set", "output.flush_every=500"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list((out / "events.parts").glob("part-*.arrow"))) < 3:
            time.sleep(0.1)
        assert proc.poll() is None, "run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = load_run(out)
    assert len(run.events) >= 1500 and run.metrics == {}
    assert run.events["time"].is_monotonic_increasing


def test_gini_reference_values():
    assert gini(np.ones(10)) == pytest.approx(0.0)
    assert gini(np.r_[np.zeros(99), 1.0]) == pytest.approx(0.99)
    assert gini(np.zeros(5)) == 0.0


def _slates(items, slate_ids):
    n = len(items)
    return pd.DataFrame({
        "time": [float(i) for i in range(n)], "kind": ["slate"] * n,
        "user_id": pd.array(range(10, 10 + n), dtype="Int64"), "slate_id": pd.array(slate_ids, dtype="Int64"),
        "page": pd.array([0] * n, dtype="Int32"), "items": items})


def _exploded(ev):
    """impressions as DataFrame.explode makes them (the reference the numpy path must match)."""
    from recworld.simulator.output.metrics import _impressions_explode

    return _impressions_explode(ev.loc[ev["kind"] == "slate", ["time", "user_id", "slate_id", "page", "items"]])


@pytest.mark.parametrize("items, slate_ids", [
    ([np.array([5, 3, 9]), np.array([], dtype=np.int64), np.array([7])], [1, 2, 3]),   # an empty slate
    ([[4, 1], [2, 8, 6]], [1, 2]),                                                     # plain lists
    ([np.array([5, 3]), np.array([2, 1])], [7, 7]),                                    # a repeated slate id
    ([np.array([5, 3]), None], [1, 2]),                                                # a slate without items
])
def test_impressions_match_the_exploded_slates(items, slate_ids):
    ev = _slates(items, slate_ids)
    got = impressions(ev)
    pd.testing.assert_frame_equal(got, _exploded(ev), check_exact=True)
    assert len(got) == sum(len(x) for x in items if x is not None)


def test_impressions_of_a_run_match_the_exploded_slates(small_scenario, tmp_path):
    ev = load_run(run_scenario(small_scenario, tmp_path / "r", progress=False)).events
    got = impressions(ev)
    assert len(got) > 100
    pd.testing.assert_frame_equal(got, _exploded(ev), check_exact=True)
