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
