"""The corpus of broken inputs in tests/broken/: every case must fail ``recworld validate`` and
``recworld run`` with a nonzero exit code and ONE ``error: ...`` line that names the field or the
file (and the line in it) -- no traceback, no hang, nothing accepted that should fail.

Each case is ``tests/broken/<what is wrong>.yaml`` (data files it points to are under
``tests/broken/data/``). Its first line, ``# expect: A | B``, lists texts the error must contain.
``tests/broken/valid/`` holds controls that must pass.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recworld.simulator.cli import main
from recworld.simulator.data import population as population_module
from recworld.simulator.data.errors import DataError
from recworld.simulator.scenario import ScenarioError, load_scenario, short_repr, validate_plugins

BROKEN = Path(__file__).resolve().parent / "broken"
VALID = BROKEN / "valid"
CASES = sorted(BROKEN.glob("*.yaml"))
#: cases whose first line cannot hold an ``# expect:`` comment
SPECIAL = {"utf16_scenario.yaml": ["UTF-16"], "folder_as_scenario.yaml": ["folder"]}
#: data-file cases: ``build_parts`` on them (bypassing validation) must raise a DataError too
DATA_CASES = [c for c in CASES if c.name.startswith(("ml_", "products_", "edges_"))
              and c.name not in ("ml_too_few_users.yaml", "ml_min_ratings_unmet.yaml")]
SECONDS = 15            # in-process: a case that takes longer is a hang
SUBPROCESS_SECONDS = 90  # includes starting Python and importing pandas on a busy machine
MEMORY_CAP = 16 * 10**9  # the huge-population case must fail even on a machine with more memory


def expectations(case: Path) -> list[str]:
    if case.name in SPECIAL:
        return SPECIAL[case.name]
    first = case.read_bytes().split(b"\n", 1)[0].decode("ascii")
    assert first.startswith("# expect: "), f"{case.name}: first line must be '# expect: ...'"
    return [x.strip() for x in first[len("# expect: "):].split("|")]


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging) when the block runs longer than ``seconds``."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def capped_memory(monkeypatch):
    """What the memory check sees as available: the machine's, capped at 16 GB."""
    real = population_module.available_memory

    def capped():
        have = real()
        if have is None or have[0] > MEMORY_CAP:
            return MEMORY_CAP, "a 16 GB cap set by the test"
        return have

    monkeypatch.setattr(population_module, "available_memory", capped)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str, float]:
    t0 = time.perf_counter()
    with deadline(SECONDS):
        code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err, time.perf_counter() - t0


def assert_one_clear_error(code: int, out: str, err: str, expect: list[str]) -> None:
    text = out + err
    assert code != 0, f"accepted: {text}"
    assert "Traceback" not in text, text
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one 'error:' line, got: {err!r}"
    for e in expect:
        assert e in errors[0], f"{e!r} not in {errors[0]!r}"


def test_corpus_is_large_and_every_case_says_what_to_expect():
    assert len(CASES) >= 60
    for case in CASES:
        assert expectations(case)


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_validate_rejects(case, capsys):
    code, out, err, _ = run_cli(["validate", str(case)], capsys)
    assert_one_clear_error(code, out, err, expectations(case))
    assert "valid" not in out
    assert str(case) in err                     # the scenario file is named too


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_run_rejects_before_writing_anything(case, capsys, tmp_path):
    out_dir = tmp_path / "run"
    code, out, err, _ = run_cli(["run", str(case), "--out", str(out_dir), "--no-progress"], capsys)
    assert_one_clear_error(code, out, err, expectations(case))
    assert not out_dir.exists()


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda p: p.stem)
def test_building_from_bad_data_raises_a_data_error(case):
    """Without the validation step (the Python API), loading the data names file and line itself."""
    from recworld.simulator.build import build_parts

    try:
        scn = load_scenario(case)
    except ScenarioError:
        pytest.skip("rejected by the schema already")
    with deadline(SECONDS), pytest.raises((DataError, FileNotFoundError)) as e:
        build_parts(scn)
    file_expect = [x for x in expectations(case) if "." in x and not x.startswith(("social", "data", "sts"))]
    for x in file_expect:
        assert x in str(e.value)


# ----------------------------------------------------------------------------- in a real process


def recworld_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("recworld")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "recworld.simulator.cli"]


