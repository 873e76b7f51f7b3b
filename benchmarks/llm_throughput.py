"""How well the world keeps an LLM server busy, and what an LLM agent costs per decision.

(a) Simulator efficiency: the shipped ``llm_quickstart`` scenario (its activity, sessions and
    social settings; synthetic data so that it scales to any number of users) against a
    loopback fake OpenAI-compatible server that answers after a fixed latency L with at most
    C requests in flight.  The best any client can do is C/L requests per second; we print
    achieved requests/s, the ratio, requests in flight and CPU per call, in strict time and in
    synchronous windows (``world.sync_minutes``).  With windows, the chain bound is what no
    client can beat: per window, the longest chain of dependent calls of one user times L.
(b) The embedded llama.cpp server with the packaged model: the same page decisions sent
    one at a time and batched (several in flight, decoded together by the server's slots).
(c) LLM calls and tokens per agent decision, from (a) and (b).

    python benchmarks/llm_throughput.py                       # (a) for 100 and 1,000 agents, then (b)
    python benchmarks/llm_throughput.py --part efficiency --agents 100 --latency 0.5 --capacity 16 --sync 0 60
    python benchmarks/llm_throughput.py --part embedded --decisions 16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


class _server_process:
    """The fake server in a process of its own, as a real server would be: its threads do not
    share the client's interpreter lock, so the client's CPU per call is the client's."""

    def __init__(self, latency: float, capacity: int):
        self.latency, self.capacity = latency, capacity

    def __enter__(self):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(self.latency), str(self.capacity)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"the fake server did not start: {self.url!r}")
        return self

    def max_seen_in_flight(self) -> int:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def __exit__(self, *exc):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _serve(latency: float, capacity: int) -> None:
    import sys

    from recworld.simulator.testing.fakellm import FakeLLMServer
    from recworld.simulator.testing.scripted import answer

    def slow(body, n):
        r = answer(body, n)
        r.delay = latency
        return r

    with FakeLLMServer(slow, max_in_flight=capacity) as srv:
        print(srv.url, flush=True)
        for line in sys.stdin:
            if line.strip() == "stats":
                print(srv.max_seen_in_flight, flush=True)


def efficiency(agents: int, latency: float, capacity: int, sim_minutes: float, sync: float | None = None,
               seed: int = 0) -> dict:
    """The shipped ``llm_quickstart`` (its activity, session and social settings) with ``agents``
    users on synthetic data, against a fake server; ``sync`` overrides ``world.sync_minutes``."""
    import resource
    from pathlib import Path

    from recworld.simulator.build import build_world
    from recworld.simulator.llm.service import LLMService
    from recworld.simulator.scenario import load_scenario
    sets = [f"population.size={agents}", "data.source=synthetic", f"duration_days={sim_minutes / 1440!r}",
            f"seed={seed}", "output.plots=false"]
    if sync is not None:
        sets.append(f"world.sync_minutes={sync!r}")
    scn = load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "llm_quickstart.yaml", overrides=sets)
    with _server_process(latency, capacity) as srv, tempfile.TemporaryDirectory() as tmp:
        svc = LLMService({"model": "openai/fake", "api_base": srv.url, "cache": False, "max_concurrency": capacity,
                          "timeout_s": 60 + 10 * latency})
        world = build_world(scn, tmp, llm=svc)
        svc.complete([{"role": "user", "content": "warm-up"}])        # import litellm outside the clock
        calls0 = svc.totals.calls
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        world.run(progress=False)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        world.close()
        svc.close()
        calls = svc.totals.calls - calls0
        ideal = capacity / latency
        st = world.batcher.stats()
        row = {"agents": agents, "sync_minutes": scn.world.sync_minutes, "latency_s": latency, "capacity": capacity,
               "sim_minutes": sim_minutes, "requests": calls, "wall_s": round(wall, 2),
               "requests_per_s": round(calls / wall, 2), "ideal_per_s": round(ideal, 2),
               "efficiency": round(calls / wall / ideal, 3),
               "cpu_ms_per_call": round(1000 * ((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime))
                                        / max(calls, 1), 2),
               "mean_batch": st["mean_batch"], "mean_in_flight": st.get("mean_in_flight"),
               "max_in_flight_seen": srv.max_seen_in_flight()}
        if world.batcher.window_log:
            # no client can beat, per window, its requests at C/L nor its longest chain of dependent calls
            bound = sum(max(n * latency / capacity, chain * latency) for n, chain in world.batcher.window_log)
            row["chain_bound_per_s"] = round(calls / bound, 2) if bound else None
            row["efficiency_vs_chain_bound"] = round((calls / wall) / (calls / bound), 3) if bound and calls else None
        return row


