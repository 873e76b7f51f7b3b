import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recworld.simulator.cli import main
from recworld.simulator.scenario import ScenarioError, load_scenario, validate_plugins

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, data, name="s.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def problems(excinfo):
    return dict(excinfo.value.problems)


def test_defaults_fill_an_empty_file(tmp_path):
    s = load_scenario(write(tmp_path, ""))
    assert s.population.size == 50 and s.recommender.name == "popularity"
    assert s.population.brain.name == "parametric" and s.data.source == "movielens"


def test_misspelled_key_names_the_field_and_suggests(tmp_path):
    with pytest.raises(ScenarioError) as e:
        load_scenario(write(tmp_path, {"population": {"szie": 10}}))
    msg = problems(e)["population.szie"]
    assert "unknown key" in msg and "did you mean 'size'" in msg and "activity" in msg


def test_misspelled_key_inside_data_union(tmp_path):
    with pytest.raises(ScenarioError) as e:
        load_scenario(write(tmp_path, {"data": {"source": "synthetic", "n_itemz": 5}}))
    assert "did you mean 'n_items'" in problems(e)["data.n_itemz"]


def test_out_of_range_value_names_field_and_range(tmp_path):
    with pytest.raises(ScenarioError) as e:
        load_scenario(write(tmp_path, {"social": {"rewire": 1.5}, "session": {"page_size": 0}}))
    p = problems(e)
    assert "less than or equal to 1" in p["social.rewire"] and "1.5" in p["social.rewire"]
    assert "greater than or equal to 1" in p["session.page_size"]


def test_bad_choice_lists_allowed_values(tmp_path):
    with pytest.raises(ScenarioError) as e:
        load_scenario(write(tmp_path, {"social": {"graph": "smallworld"}}))
    assert "'small_world'" in problems(e)["social.graph"] and "'scale_free'" in problems(e)["social.graph"]
    with pytest.raises(ScenarioError) as e:
        load_scenario(write(tmp_path, {"data": {"source": "netflix"}}))
    assert "movielens" in str(e.value) and "synthetic" in str(e.value)


def test_unknown_recommender_lists_known_ones():
    s = load_scenario({"recommender": {"name": "magic"}})
    with pytest.raises(ScenarioError) as e:
        validate_plugins(s)
    msg = problems(e)["recommender.name"]
    assert "'magic'" in msg and "popularity" in msg and "random" in msg


def test_recommender_parameters_are_validated_by_the_plugin():
    with pytest.raises(ScenarioError) as e:
        validate_plugins(load_scenario({"recommender": {"name": "popularity", "window_dayz": 3}}))
    assert "did you mean 'window_days'" in problems(e)["recommender.window_dayz"]
    with pytest.raises(ScenarioError) as e:
        validate_plugins(load_scenario({"recommender": {"name": "popularity", "window_days": -1}}))
    assert "greater than 0" in problems(e)["recommender.window_days"]
    with pytest.raises(ScenarioError) as e:
        validate_plugins(load_scenario({"population": {"brain": {"fatigue": "lots"}}}))
    assert "population.brain.fatigue" in problems(e)


def test_overrides_parse_yaml_values_and_create_sections(tmp_path):
    f = write(tmp_path, {"population": {"size": 10}})
    s = load_scenario(f, ["population.size=25", "session.think_minutes=0.5", "recommender.name=random",
                          "population.brain.no_click_utility=2", "name=x y"])
    assert s.population.size == 25 and s.session.think_minutes == 0.5 and s.recommender.name == "random"
    assert s.population.brain.name == "parametric" and s.population.brain.params == {"no_click_utility": 2}
    assert s.name == "x y"
    with pytest.raises(ScenarioError) as e:
        load_scenario(f, ["population.size=lots"])
    assert "population.size" in problems(e)
    with pytest.raises(ScenarioError, match="KEY=VALUE"):
        load_scenario(f, ["population.size"])


def test_switching_plugin_by_name_resets_its_parameters():
    base = {"recommender": {"name": "popularity", "window_days": 3}}
    s = load_scenario(base, ["recommender.name=random"])
    assert s.recommender.name == "random" and s.recommender.params == {}
    validate_plugins(s)
    s = load_scenario(base, ["recommender.name=random", "recommender.name=popularity", "recommender.refresh_minutes=5"])
    assert s.recommender.params == {"refresh_minutes": 5}
    assert load_scenario(base, ["recommender.name=popularity"]).recommender.params == {"window_days": 3}


def test_switching_data_source_keeps_only_keys_it_accepts():
    base = {"data": {"source": "movielens", "path": "/x", "min_ratings": 5}}
    s = load_scenario(base, ["data.source=products"])
    assert s.data.source == "products" and s.data.path == "/x"
    s = load_scenario(base, ["data.source=synthetic", "data.n_items=50"])
    assert s.data.n_items == 50


def test_relative_paths_are_relative_to_the_scenario_file(tmp_path):
    (tmp_path / "sub").mkdir()
    f = write(tmp_path / "sub", {"data": {"path": "../ml"}})
    assert load_scenario(f).data.path == str((tmp_path / "ml").resolve())
    # on the command line they are relative to the current directory
    assert load_scenario(f, ["data.path=elsewhere"]).data.path == str(Path.cwd() / "elsewhere")


def test_missing_files_are_named_by_field(tmp_path, capsys):
    f = write(tmp_path, {"data": {"path": "nope"}, "social": {"graph": "edgelist", "path": "edges.txt"}})
    with pytest.raises(ScenarioError) as e:
        validate_plugins(load_scenario(f), str(f))
    assert set(problems(e)) == {"data.path", "social.path"} and str(f) in str(e.value)
    assert main(["validate", str(f)]) != 0
    assert "data.path" in capsys.readouterr().err


def test_edgelist_graph_needs_a_path():
    with pytest.raises(ScenarioError, match="social.path"):
        load_scenario({"social": {"graph": "edgelist"}})


def test_resolved_yaml_round_trips():
    s = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    again = load_scenario(yaml.safe_load(s.to_yaml()))
    assert again == s


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_validate(path):
    assert main(["validate", str(path)]) == 0


def test_cli_validate_exit_codes(tmp_path, capsys):
    bad_key = write(tmp_path, {"populaton": {"size": 3}}, "bad_key.yaml")
    bad_val = write(tmp_path, {"duration_days": -2}, "bad_val.yaml")
    assert main(["validate", str(bad_key)]) != 0
    err = capsys.readouterr().err
    assert "populaton" in err and "did you mean 'population'" in err
    assert main(["validate", str(bad_val)]) != 0
    assert "duration_days" in capsys.readouterr().err
    assert main(["validate", str(bad_val), "--set", "duration_days=2"]) == 0
    assert main(["validate", str(tmp_path / "missing.yaml")]) != 0
    assert "does not exist" in capsys.readouterr().err


def test_console_script_validate():
    exe = Path(sys.executable).with_name("recworld")
    if not exe.exists():
        pytest.skip("recworld console script not installed in this environment")
    ok = subprocess.run([str(exe), "validate", str(ROOT / "scenarios" / "quickstart.yaml")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([str(exe), "validate", str(ROOT / "scenarios" / "quickstart.yaml"), "--set", "population.size=0"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "population.size" in bad.stderr


def test_llm_section_names_bad_fields():
    with pytest.raises(ScenarioError, match=r"llm\.embedded_model: .*known: gemma-3-270m"):
        load_scenario({"llm": {"embedded_model": "gpt5"}})
    with pytest.raises(ScenarioError, match=r"session\.batch_window"):
        load_scenario({"session": {"batch_window": 0}})
