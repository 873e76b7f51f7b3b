import subprocess
import sys


def test_import_simulator_loads_no_heavy_modules():
    # gymnasium (and numpy under it) is imported to register the environments; nothing heavier
    code = ("import sys, recworld.simulator; heavy = [m for m in ('pandas', 'simpy', 'pyarrow', 'matplotlib', 'pydantic', "
            "'networkx', 'litellm', 'openai', 'torch', 'stable_baselines3') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import recworld.simulator pulled in heavy modules: {out}"


def test_lazy_attributes_resolve():
    import recworld.simulator

    assert callable(recworld.simulator.load_run) and callable(recworld.simulator.run_scenario)
    assert recworld.simulator.Scenario.__name__ == "Scenario"
    try:
        recworld.simulator.not_a_thing
    except AttributeError as e:
        assert "not_a_thing" in str(e)
    else:
        raise AssertionError("unknown attribute did not raise")
