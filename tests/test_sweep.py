"""`recworld sweep`: the plan, in-process runs, intervals, failures and retries, resuming,
and the determinism promise (a run in a sweep has the events of the same run alone)."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from recworld.recommenders.baselines import PopularityRecommender
from recworld.simulator import load_run, run_scenario
from recworld.simulator.cli import main
from recworld.simulator.output.folders import foreign_files, is_run_folder
from recworld.simulator.registry import register, unregister
from recworld.simulator.scenario import ScenarioError, load_scenario
from recworld.simulator.studies import aggregate, sweep
from recworld.simulator.studies.sweep import make_plan, run_sweep


@pytest.fixture
def small_scenario(small_scenario):
    """The tiny MovieLens scenario without each run's own plots (they cost a second a run)."""
    return dict(small_scenario, output={"plots": False})


@pytest.fixture
def scenario_file(tmp_path, small_scenario) -> Path:
    f = tmp_path / "scenario.yaml"
    f.write_text(yaml.safe_dump(small_scenario))
    return f


# ----------------------------------------------------------------------------- plan


def test_plan_takes_the_grid_product_times_the_zip_rows(small_scenario):
    small_scenario["sweep"] = {
        "seeds": 2,
        "grid": {"population.size": [5, 8]},
        "zip": {"recommender.name": ["slate_ts", "slate_ts"], "recommender.sampling": ["single", "greedy"]},
    }
    plan = make_plan(small_scenario)
    assert plan.seeds == [3, 4]                           # the scenario's seed and the next
    assert [a.label for a in plan.arms] == ["size=5, sampling=single", "size=5, sampling=greedy",
                                            "size=8, sampling=single", "size=8, sampling=greedy"]
    assert len(plan.runs) == 8 and plan.baseline == plan.arms[0].label
    run = plan.runs[-1]
    assert run.folder == "size_8_sampling_greedy-seed4" and run.seed == 4
    scn = load_scenario(run.scenario)
    assert scn.population.size == 8 and scn.recommender.name == "slate_ts"
    assert scn.recommender.params == {"sampling": "greedy"} and scn.sweep is None


def test_plan_values_may_be_sections_with_labels_and_seeds_a_list(small_scenario):
    plan = make_plan(small_scenario, {"seeds": [11, 2], "baseline": "rnd", "grid": {"recommender": [
        {"name": "popularity", "window_days": 3}, {"name": "random", "label": "rnd"}]}})
    assert [a.label for a in plan.arms] == ["popularity(window_days=3)", "rnd"]
    assert plan.seeds == [11, 2] and plan.baseline == "rnd"
    rnd = load_scenario(plan.runs[-1].scenario)
    assert rnd.recommender.name == "random" and rnd.recommender.params == {} and rnd.seed == 2
    # a plug-in's new name drops the old one's parameters, whatever order the keys come in
    plan = make_plan(small_scenario, {"seeds": 1, "zip": {"recommender.window_days": [3, 5],
                                                          "recommender.name": ["popularity", "popularity"]}})
    assert [load_scenario(r.scenario).recommender.params for r in plan.runs] == [{"window_days": 3},
                                                                                 {"window_days": 5}]


def test_plan_without_settings_is_seeds_of_the_scenario(small_scenario):
    plan = make_plan(small_scenario)
    assert [a.label for a in plan.arms] == ["base"] and plan.seeds == [3, 4, 5, 6, 7] and plan.baseline is None


@pytest.mark.parametrize("cfg,where,what", [
    ({"grid": {"population.size": [5, 0]}}, "sweep arm '0': population.size", "greater than or equal to 1"),
    ({"grid": {"recommender.name": ["random", "nonesuch"]}}, "sweep arm 'nonesuch': recommender.name", "nonesuch"),
    ({"grid": {"recommender.name": ["random", "popularity"]}, "baseline": "mf"}, "sweep.baseline", "not an arm"),
    ({"grid": {"seed": [1, 2]}}, "sweep", "sweep.seeds"),
    ({"seeds": [1, 1]}, "sweep.seeds", "repeat"),
    ({"seeds": 0}, "sweep.seeds", "between 1"),
    ({"zip": {"population.size": [5, 6], "duration_days": [1]}}, "sweep", "same length"),
    ({"grid": {"recommender": [{"name": "slate_ts"}, {"name": "slate_ts"}]}}, "sweep", "labels"),
    ({"grid": {"population.size": []}}, "sweep", "at least one value"),
    ({"grid": {"recommender": [{"name": "random"}], "recommender.name": ["popularity"]}}, "sweep", "overlap"),
])
def test_plan_errors_name_the_arm_and_field(small_scenario, cfg, where, what):
    with pytest.raises(ScenarioError) as e:
        make_plan(small_scenario, cfg)
    field, message = e.value.problems[0]
    assert field.startswith(where) and what in message or what in str(e.value), str(e.value)


