"""How busy the LLM server is during an STS study: wall time and requests in flight.

    python benchmarks/sts_concurrency.py scenarios/sts_coffee.yaml --out /tmp/sts-bench \
        --set llm.cache=false

runs ``recworld sts`` on the scenario while a thread samples, every 0.1 s, how many calls the
study's LLM service has sent and not yet had answered (the embedded server decodes at most
``llm.server_slots`` of them at once).  It prints the wall time of the study part (search and
protocol, until the service is closed for the world runs) and of the whole command, the
share of samples with 0, 1, 2, ... calls in flight, and the mean; and it counts, from
``llm_calls.jsonl`` (``llm.audit`` must be on, the default), the ranking answers that name
something that is not one of the items shown and the answers that ran to ``max_tokens``
(``--audit LLM_CALLS_JSONL`` counts them in any run's call log).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path

RANKING_PURPOSES = ("rank", "toolrec_rerank", "toolrec_final")
_NAME = re.compile(r'"(?:Name|name)":\s*"((?:[^"\\]|\\.)*)"')


def names_shown(messages: list[dict]) -> list[str]:
    """The item names of a ranking prompt's catalog lines (JSON objects with a Name / name)."""
    return [json.loads(f'"{m}"') for m in _NAME.findall(messages[-1]["content"])]


def audit(calls: Path, max_tokens: int) -> dict:
    """Ranking answers in a call log: how many, how many name something not shown, how many
    ran to max_tokens, their mean length in tokens."""
    from recworld.recommenders.llm import unknown_entries

    n = foreign = capped = tokens = 0
    for line in calls.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("purpose") not in RANKING_PURPOSES or "messages" not in rec or not rec.get("answer"):
            continue
        n += 1
        foreign += int(unknown_entries(rec["answer"], names_shown(rec["messages"])) > 0)
        tokens += int(rec.get("completion_tokens") or 0)
        capped += int(int(rec.get("completion_tokens") or 0) >= max_tokens)
    return {"ranking_answers": n, "answers_naming_items_not_shown": foreign,
            "answers_at_max_tokens": capped, "mean_answer_tokens": round(tokens / n, 1) if n else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", nargs="?")
    ap.add_argument("--out")
    ap.add_argument("--audit", metavar="LLM_CALLS_JSONL", help="only count the ranking answers of this call log")
    ap.add_argument("--max-tokens", type=int, default=160, help="with --audit: the run's llm.max_tokens")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--no-world", action="store_true")
    args = ap.parse_args()
    if args.audit:
        print(json.dumps(audit(Path(args.audit), args.max_tokens), indent=1))
        return 0
    if not (args.scenario and args.out):
        ap.error("give a scenario and --out (or --audit LLM_CALLS_JSONL)")

    import recworld.simulator.llm.service as service_module
    from recworld.simulator.studies.sts import run_sts

    services, samples, closed = [], [], []
    make = service_module.service_from_scenario

    def spy(*a, **k):
        svc = make(*a, **k)
        services.append(svc)
        close = svc.close

        def close_and_note():
            if not closed:
                closed.append(time.perf_counter())
            close()
        svc.close = close_and_note
        return svc

    service_module.service_from_scenario = spy
    stop = threading.Event()

    def sample():
        while not stop.wait(0.1):
            if services and not closed:
                samples.append(services[0]._in_flight)

    threading.Thread(target=sample, daemon=True).start()
    overrides = list(args.overrides) + (["sts.world=false"] if args.no_world else [])
    t0 = time.perf_counter()
    run_sts(args.scenario, args.out, overrides, progress=False, overwrite=True)
    total = time.perf_counter() - t0
    stop.set()
    study = (closed[0] - t0) if closed else total
    hist = Counter(samples)
    n = max(len(samples), 1)
    res = {"study_wall_s": round(study, 1), "total_wall_s": round(total, 1),
           "in_flight_share": {k: round(hist[k] / n, 3) for k in sorted(hist)},
           "mean_in_flight": round(sum(samples) / n, 2),
           **audit(Path(args.out) / "llm_calls.jsonl", services[0].config.max_tokens)}
    print(json.dumps(res, indent=1))
    (Path(args.out) / "concurrency.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
