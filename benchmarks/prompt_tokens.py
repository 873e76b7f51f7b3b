"""Prompt tokens per LLM decision of a scenario, counted with an embedded model's tokenizer.

The scenario runs against the scripted loopback server (valid answers chosen by a hash of
the prompt, no model; log-probabilities for score requests), so the run takes seconds; every request's messages are then
rendered with the embedded model's chat template and tokenized by its llama.cpp server
(``/apply-template`` and ``/tokenize``), which gives the prompt tokens that model would be
sent.  Printed (one JSON line): mean prompt tokens per request of each purpose (page, page_pick,
activity, ...), the mean per session of the run (every request of the session), and
``five_page_session``: one activity decision plus five page decisions (two requests for a
``decision: logprobs`` page that picks something: both are counted, weighted by how often the
second one was needed).

    python benchmarks/prompt_tokens.py scenarios/llm_quickstart.yaml
    python benchmarks/prompt_tokens.py scenarios/llm_quickstart.yaml --set population.brain.decision=logprobs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import tempfile
import urllib.request
from pathlib import Path


def _post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(base.removesuffix("/v1") + path, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def responder(body: dict, n: int):
    """The scripted answers, plus score answers (log-probabilities over the page's labels, one
    of them or "none" most likely, by a hash of the prompt) and rating answers."""
    from recworld.simulator.testing.fakellm import Reply
    from recworld.simulator.testing.scripted import answer, schema_name

    h = int(hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()[:8], 16)
    if body.get("logprobs"):
        labels = re.findall(r"^(\w)\. ", body["messages"][-1]["content"], flags=re.MULTILINE)
        best = "0" if h % 3 == 0 or not labels else labels[h % len(labels)]
        top = {lab: -3.0 for lab in labels} | {"0": -2.0} | {best: -0.1}
        return Reply(best, top_logprobs=[top], completion_tokens=1)
    name = schema_name(body)
    if name.startswith("RatePage"):
        nxt = ["next", "leave", "search"][h % 3]
        return Reply(json.dumps({"watched": [{"rating": 1 + h % 5, "feeling": "fine"}] * int(name[8:]),
                                 "next": nxt, "query": "drama" if nxt == "search" else ""}))
    return answer(body, n)


def count(scenario: str, overrides: list[str], model: str) -> dict:
    from recworld.simulator.llm.embedded import EmbeddedLLM
    from recworld.simulator.run import load_run, run_scenario
    from recworld.simulator.testing.fakellm import FakeLLMServer

    with tempfile.TemporaryDirectory() as tmp, FakeLLMServer(responder) as srv:
        sets = overrides + ["llm.model=openai/scripted", f"llm.api_base={srv.url}", "llm.cache=false",
                            "llm.audit=true"]
        run = load_run(run_scenario(scenario, Path(tmp) / "run", overrides=sets, progress=False))
        calls = run.llm_calls
    calls = calls[calls["purpose"].notna()]
    with EmbeddedLLM(model, parallel=1) as llm:
        tokens = []
        for messages in calls["messages"]:
            prompt = _post(llm.api_base, "/apply-template", {"messages": list(messages)})["prompt"]
            tokens.append(len(_post(llm.api_base, "/tokenize", {"content": prompt, "add_special": True})["tokens"]))
    calls = calls.assign(tokens=tokens)
    per_purpose = {p: round(float(g["tokens"].mean()), 1) for p, g in calls.groupby("purpose")}
    n_purpose = {p: len(g) for p, g in calls.groupby("purpose")}
    sessions = calls.groupby(["user_id", "session"])["tokens"].sum()
    if "page_pick" in per_purpose:
        rate_share = n_purpose.get("page_rate", 0) / n_purpose["page_pick"]
        page = per_purpose["page_pick"] + rate_share * per_purpose.get("page_rate", 0.0)
    else:
        page = per_purpose.get("page", 0.0)
    return {"scenario": scenario, "overrides": overrides, "tokenizer": model, "requests": len(calls),
            "requests_per_purpose": n_purpose, "prompt_tokens_per_purpose": per_purpose,
            "prompt_tokens_per_page_decision": round(page, 1),
            "prompt_tokens_per_session": round(float(sessions.mean()), 1),
            "five_page_session": round(per_purpose.get("activity", 0.0) + 5 * page, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--model", default="gemma-3-270m", help="the embedded model whose tokenizer counts")
    args = ap.parse_args()
    print(json.dumps(count(args.scenario, args.overrides, args.model)), flush=True)


if __name__ == "__main__":
    main()
