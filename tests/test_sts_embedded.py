"""The STS study's rankings on the real embedded server (the 'local' extra): list answers."""

import json

import numpy as np
import pytest

pytest.importorskip("xllamacpp")
pytest.importorskip("litellm")

from recworld.simulator.data.sources import load_products  # noqa: E402
from recworld.simulator.llm.service import LLMService  # noqa: E402
from recworld.simulator.scenario import RecommenderConfig  # noqa: E402
from recworld.simulator.studies import sts  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.local_llm]


def test_two_rankings_at_once_answer_lists_of_shown_names_that_end_before_max_tokens(tmp_path):
    coffee = load_products("coffee_machines")
    svc = LLMService({"model": "embedded", "cache": False, "max_tokens": 160, "server_slots": 2,
                      "max_concurrency": 2, "timeout_s": 600}, log_path=tmp_path / "calls.jsonl")
    try:
        study = sts.Study(coffee, "ColdBrew Master", svc, "after_description", "Description", "coffee machine",
                          "I am looking for a {domain}.")
        rng = np.random.default_rng(0)
        jobs = [(RecommenderConfig(name="llm_ranker"), "", rng.permutation(study.n), s) for s in (1, 2)]
        ranks = study.rank_many(jobs)
    finally:
        svc.close()
    assert all(1 <= r <= study.n + 1 for r in ranks)
    names = set(coffee.titles)
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == 2
    for c in calls:
        listed = json.loads(c["answer"])["ranking"]
        assert listed and set(listed) <= names                  # only the catalog's names
        assert c["completion_tokens"] < 160                      # the answer ended with its list
    for st in study.last_stats:
        assert st["ranking_answers"] == 1 and st["unknown_name_answers"] == 0 and st["answers_at_max_tokens"] == 0