def test_unknown_sweep_key_is_named(small_scenario):
    small_scenario["sweep"] = {"sedes": 3}
    with pytest.raises(ScenarioError, match="sweep.sedes: unknown key"):
        load_scenario(small_scenario)


# ----------------------------------------------------------------------------- aggregation


def test_interval_is_the_t_interval_of_the_mean():
    from scipy import stats

    x = [1.0, 2.0, 4.0, 7.0]
    iv = aggregate.interval(x)
    half = stats.t.ppf(0.975, 3) * np.std(x, ddof=1) / 2
    assert iv["n"] == 4 and iv["mean"] == pytest.approx(3.5)
    assert (iv["ci_low"], iv["ci_high"]) == pytest.approx((3.5 - half, 3.5 + half))
    one = aggregate.interval([2.0, None, float("nan")])
    assert one["n"] == 1 and one["mean"] == 2.0 and math.isnan(one["ci_low"])


def test_paired_differences_pair_by_seed():
    runs = pd.DataFrame({"arm": ["a"] * 3 + ["b"] * 3, "seed": [1, 2, 3, 3, 1, 2], "status": "completed",
                         "ctr": [0.1, 0.5, 0.9, 1.0, 0.2, 0.6]})
    d = aggregate.paired_differences(runs, "a", ["ctr"])
    row = d.iloc[0]
    # per seed: b - a = 0.1, 0.1, 0.1 (the between-seed spread cancels)
    assert row["n"] == 3 and row["mean_difference"] == pytest.approx(0.1)
    assert row["ci_low"] == pytest.approx(0.1) and row["ci_high"] == pytest.approx(0.1)
    runs.loc[5, "status"] = "failed"                      # a failed run leaves its seed out of the pairs
    assert aggregate.paired_differences(runs, "a", ["ctr"]).iloc[0]["n"] == 2


# ----------------------------------------------------------------------------- sweeps


def test_sweep_runs_every_arm_and_seed_with_the_events_of_runs_alone(small_scenario, tmp_path):
    cfg = {"seeds": 2, "grid": {"recommender.name": ["random", "popularity"]}, "baseline": "random"}
    res = run_sweep(small_scenario, tmp_path / "sw", config=cfg, progress=False)
    out = res.out
    assert res.status == "completed" and is_run_folder(out, "sweep") and not foreign_files(out)
    folders = ["random-seed3", "random-seed4", "popularity-seed3", "popularity-seed4"]
    for f in folders:
        assert is_run_folder(out / f, "run") and load_run(out / f).metrics["status"] == "completed"
    runs = pd.read_csv(out / "sweep.csv")
    assert runs["folder"].tolist() == folders and set(runs["recommender.name"]) == {"random", "popularity"}
    assert {"ctr", "watches", "exposure_gini", "git_commit", "scenario_sha256"} <= set(runs.columns)
    summary = pd.read_csv(out / "summary.csv")
    ctr = summary[(summary["metric"] == "ctr")].set_index("arm")
    assert (ctr["n"] == 2).all() and (ctr["ci_low"] <= ctr["mean"]).all() and (ctr["mean"] <= ctr["ci_high"]).all()
    assert ctr.loc["random", "mean"] == pytest.approx(runs.loc[runs["arm"] == "random", "ctr"].mean())
    diffs = pd.read_csv(out / "differences.csv")
    assert set(diffs["arm"]) == {"popularity"} and set(diffs["baseline"]) == {"random"}
    assert "Sweep:" in (out / "report.html").read_text()        # the comparison page of the explorer
    report = (out / "report.md").read_text()
    assert "Paired differences against `random`" in report and "95% interval" in report
    for f in ("plots/metrics.png", "plots/timeseries.png", "sweep.yaml", "sweep.json"):
        assert (out / f).exists(), f
    state = json.loads((out / "sweep.json").read_text())
    assert state["status"] == "completed" and len(state["runs"]) == 4 and state["provenance"]["recworld"]
    # the determinism promise: each run's events equal the same run made alone
    for rec, seed in (("random", 4), ("popularity", 3)):
        alone = run_scenario(small_scenario, tmp_path / f"alone-{rec}-{seed}", progress=False,
                             overrides=[f"recommender.name={rec}", f"seed={seed}"])
        pd.testing.assert_frame_equal(load_run(alone).events, load_run(out / f"{rec}-seed{seed}").events)


class FailsOnce(PopularityRecommender):
    """Fails its first run in this process, then serves normally (a transient failure)."""
    name = "sweep_fails_once"
    failures = 0

    def recommend(self, request):
        if FailsOnce.failures == 0:
            FailsOnce.failures += 1
            raise RuntimeError("transient trouble")
        return super().recommend(request)


class AlwaysFails(PopularityRecommender):
    name = "sweep_always_fails"

    def recommend(self, request):
        raise RuntimeError("broken recommender")


@pytest.fixture
def flaky_plugins():
    FailsOnce.failures = 0
    for cls in (FailsOnce, AlwaysFails):
        register("recommenders", cls.name, cls)
    yield
    for cls in (FailsOnce, AlwaysFails):
        unregister("recommenders", cls.name)


