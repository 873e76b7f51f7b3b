"""benchmarks/world_floor.py replays a run with the brain and recommender handing back recorded
answers; its figure means something only if the replay makes the same events."""

import importlib.util
from pathlib import Path

import pytest


def _floor():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "world_floor.py"
    spec = importlib.util.spec_from_file_location("world_floor", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("recommender", ["popularity", "random"])
def test_replay_makes_the_recorded_events(recommender):
    out = _floor().child("replayed", users=300, days=1.0, items=400, recommender=recommender, seed=3)
    assert out["events"] > 1000
    assert out["identical"], "the replayed world made other events than the recorded one"
    assert out["left_over"] == 0, "the replay left recorded answers unused"


def test_a_replay_that_skips_a_draw_is_caught():
    """One world draw lost from the tape: the replay must not pass for the recorded run."""
    import tempfile

    from recworld.simulator.build import build_parts, build_world
    from recworld.simulator.engine.events import read_events

    floor = _floor()
    scn = floor._scenario(200, 1.0, 300, "popularity", 1)
    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(scn, f"{tmp}/a", build_parts(scn))
        tapes = floor._record(world)
        world.run(progress=False)
        world.log.close()
        tapes["rng"].popleft()                        # one session gap lost: every later draw shifts
        world = build_world(scn, f"{tmp}/b", build_parts(scn))
        floor._replay(world, tapes)
        try:
            world.run(progress=False)
        except IndexError:                            # a tape ran out
            same = False
        else:
            world.log.close()
            same = read_events(f"{tmp}/a").equals(read_events(f"{tmp}/b"))
    assert not same
