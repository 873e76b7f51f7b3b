"""Output folders: names that stay under runs/, and --overwrite that removes only RecWorld's own folders."""

import json
import re
from pathlib import Path

import pytest

from recworld.simulator.output.folders import (MARKER, UnsafeOverwriteError, check_out, default_out,
                                               discard_if_unused, foreign_files, is_run_folder, prepare_out,
                                               read_marker, safe_name)


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def a_run(path: Path, kind: str = "run") -> Path:
    """A folder as RecWorld leaves it after a run."""
    prepare_out(path, kind=kind)
    for f in ("scenario.yaml", "events.parquet", "metrics.json", "report.md"):
        (path / f).write_text("x")
    (path / "plots").mkdir()
    (path / "plots" / "ctr_over_time.png").write_bytes(b"png")
    (path / "events.parts").mkdir()
    (path / "events.parts" / "part-00000.parquet").write_bytes(b"pq")
    return path


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("text", ["../../x", "..", "/etc/passwd", "a/../../b", ".hidden", "..\\..\\win",
                                  "-rf", "", "   ", "名前", "a" * 500, "x/" * 100])
def test_safe_name_is_one_harmless_folder_name(text):
    s = safe_name(text)
    assert s and len(s) <= 80
    assert re.fullmatch(r"[A-Za-z0-9._-]+", s)
    assert ".." not in s and not s.startswith((".", "-"))
    assert Path(s).name == s and len(Path(s).parts) == 1


def test_safe_name_keeps_ordinary_names():
    assert safe_name("quickstart") == "quickstart"
    assert safe_name("sts_coffee-v2.1") == "sts_coffee-v2.1"
    assert safe_name("my scenario") == "my_scenario"
    assert safe_name("../../x") == "x"


