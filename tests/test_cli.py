"""The ``recworld`` command: exit codes, one-line errors, default folders, and --overwrite that keeps user files."""

import json
from pathlib import Path

import pytest
import yaml

from recworld.recommenders.baselines import PopularityRecommender
from recworld.simulator.cli import COMMANDS, main
from recworld.simulator.output.folders import MARKER, is_run_folder, prepare_out
from recworld.simulator.registry import register, unregister


@pytest.fixture
def scenario_file(tmp_path, small_scenario) -> Path:
    f = tmp_path / "scenario.yaml"
    f.write_text(yaml.safe_dump(small_scenario))
    return f


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert lines, err
    assert "Traceback" not in err
    return lines[0]


def test_every_subcommand_is_registered():
    assert set(COMMANDS) >= {"run", "validate", "train", "evaluate", "compare", "sts", "sweep", "list"}
    assert all(callable(add) and callable(handler) for _, add, handler in COMMANDS.values())


@pytest.mark.parametrize("args", [["--help"]] + [[name, "--help"] for name in sorted(COMMANDS)])
def test_help_prints_for_the_tool_and_every_subcommand(args, capsys):
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and ("95% intervals" in out or args != ["--help"])


def test_list_still_lists(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "recommenders:" in out and "brains:" in out
    assert "popularity" in out and "recworld.recommenders.baselines:PopularityRecommender" in out
    assert main(["list", "brains"]) == 0
    out = capsys.readouterr().out
    assert "brains:" in out and "recommenders:" not in out


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["nonsense"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["list", "widgets"])
    assert e.value.code == 2


@pytest.mark.parametrize("command", ["run", "validate", "compare", "sts"])
def test_a_missing_scenario_file_exits_2(command, tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    assert main([command, str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_directory_as_the_scenario_exits_2(command, tmp_path, capsys):
    assert main([command, str(tmp_path)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert str(tmp_path) in line


def test_out_under_a_regular_file_exits_2(scenario_file, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("data")
    assert main(["run", str(scenario_file), "--out", str(blocker / "sub"), "--no-progress"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert str(blocker) in line
    assert blocker.read_text() == "data"


def test_a_file_as_out_exits_2(scenario_file, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("data")
    assert main(["compare", str(scenario_file), "--recommenders", "random", "--out", str(blocker)]) == 2
    assert str(blocker) in one_line_error(capsys.readouterr().err)
    assert blocker.read_text() == "data"


def test_overwrite_of_the_project_folder_is_refused(scenario_file, tmp_path, monkeypatch, capsys):
    """`cd myproject; recworld run scenario.yaml --out . --overwrite` must not delete the project."""
    project = scenario_file.parent
    (project / "src").mkdir()
    (project / "src" / "code.py").write_text("print('mine')")
    (project / "notes.md").write_text("notes")
    before = sorted(p.name for p in project.rglob("*"))
    monkeypatch.chdir(project)
    assert main(["run", "scenario.yaml", "--out", ".", "--overwrite", "--no-progress"]) == 2
    assert "current directory" in one_line_error(capsys.readouterr().err)
    assert main(["run", "scenario.yaml", "--out", str(project), "--overwrite", "--no-progress"]) == 2
    capsys.readouterr()
    assert main(["run", "scenario.yaml", "--out", ".", "--no-progress"]) == 2
    assert "--overwrite" in one_line_error(capsys.readouterr().err)
    assert sorted(p.name for p in project.rglob("*")) == before
    assert (project / "src" / "code.py").read_text() == "print('mine')"


def test_overwrite_refuses_a_folder_with_foreign_files(scenario_file, tmp_path, capsys):
    out = prepare_out(tmp_path / "r", kind="run")
    (out / "metrics.json").write_text("{}")
    (out / "thesis.tex").write_text("years of work")
    assert main(["run", str(scenario_file), "--out", str(out), "--overwrite", "--no-progress"]) == 2
    assert "thesis.tex" in one_line_error(capsys.readouterr().err)
    assert (out / "thesis.tex").read_text() == "years of work"


def test_run_prints_folder_and_status(scenario_file, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", str(scenario_file), "--out", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    lines = stdout.strip().splitlines()
    assert lines[0] == f"run folder: {out}"
    assert lines[-1] == f"status: completed ({out})"
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
    # the same folder again: refused without --overwrite, nothing touched
    mtime = (out / "metrics.json").stat().st_mtime_ns
    assert main(["run", str(scenario_file), "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite" in one_line_error(capsys.readouterr().err)
    assert (out / "metrics.json").stat().st_mtime_ns == mtime


def test_rerun_with_overwrite_replaces_a_marked_run(scenario_file, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", str(scenario_file), "--out", str(out), "--no-progress"]) == 0
    if not is_run_folder(out):
        pytest.skip("run_scenario does not mark its run folders yet (simulator/run.py: prepare_out)")
    (out / "stale.parquet").unlink(missing_ok=True)
    assert main(["run", str(scenario_file), "--out", str(out), "--overwrite", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"status: completed ({out})")
    assert is_run_folder(out, "run")


def test_default_run_folder_is_under_runs(small_scenario, tmp_path, monkeypatch, capsys):
    small_scenario["name"] = ".hidden: my run?"
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(small_scenario))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["run", str(f), "--no-progress"]) == 0
    made = list((work / "runs").iterdir())
    assert len(made) == 1 and made[0].name.startswith("hidden_my_run-seed3-")
    assert f"status: completed ({Path('runs') / made[0].name})" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml", "work"]


class Exploding(PopularityRecommender):
    """Serves normally, then fails on its 20th slate (or is interrupted)."""
    name = "cli_exploding"
    error: type = RuntimeError

    def recommend(self, request):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 20:
            raise self.error("recommender exploded")
        return super().recommend(request)


class Interrupting(Exploding):
    name = "cli_interrupting"
    error = KeyboardInterrupt


@pytest.mark.parametrize("cls,code,status", [(Exploding, 1, "failed"), (Interrupting, 130, "interrupted")])
def test_a_failed_or_interrupted_run_exits_nonzero(cls, code, status, scenario_file, tmp_path, capsys):
    out = tmp_path / "r"
    register("recommenders", cls.name, cls)
    try:
        rc = main(["run", str(scenario_file), "--out", str(out), "--no-progress",
                   "--set", f"recommender.name={cls.name}"])
    finally:
        unregister("recommenders", cls.name)
    captured = capsys.readouterr()
    assert rc == code
    assert json.loads((out / "metrics.json").read_text())["status"] == status
    assert "Traceback" not in captured.err and str(out) in captured.err
    assert captured.out.strip().splitlines()[-1] == f"status: {status} ({out})"
    if status == "failed":
        assert "recommender exploded" in one_line_error(captured.err)
    else:
        assert captured.err.strip().startswith("interrupted:")


@pytest.mark.parametrize("status,code", [("degraded", 3), ("completed", 0), ("failed", 1), ("interrupted", 130)])
def test_run_exit_code_follows_the_status(status, code, scenario_file, tmp_path, monkeypatch, capsys):
    import recworld.simulator.run

    def fake_run(scenario, out, *a, **k):
        out = prepare_out(out, kind="run")
        (out / "metrics.json").write_text(json.dumps({"status": status, "sessions": 1}))
        return out

    monkeypatch.setattr(recworld.simulator.run, "run_scenario", fake_run)
    assert main(["run", str(scenario_file), "--out", str(tmp_path / "r")]) == code
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"status: {status} ({tmp_path / 'r'})"


def test_evaluate_checks_its_folder_and_arguments_first(tmp_path, capsys, monkeypatch):
    import recworld.simulator.studies.evaluate as ev

    def no_eval(*a, **k):
        raise AssertionError("evaluated although the command could not write its results")

    monkeypatch.setattr(ev, "evaluate_offline", no_eval)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("x")
    assert main(["evaluate", "--recommenders", "popularity", "--out", str(taken)]) == 2
    assert str(taken) in one_line_error(capsys.readouterr().err)
    assert main(["evaluate", "--k", "0"]) == 2
    assert "--k" in one_line_error(capsys.readouterr().err)
    assert main(["evaluate", "--recommenders", "no_such_thing"]) == 2
    assert "no_such_thing" in one_line_error(capsys.readouterr().err)


def test_evaluate_writes_a_marked_default_folder(tmp_path, monkeypatch, capsys):
    import pandas as pd

    import recworld.simulator.studies.evaluate as ev

    monkeypatch.setattr(ev, "evaluate_offline", lambda *a, **k: pd.DataFrame([{"recommender": "popularity",
                                                                                "ndcg@10": 0.5}]))
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--recommenders", "popularity", "--no-progress"]) == 0
    (made,) = (tmp_path / "runs").iterdir()
    assert made.name.startswith("evaluate-") and is_run_folder(made, "evaluate")
    assert f"written to {Path('runs') / made.name / 'offline_eval.json'}" in capsys.readouterr().out
    # --overwrite replaces what evaluate wrote
    assert main(["evaluate", "--recommenders", "popularity", "--out", str(made), "--overwrite"]) == 0
    assert sorted(p.name for p in made.iterdir()) == sorted([MARKER, "offline_eval.csv", "offline_eval.json",
                                                             "offline_eval.md"])


def test_compare_leaves_no_folder_when_it_cannot_start(scenario_file, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["compare", str(scenario_file), "--out", str(out)]) == 2
    assert "compare" in one_line_error(capsys.readouterr().err)
    assert not out.exists()


def test_compare_duplicate_arms_get_their_own_folders(scenario_file, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["compare", str(scenario_file), "--recommenders", "random,random", "--out", str(out),
                 "--no-progress", "--seeds", "1"]) == 0
    assert (out / "random-seed3" / "metrics.json").exists() and (out / "random-2-seed3" / "metrics.json").exists()
    assert is_run_folder(out, "compare")
    assert main(["compare", str(scenario_file), "--recommenders", "random", "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite" in one_line_error(capsys.readouterr().err)
    if not is_run_folder(out / "random-seed3"):
        pytest.skip("run_scenario does not mark its run folders yet (simulator/run.py: prepare_out)")
    assert main(["compare", str(scenario_file), "--recommenders", "popularity", "--out", str(out), "--overwrite",
                 "--no-progress", "--seeds", "1"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["plots", "popularity-seed3"]


def test_sts_without_an_sts_section_leaves_no_folder(scenario_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sts", str(scenario_file), "--no-progress"]) == 2
    assert "sts" in one_line_error(capsys.readouterr().err)
    assert not list(tmp_path.glob("runs/sts-*"))


def test_sts_writes_a_marked_default_folder(tmp_path, monkeypatch, capsys):
    pytest.importorskip("litellm")
    from recworld.simulator.testing.fakellm import FakeLLMServer, Reply
    from recworld.simulator.testing.scripted import answer

    def in_prompt_order(body: dict, n: int) -> Reply:
        if (body.get("response_format") or {}).get("json_schema"):
            return answer(body, n)
        lines = [json.loads(ln) for ln in body["messages"][-1]["content"].splitlines() if ln.startswith("{")]
        return Reply("\n".join(f"{k}. {o.get('Name', o.get('name'))}" for k, o in enumerate(lines, 1)))

    monkeypatch.chdir(tmp_path)
    with FakeLLMServer(in_prompt_order) as srv:
        cfg = {"name": "sts_cli", "seed": 2, "data": {"source": "products", "path": "coffee_machines"},
               "recommender": {"name": "llm_ranker", "candidates": 10, "domain": "coffee machine"},
               "llm": {"model": "openai/fake", "api_base": srv.url, "cache": False, "retries": 0},
               "sts": {"target": "ColdBrew Master", "text": "best top", "trials": 3, "optimize": {"budget_calls": 0}}}
        (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
        assert main(["sts", "s.yaml", "--no-world", "--trials", "2", "--no-progress"]) == 0
    (made,) = (tmp_path / "runs").iterdir()
    assert made.name.startswith("sts-sts_cli-") and is_run_folder(made, "sts")
    assert json.loads((made / "results.json").read_text())["studies"]["main"]["protocol"]["llm_ranker"]["trials"] == 2
    assert capsys.readouterr().out.strip().endswith(f"report: {Path('runs') / made.name}/report.md")