def embedded(decisions: int, slots: int, seed: int = 0) -> list[dict]:
    """Page decisions of real LLM agents on the bundled MovieLens sample, sequential vs batched."""
    import numpy as np

    from recworld.simulator.build import build_parts, make_brain, make_recommender
    from recworld.simulator.llm.service import service_from_scenario
    from recworld.simulator.protocols import SlateRequest, UserState
    from recworld.simulator.scenario import load_scenario

    scn = load_scenario({"seed": seed, "population": {"size": 2 * decisions, "brain": {"name": "llm"}},
                         "session": {"page_size": 5}, "llm": {"cache": False, "server_slots": slots,
                                                             "max_concurrency": slots, "temperature": 0.0}})
    parts = build_parts(scn)
    rec = make_recommender(scn, parts)
    svc = service_from_scenario(scn.llm)
    try:
        brain = make_brain(scn, parts, llm=svc)
        requests = []            # two disjoint sets of users, so the server's prompt cache cannot help the second mode
        for u in range(2 * decisions):
            st = UserState(u, int(parts.population.ids[u]), np.random.default_rng(u))
            slate = rec.recommend(SlateRequest(user=u, k=5, user_id=st.user_id))
            requests += brain.choose_from_slate(st, slate.items, 0, 600.0).requests
        svc.complete([{"role": "user", "content": "Say hi."}])            # warm-up
        rows = []
        for k, (label, conc) in enumerate((("sequential", 1), (f"batched ({slots} in flight)", slots))):
            svc.config.max_concurrency = conc
            mine = requests[k * decisions:(k + 1) * decisions]
            before = (svc.totals.calls, svc.totals.prompt_tokens, svc.totals.completion_tokens, svc.totals.fallbacks)
            t0 = time.perf_counter()
            svc.complete_many(mine)
            wall = time.perf_counter() - t0
            t = svc.totals
            n = len(mine)
            rows.append({"mode": label, "decisions": n, "wall_s": round(wall, 2),
                         "decisions_per_s": round(n / wall, 3),
                         "calls_per_decision": round((t.calls - before[0]) / n, 2),
                         "prompt_tokens_per_decision": round((t.prompt_tokens - before[1]) / n, 1),
                         "completion_tokens_per_decision": round((t.completion_tokens - before[2]) / n, 1),
                         "fallbacks": t.fallbacks - before[3]})
        return rows
    finally:
        svc.close()


def main() -> None:
    import sys

    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        return _serve(float(sys.argv[2]), int(sys.argv[3]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "efficiency", "embedded"], default="all")
    ap.add_argument("--agents", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--latency", type=float, default=0.5, help="fake server latency L, seconds")
    ap.add_argument("--capacity", type=int, nargs="+", default=[16],
                    help="fake server requests in flight C, one per --agents value")
    ap.add_argument("--sim-minutes", type=float, default=1440.0, help="simulated minutes (default: the scenario's day)")
    ap.add_argument("--sync", type=float, nargs="+", default=[0.0, 60.0],
                    help="world.sync_minutes values to run (0: strict time)")
    ap.add_argument("--decisions", type=int, default=16, help="(b) page decisions to time")
    ap.add_argument("--slots", type=int, default=4, help="(b) embedded server slots")
    args = ap.parse_args()
    if args.part in ("all", "efficiency"):
        print("(a) llm_quickstart's users against a fake server (latency L, capacity C); ideal = C/L requests/s")
        caps = args.capacity + [args.capacity[-1]] * (len(args.agents) - len(args.capacity))
        for n, c in zip(args.agents, caps):
            for sync in args.sync:
                print(json.dumps(efficiency(n, args.latency, c, args.sim_minutes, sync)), flush=True)
    if args.part in ("all", "embedded"):
        print("(b) embedded server: page decisions, sequential vs batched")
        for row in embedded(args.decisions, args.slots):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