@pytest.mark.parametrize("name", ["../../x", "/abs/path", "..", "a/../../../b"])
def test_default_out_stays_under_runs(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for kind in (None, "compare", "sts", "train", "evaluate"):
        p = default_out(kind, name, seed=3 if kind is None else None)
        assert p.parent == Path("runs") and ".." not in p.parts
        assert p.resolve().parent == (tmp_path / "runs").resolve()


def test_default_out_formats(tmp_path):
    stamp = r"\d{8}-\d{6}"
    assert re.fullmatch(rf"quickstart-seed7-{stamp}", default_out(None, "quickstart", 7).name)
    assert re.fullmatch(rf"compare-tiny-{stamp}", default_out("compare", "tiny").name)
    assert re.fullmatch(rf"train-tiny-ppo-{stamp}", default_out("train", "tiny-ppo").name)
    assert re.fullmatch(rf"evaluate-{stamp}", default_out("evaluate", None).name)
    first = default_out("sts", "x", root=tmp_path)
    first.mkdir()
    second = default_out("sts", "x", root=tmp_path)
    assert second != first and not second.exists() and second.parent == tmp_path


# ----------------------------------------------------------------------------- creating


def test_prepare_creates_and_marks(tmp_path):
    out = prepare_out(tmp_path / "a" / "b", overwrite=False, kind="compare")
    assert out.is_dir() and is_run_folder(out) and is_run_folder(out, "compare") and not is_run_folder(out, "run")
    marker = json.loads((out / MARKER).read_text())
    assert marker["kind"] == "compare" and marker["recworld_version"] and marker["created"]
    assert not is_run_folder(tmp_path / "a")


def test_an_existing_empty_folder_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    assert prepare_out(tmp_path / "empty", overwrite=False, kind="run") == tmp_path / "empty"
    assert is_run_folder(tmp_path / "empty")
    # prepared but unused (only the marker): still counts as empty
    assert prepare_out(tmp_path / "empty", overwrite=False, kind="sts") == tmp_path / "empty"
    assert read_marker(tmp_path / "empty")["kind"] == "sts"


def test_a_non_empty_folder_needs_overwrite(tmp_path):
    run = a_run(tmp_path / "r")
    before = files_under(run)
    with pytest.raises(FileExistsError, match="--overwrite") as e:
        prepare_out(run, overwrite=False, kind="run")
    assert str(run) in str(e.value)
    assert files_under(run) == before
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.md").write_text("keep")
    with pytest.raises(FileExistsError, match="choose another --out"):
        prepare_out(other, overwrite=False, kind="run")
    assert (other / "notes.md").read_text() == "keep"


def test_out_under_a_file_or_a_file_as_out(tmp_path):
    f = tmp_path / "afile"
    f.write_text("data")
    with pytest.raises(NotADirectoryError, match="afile"):
        check_out(f / "sub" / "run", overwrite=False)
    with pytest.raises(NotADirectoryError, match="afile"):
        prepare_out(f / "sub", overwrite=True, kind="run")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        prepare_out(f, overwrite=True, kind="run")
    assert f.read_text() == "data"


# ----------------------------------------------------------------------------- overwriting


def test_overwrite_replaces_a_marked_recworld_folder(tmp_path):
    run = a_run(tmp_path / "r")
    (run / ".DS_Store").write_bytes(b"")
    assert foreign_files(run) == []
    out = prepare_out(run, overwrite=True, kind="run")
    assert out == run and files_under(run) == {MARKER}
    assert is_run_folder(run, "run")


def test_overwrite_refuses_the_current_directory(tmp_path, monkeypatch):
    project = a_run(tmp_path / "project")         # even a folder that is all RecWorld's
    before = files_under(project)
    monkeypatch.chdir(project)
    for out in (".", "", str(project), "./"):
        with pytest.raises(UnsafeOverwriteError, match="current directory"):
            prepare_out(out, overwrite=True, kind="run")
    with pytest.raises(UnsafeOverwriteError, match="contains the current directory"):
        prepare_out("..", overwrite=True, kind="run")
    assert files_under(project) == before


def test_overwrite_refuses_home_and_root(tmp_path, monkeypatch):
    home = a_run(tmp_path / "home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeOverwriteError, match="home folder"):
        prepare_out(home, overwrite=True, kind="run")
    with pytest.raises(UnsafeOverwriteError, match="home folder"):
        prepare_out("~", overwrite=True, kind="run")
    with pytest.raises(UnsafeOverwriteError, match="root"):
        check_out("/", overwrite=True)
    assert (home / "metrics.json").exists()


def test_overwrite_refuses_foreign_files_and_leaves_them(tmp_path):
    run = a_run(tmp_path / "r")
    (run / "notes.md").write_text("my notes")
    (run / "src").mkdir()
    (run / "src" / "code.py").write_text("print(1)")
    (run / "plots" / "sketch.txt").write_text("mine")
    before = files_under(run)
    with pytest.raises(UnsafeOverwriteError) as e:
        prepare_out(run, overwrite=True, kind="run")
    assert isinstance(e.value, FileExistsError)
    msg = str(e.value)
    assert "notes.md" in msg and "src/" in msg and "plots/sketch.txt" in msg and str(run) in msg
    assert files_under(run) == before and (run / "src" / "code.py").read_text() == "print(1)"


def test_overwrite_names_at_most_five_foreign_files(tmp_path):
    run = a_run(tmp_path / "r")
    for i in range(9):
        (run / f"mine{i}.txt").write_text("x")
    with pytest.raises(UnsafeOverwriteError) as e:
        prepare_out(run, overwrite=True, kind="run")
    assert sum(f"mine{i}.txt" in str(e.value) for i in range(9)) == 5
    assert len(list(run.glob("mine*.txt"))) == 9


def test_overwrite_refuses_an_unmarked_folder(tmp_path):
    """What `--overwrite` used to delete: any folder holding a scenario.yaml (also an old run)."""
    project = tmp_path / "myproject"
    project.mkdir()
    for f in ("scenario.yaml", "events.parquet", "metrics.json"):
        (project / f).write_text("x")
    before = files_under(project)
    with pytest.raises(UnsafeOverwriteError, match="delete it by hand"):
        prepare_out(project, overwrite=True, kind="run")
    assert files_under(project) == before
    assert not is_run_folder(project)


def test_a_broken_marker_is_no_marker(tmp_path):
    run = a_run(tmp_path / "r")
    (run / MARKER).write_text("{not json")
    assert not is_run_folder(run)
    with pytest.raises(UnsafeOverwriteError, match="not created by RecWorld"):
        prepare_out(run, overwrite=True, kind="run")
    assert (run / "metrics.json").exists()


def test_overwrite_of_a_comparison_needs_every_sub_run_marked(tmp_path):
    cmp = prepare_out(tmp_path / "c", kind="compare")
    (cmp / "compare.csv").write_text("x")
    a_run(cmp / "random")
    a_run(cmp / "popularity")
    assert foreign_files(cmp) == []
    (cmp / "old_arm").mkdir()                         # a sub-folder RecWorld did not mark
    (cmp / "old_arm" / "metrics.json").write_text("x")
    with pytest.raises(UnsafeOverwriteError, match="old_arm"):
        prepare_out(cmp, overwrite=True, kind="compare")
    assert (cmp / "random" / "metrics.json").exists() and (cmp / "old_arm" / "metrics.json").exists()
    (cmp / "old_arm" / "metrics.json").unlink()
    (cmp / "old_arm").rmdir()
    (cmp / "random" / "diary.txt").write_text("mine")  # a foreign file inside a sub-run
    with pytest.raises(UnsafeOverwriteError, match="random/diary.txt"):
        prepare_out(cmp, overwrite=True, kind="compare")
    (cmp / "random" / "diary.txt").unlink()
    prepare_out(cmp, overwrite=True, kind="compare")
    assert files_under(cmp) == {MARKER}


def test_a_run_folder_holds_no_sub_folders(tmp_path):
    run = a_run(tmp_path / "r")
    a_run(run / "nested")
    with pytest.raises(UnsafeOverwriteError, match="nested"):
        prepare_out(run, overwrite=True, kind="run")


def test_overwrite_refuses_a_symlink(tmp_path):
    run = a_run(tmp_path / "r")
    link = tmp_path / "link"
    link.symlink_to(run, target_is_directory=True)
    with pytest.raises(UnsafeOverwriteError, match="symbolic link"):
        prepare_out(link, overwrite=True, kind="run")
    assert (run / "metrics.json").exists()


def test_discard_if_unused(tmp_path):
    out = prepare_out(tmp_path / "new", kind="sts")
    assert discard_if_unused(out) and not out.exists()
    (tmp_path / "given").mkdir()
    out = prepare_out(tmp_path / "given", kind="sts")
    assert discard_if_unused(out, existed=True) and out.is_dir() and not any(out.iterdir())
    run = a_run(tmp_path / "used")
    assert not discard_if_unused(run) and (run / "metrics.json").exists()