def _limit_address_space():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


SUBPROCESS_CASES = ["binary_scenario", "yaml_alias_bomb", "yaml_duplicate_key", "folder_as_scenario",
                    "ml_rating_not_number", "products_bare_number", "edges_no_user_matches",
                    "population_too_large"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_subprocess_has_no_traceback(name, command, tmp_path):
    case = BROKEN / f"{name}.yaml"
    argv = recworld_cmd() + [command, str(case)]
    if command == "run":
        argv += ["--out", str(tmp_path / "run"), "--no-progress"]
    p = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=SUBPROCESS_SECONDS, cwd=tmp_path,
                       preexec_fn=_limit_address_space)     # the memory check sees a 16 GB limit
    assert_one_clear_error(p.returncode, p.stdout, p.stderr, expectations(case))
    assert p.returncode == 2


def test_out_under_a_regular_file_is_one_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    p = subprocess.run(recworld_cmd() + ["run", str(VALID / "name_with_spaces.yaml"), "--out",
                                         str(blocker / "run"), "--no-progress"],
                       check=False, capture_output=True, text=True, timeout=SUBPROCESS_SECONDS, cwd=tmp_path)
    assert_one_clear_error(p.returncode, p.stdout, p.stderr, [str(blocker)])


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("overrides, expect", [
    (["population.size=lots"], ["population.size", "lots"]),
    (["name=a/b"], ["name", "'/'"]),
    (["name=.."], ["name", "'..'"]),
    (["data.path=/no/such/folder"], ["data.path", "does not exist"]),
    ([f"data.path={BROKEN / 'data' / 'ml_rating_not_number'}"], ["data.path", "ratings.csv:3", "'abc'"]),
    (["social.graph=edgelist", f"social.path={BROKEN / 'data' / 'edges_three_columns.txt'}"],
     ["social.path", "edges_three_columns.txt:3"]),
    (["population.size=5000000", "data.source=synthetic"], ["population.size", "GB"]),
    (["description=*x"], None),                      # not an alias here: a plain string, accepted
])
def test_bad_overrides(overrides, expect, capsys):
    argv = ["validate", str(VALID / "ml_mini.yaml")]
    for o in overrides:
        argv += ["--set", o]
    code, out, err, _ = run_cli(argv, capsys)
    if expect is None:
        assert code == 0, err
    else:
        assert_one_clear_error(code, out, err, expect)


def test_missing_scenario_file(capsys, tmp_path):
    code, out, err, _ = run_cli(["validate", str(tmp_path / "nope.yaml")], capsys)
    assert_one_clear_error(code, out, err, ["nope.yaml", "does not exist"])


def test_fifo_is_refused_not_read(capsys, tmp_path):
    fifo = tmp_path / "scenario.yaml"
    os.mkfifo(fifo)
    code, out, err, _ = run_cli(["validate", str(fifo)], capsys)     # reading it would block forever
    assert_one_clear_error(code, out, err, ["not a regular file"])