def test_a_failed_run_is_retried_once_recorded_and_the_others_go_on(small_scenario, tmp_path, flaky_plugins, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(small_scenario))
    out = tmp_path / "sw"
    rc = main(["sweep", str(f), "--seeds", "3,4", "--grid",
               "recommender.name=sweep_fails_once,sweep_always_fails,random", "--baseline", "random",
               "--out", str(out), "--no-progress", "--engine", "sequential"])
    captured = capsys.readouterr()
    assert rc == 1 and "the sweep ended failed" in captured.err and "Traceback" not in captured.err
    runs = pd.read_csv(out / "sweep.csv").set_index("folder")
    assert runs.loc["sweep_fails_once-seed3", "attempts"] == 2                   # failed, then tried again
    assert runs.loc["sweep_fails_once-seed3", "status"] == "completed"
    assert runs.loc["sweep_fails_once-seed4", "attempts"] == 1
    for s in (3, 4):
        bad = runs.loc[f"sweep_always_fails-seed{s}"]
        assert bad["status"] == "failed" and bad["attempts"] == 2 and "broken recommender" in bad["error"]
        assert (out / f"sweep_always_fails-seed{s}" / "error.txt").exists()
        assert runs.loc[f"random-seed{s}", "status"] == "completed"
    report = (out / "report.md").read_text()
    assert "**Status: failed**" in report and "`sweep_always_fails-seed3`: failed after 2 attempt(s)" in report
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["arm"]) == {"sweep_fails_once", "sweep_always_fails", "random"}
    assert (summary.loc[summary["arm"] == "sweep_always_fails", "n"] == 0).all()


def test_a_sweep_run_again_skips_finished_runs(small_scenario, tmp_path, monkeypatch):
    cfg = {"seeds": 2, "grid": {"recommender.name": ["random", "popularity"]}}
    out = tmp_path / "sw"
    first = run_sweep(small_scenario, out, config=cfg, progress=False)
    ran = []
    real = sweep.run_task
    monkeypatch.setattr(sweep, "run_task", lambda task: ran.append(task["folder"]) or real(task))
    again = run_sweep(small_scenario, out, config=cfg, progress=False)
    assert ran == [] and again.status == "completed"
    pd.testing.assert_frame_equal(first.summary, again.summary)
    # a run that did not finish (here: its metrics lost) is run again, the rest are kept
    (out / "popularity-seed4" / "metrics.json").unlink()
    more = dict(cfg, seeds=3)                           # and a new seed adds its runs
    res = run_sweep(small_scenario, out, config=more, progress=False)
    assert sorted(ran) == ["popularity-seed4", "popularity-seed5", "random-seed5"]
    assert res.status == "completed" and len(res.runs) == 6
    # other settings in the same folder: an error, unless --overwrite
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_sweep(small_scenario, out, config=cfg, progress=False, overrides=["duration_days=0.5"])
    res = run_sweep(small_scenario, out, config={"seeds": 1}, progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["base-seed3", "plots"]


def test_a_shipped_run_folder_arrives_whole(small_scenario, tmp_path):
    """A run made on another Ray node comes back as an archive, unpacked into the sweep folder."""
    plan = make_plan(small_scenario, {"seeds": 1})
    spec = plan.runs[0]
    res = sweep.run_task_shipped({"out": "/nonexistent/elsewhere", "folder": spec.folder, "scenario": spec.scenario})
    assert res["status"] == "completed" and len(res["archive"]) > 1000
    sweep.receive(tmp_path, res)
    alone = run_scenario(small_scenario, tmp_path / "alone", progress=False)
    assert is_run_folder(tmp_path / spec.folder, "run")
    pd.testing.assert_frame_equal(load_run(alone).events, load_run(tmp_path / spec.folder).events)


def test_cli_sweep_prints_intervals_and_uses_the_sweep_section(scenario_file, tmp_path, capsys):
    cfg = yaml.safe_load(scenario_file.read_text())
    cfg["sweep"] = {"seeds": 2, "grid": {"recommender.name": ["random", "popularity"]}, "metrics": ["ctr", "watches"]}
    scenario_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp_path / "sw"
    assert main(["sweep", str(scenario_file), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "| random | 2 |" in text and "difference from random" in text and "[" in text
    assert text.strip().splitlines()[-1].startswith("status: completed (4 runs: 4 finished; engine sequential)")
    assert main(["sweep", str(scenario_file), "--out", str(out), "--no-progress", "--seeds", "1"]) == 0
    assert "2 skipped as already finished" in capsys.readouterr().out      # seed 3 only: both runs are there
    assert main(["sweep", str(scenario_file), "--out", str(out), "--no-progress", "--address", "x:1",
                 "--engine", "sequential"]) == 2
    assert "--engine ray" in capsys.readouterr().err
    assert main(["sweep", str(scenario_file), "--grid", "population.size", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
