"""The world's own cost per event: the same run with the brain and the recommender for free.

``world_scale.py`` measures the parametric world as users run it.  This script splits that
cost: it runs the same world (default 10,000 users, one day, 5,000 synthetic items,
popularity) three times, each in its own process,

1. **full**: as ``world_scale.py`` does (the CPU time of ``World.run``);
2. **recorded**: once more with every brain decision, every slate of the recommender and the
   world's own random draws (session gaps, chat partners) written down;
3. **replayed**: a fresh world whose brain and recommender only hand back what was written
   down (a list lookup per call) and whose users' random draws come from the recording.

The replay makes the same events as the full run (checked: the two event logs are compared
column by column), so what it costs is what the engine costs on its own: simpy's scheduling,
the user processes, the page loop, the protocol objects (requests, slates, feedback) and the
event log.  That is the ceiling on events per CPU-second for any brain and recommender
plugged into the world through its per-page Python protocol.

    python benchmarks/world_floor.py                   # 10,000 users
    python benchmarks/world_floor.py --users 1000 --days 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import deque

BRAIN_CALLS = ("choose_activity", "search_query", "choose_from_slate", "consume", "chat", "write_post", "read_post",
               "slate_click_probability", "best_click_probability")


def _scenario(users: int, days: float, items: int, recommender: str, seed: int):
    """The world world_scale.py measures (a copy: each benchmark runs as a script on its own)."""
    from recworld.simulator.scenario import load_scenario

    return load_scenario({
        "name": f"floor-{users}", "seed": seed, "duration_days": days,
        "data": {"source": "synthetic", "n_items": items, "n_genres": 15},
        "population": {"size": users}, "social": {"graph": "small_world", "degree": 10},
        "recommender": {"name": recommender},
    })


class _RecordingRng:
    """A user's generator that writes down the draws the world makes itself (not its brain's)."""

    def __init__(self, rng, tape: deque, depth: list):
        self._rng, self._tape, self._depth = rng, tape, depth

    def __getattr__(self, name):
        fn = getattr(self._rng, name)
        if not callable(fn):
            return fn

        def call(*args, **kw):
            out = fn(*args, **kw)
            if not self._depth[0]:
                self._tape.append(out)
            return out
        return call


class _ReplayRng:
    """A user's generator that hands back the world's recorded draws."""

    def __init__(self, tape: deque):
        self._next = tape.popleft

    def exponential(self, *args, **kw):
        return self._next()

    def integers(self, *args, **kw):
        return self._next()


def _record(world) -> dict:
    """Wrap the brains, the recommender and the users' generators so that the run writes down
    what they return (calls a brain makes to itself are not written down)."""
    tapes: dict[str, deque] = {name: deque() for name in (*BRAIN_CALLS, "recommend", "rng")}
    depth = [0]
    for brain in world.distinct_brains:
        for name in BRAIN_CALLS:
            fn = getattr(brain, name)

            def wrapped(*args, _fn=fn, _tape=tapes[name], **kw):
                depth[0] += 1
                try:
                    out = _fn(*args, **kw)
                finally:
                    depth[0] -= 1
                if not depth[0]:
                    _tape.append(out)
                return out
            setattr(brain, name, wrapped)
    rec = world.recommender.recommend

    def recommend(request):
        out = rec(request)
        tapes["recommend"].append(out)
        return out
    world.recommender.recommend = recommend
    for st in world.states:
        st.rng = _RecordingRng(st.rng, tapes["rng"], depth)
    return tapes


def _replay(world, tapes: dict) -> None:
    """Make the brains, the recommender and the users' draws hand back the recording."""
    for brain in world.distinct_brains:
        for name in BRAIN_CALLS:
            tape = tapes[name]
            setattr(brain, name, lambda *a, _next=tape.popleft, **kw: _next())
    nxt = tapes["recommend"].popleft
    world.recommender.recommend = lambda request: nxt()
    world.recommender.update = lambda feedback: None
    rng = _ReplayRng(tapes["rng"])
    for st in world.states:
        st.rng = rng