def test_oversized_scenario_is_refused(capsys, tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: big\ndescription: '" + "x" * (5 * 2**20) + "'\n")
    code, out, err, _ = run_cli(["validate", str(big)], capsys)
    assert_one_clear_error(code, out, err, ["big.yaml", "MiB"])


# ----------------------------------------------------------------------------- valid controls


@pytest.mark.parametrize("case", sorted(VALID.glob("*.yaml")), ids=lambda p: p.stem)
def test_valid_controls_pass(case, capsys, tmp_path):
    code, out, err, _ = run_cli(["validate", str(case)], capsys)
    assert code == 0, err
    code, out, err, _ = run_cli(["run", str(case), "--out", str(tmp_path / "run"), "--no-progress"], capsys)
    assert code == 0, err
    assert (tmp_path / "run" / "events.parquet").exists()
    assert "Traceback" not in out + err


def test_empty_and_comment_only_scenarios_are_all_defaults():
    assert load_scenario(VALID / "empty.yaml") == load_scenario({})
    assert load_scenario(VALID / "comments_only.yaml") == load_scenario({})


def test_edges_naming_some_unknown_users_warn_with_counts(caplog):
    from recworld.simulator.data.social import SocialGraph

    with caplog.at_level("WARNING", logger="recworld"):
        g = SocialGraph.from_edgelist(VALID / "data" / "edges_some_unknown.txt", np.arange(1, 6))
    assert g.n_edges == 3
    assert "1 of 4 pairs" in caplog.text and "99" in caplog.text


def test_edge_list_of_only_self_loops_is_an_error(tmp_path):
    from recworld.simulator.data.social import SocialGraph

    f = tmp_path / "loops.txt"
    f.write_text("1 1\n2 2\n")
    with pytest.raises(DataError, match="none of its 2 pairs.*itself"):
        SocialGraph.from_edgelist(f, np.arange(1, 4))


def test_products_with_blank_lines_crlf_and_bom_load(tmp_path):
    from recworld.simulator.data.sources import load_products

    f = tmp_path / "p.jsonl"
    f.write_bytes(b'\xef\xbb\xbf{"Name": "A"}\r\n\r\n{"Name": 1984}\r\n')
    assert load_products(f).titles == ["A", "1984"]


# ----------------------------------------------------------------------------- pieces


def test_short_repr_never_builds_a_huge_repr():
    nested: list = ["x"]
    for _ in range(60):                      # 2**60 leaves if expanded
        nested = [nested, nested]
    with deadline(SECONDS):                  # a full repr would never finish
        text = short_repr(nested)
    assert len(text) <= 80
    assert len(short_repr("y" * 10**7)) <= 80
    assert "digits" in short_repr(10**5000)


def test_alias_bomb_through_the_python_api_is_refused_quickly():
    with deadline(SECONDS), pytest.raises(ScenarioError, match="aliases"):
        load_scenario(BROKEN / "yaml_alias_bomb.yaml")


def test_duplicate_key_names_both_lines():
    with pytest.raises(ScenarioError) as e:
        load_scenario(BROKEN / "yaml_duplicate_key.yaml")
    assert "'population.size' appears twice (line 7 and line 9)" in str(e.value)


@pytest.mark.parametrize("name", ["quickstart", "x y", "run-1.2_b", "café"])
def test_folder_safe_names_pass(name):
    assert load_scenario({"name": name}).name == name


def test_memory_estimate_and_limit(monkeypatch):
    have = population_module.available_memory()
    assert have is None or have[0] > 0
    est = population_module.estimate_world_bytes
    assert est(200_000, 1000) > est(100_000, 1000) > est(1000, 1000)
    # the measured figure: 200,000 users x 1,000 items peaked at 1.29 GB
    assert 1.1e9 < est(200_000, 1000) < 1.8e9
    monkeypatch.setattr(population_module, "available_memory", lambda: (2 * 10**9, "a test limit"))
    msg = population_module.memory_problem(1_000_000, 1000)
    assert "GB" in msg and "a test limit" in msg and "population.size" in msg
    assert population_module.memory_problem(1000, 1000) is None
    monkeypatch.setattr(population_module, "available_memory", lambda: None)     # unknown: no check
    assert population_module.memory_problem(5_000_000, 1000) is None


def test_build_parts_checks_memory_before_building(monkeypatch):
    from recworld.simulator.build import build_parts

    monkeypatch.setattr(population_module, "available_memory", lambda: (10**9, "a test limit"))
    scn = load_scenario({"data": {"source": "synthetic", "n_items": 100}, "population": {"size": 500_000}})
    with deadline(SECONDS), pytest.raises(ScenarioError, match="population.size.*a test limit"):
        build_parts(scn)                      # before building 500,000 users


def test_large_build_shows_progress_from_the_start(monkeypatch, capsys):
    from recworld.simulator.build import build_parts

    scn = load_scenario({"data": {"source": "synthetic", "n_items": 50}, "population": {"size": 2000},
                         "social": {"graph": "none"}})
    build_parts(scn, progress=True)
    err = capsys.readouterr().err
    assert "building 2,000 users" in err and "social graph" in err
    build_parts(scn)                          # small: no bar unless asked
    assert "building" not in capsys.readouterr().err


def test_validate_plugins_can_skip_the_data():
    scn = load_scenario(BROKEN / "ml_rating_not_number.yaml")
    validate_plugins(scn, data=False)
    with pytest.raises(ScenarioError, match="ratings.csv:3"):
        validate_plugins(scn)


def test_corpus_files_are_small():
    total = sum(p.stat().st_size for p in BROKEN.rglob("*") if p.is_file())
    assert total < 2 * 2**20
