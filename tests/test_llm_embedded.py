"""LLM agents on the real embedded server (the 'local' extra): scenarios/llm_quickstart.yaml, shrunk."""

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("xllamacpp")
pytest.importorskip("litellm")

from recworld.simulator.run import load_run, run_scenario  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.local_llm]
SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "llm_quickstart.yaml"


def test_llm_quickstart_on_the_embedded_model_then_a_cached_rerun(tmp_path):
    small = ["population.size=4", "duration_days=0.25", "population.activity.median_sessions_per_day=8",
             f"llm.cache_path={tmp_path / 'cache.sqlite'}"]
    a = load_run(run_scenario(SCENARIO, tmp_path / "a", overrides=small, progress=False))
    m = a.metrics["llm"]
    assert a.metrics["status"] == "completed" and m["calls"] > 0 and m["prompt_tokens"] > 0
    recs = [json.loads(x) for x in (a.path / "llm_calls.jsonl").read_text().splitlines()]
    assert len(recs) >= m["brain_decisions"] and all("gemma-3-270m" in r["model"] for r in recs)
    assert m["fallbacks"] <= m["brain_decisions"] // 2            # the compact grammar keeps answers valid
    b = load_run(run_scenario(SCENARIO, tmp_path / "b", overrides=small, progress=False))
    assert b.metrics["llm"]["calls"] == 0 and b.metrics["llm"]["cache_hits"] == len(recs)
    pd.testing.assert_frame_equal(a.events, b.events)


def test_the_embedded_server_scores_page_labels_by_logprobs():
    """decision: logprobs on the real server: one one-token request, candidates with
    log-probabilities, among them item labels the brain can score."""
    import numpy as np

    from recworld.agents.llm import PICK_FORMAT, label_logprobs, load_templates, pick_labels
    from recworld.simulator.llm.service import LLMRequest, LLMService

    labels = pick_labels(3)
    items = "\n".join(f"{lab}. {t}" for lab, t in zip(labels, ["Scream [Horror]", "Notting Hill [Romance]",
                                                               "Alien [Sci-Fi]"]))
    prompt = load_templates()["page_pick"].safe_substitute(day=1, clock="20:00", memories="(nothing yet)", page=1,
                                                           query_note="", items=items, label="number", none="0")
    svc = LLMService({"model": "embedded", "cache": False, "server_slots": 1})
    try:
        r = svc.complete_many([LLMRequest([{"role": "system", "content": f"You love horror films.\n{PICK_FORMAT}"},
                                           {"role": "user", "content": prompt}], None, 1, logprobs=20)])[0]
    finally:
        svc.close()
    assert r.ok and r.completion_tokens == 1 and len(r.top_logprobs) == 1
    cands = r.top_logprobs[0]
    assert 10 <= len(cands) <= 20 and all(lp <= 0 for lp in cands.values())
    assert np.isfinite(label_logprobs(r.top_logprobs, labels)).any()