def _timed_run(world) -> float:
    """CPU seconds of ``world.run``.  What exists before it (the build; for the replay, also the
    recording) is frozen first, so that the run's own ``gc.collect`` does not scan the
    recording: both runs start from the same garbage collector state."""
    import gc
    import time

    gc.collect()
    gc.freeze()
    try:
        c0 = time.process_time()
        world.run(progress=False)
        return time.process_time() - c0
    finally:
        gc.unfreeze()


def child(mode: str, users: int, days: float, items: int, recommender: str, seed: int) -> dict:
    from recworld.simulator.build import build_parts, build_world
    from recworld.simulator.engine.events import read_events

    scn = _scenario(users, days, items, recommender, seed)
    out: dict = {"mode": mode, "users": users}
    with tempfile.TemporaryDirectory() as tmp:
        parts = build_parts(scn)
        if mode == "full":
            world = build_world(scn, f"{tmp}/full", parts)
            out["run_cpu_s"] = _timed_run(world)
            world.log.close()
            out["events"] = world.log.count
            return out
        world = build_world(scn, f"{tmp}/recorded", parts)
        tapes = _record(world)
        world.run(progress=False)
        world.log.close()
        recorded = read_events(f"{tmp}/recorded")
        world = build_world(scn, f"{tmp}/replayed", build_parts(scn))
        _replay(world, tapes)
        out["run_cpu_s"] = _timed_run(world)
        world.log.close()
        out["events"] = world.log.count
        out["identical"] = bool(recorded.equals(read_events(f"{tmp}/replayed")))
        out["left_over"] = sum(len(t) for t in tapes.values())      # recorded calls the replay did not ask for
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--recommender", default="popularity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3, help="full and replayed runs, alternating (medians printed)")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rounds < 1 or a.users < 1 or a.days <= 0 or a.items < 1:
        ap.error("--rounds, --users and --items must be at least 1 and --days above 0")
    if a._child:
        print(json.dumps(child(a._child, a.users, a.days, a.items, a.recommender, a.seed)))
        return
    runs: dict[str, list[dict]] = {"full": [], "replayed": []}
    for _ in range(a.rounds):
        for mode, done in runs.items():
            cmd = [sys.executable, __file__, "--_child", mode, "--users", str(a.users), "--days", str(a.days),
                   "--items", str(a.items), "--recommender", a.recommender, "--seed", str(a.seed)]
            r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            done.append(r)
    full, replayed = runs["full"], runs["replayed"]
    if not all(r["identical"] and r["left_over"] == 0 for r in replayed) or \
            len({r["events"] for r in full + replayed}) != 1:
        sys.exit(f"the replay did not make the full run's events: {json.dumps(runs)}")

    def median(rs):
        rates = sorted(r["events"] / r["run_cpu_s"] for r in rs)
        return rates[len(rates) // 2], rates

    f_med, f_all = median(full)
    r_med, r_all = median(replayed)
    events = full[0]["events"]
    print(f"parametric world, {a.users:,} users, {a.days:g} simulated day(s), {a.items} items, "
          f"recommender={a.recommender}: {events:,} events (the replay's are identical); "
          f"CPU time of World.run (after gc.freeze), median of {a.rounds}")
    print(f"  full run                                  {f_med:>9,.0f} events/CPU-s  "
          f"({', '.join(f'{x:,.0f}' for x in f_all)})")
    print(f"  engine alone (brain, recommender replayed) {r_med:>8,.0f} events/CPU-s  "
          f"({', '.join(f'{x:,.0f}' for x in r_all)})")
    print(f"  share of the full run's CPU that is the engine's own: {f_med / r_med:.0%}; "
          f"the brain and the recommender: {1 - f_med / r_med:.0%}")


if __name__ == "__main__":
    main()
