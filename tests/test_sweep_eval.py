"""Intervals in `recworld train`'s evaluation: a two-level bootstrap over seeds and episodes,
and the trained policy's advantage over each baseline paired by episode reset."""

import json
from pathlib import Path

import numpy as np
import pytest

from recworld.simulator.studies.rl import EvalResult, bootstrap_interval, builtin_policy, compare_to, evaluate

ROOT = Path(__file__).resolve().parents[1]
RL = ROOT / "scenarios" / "rl_session.yaml"
SMALL = ["population.size=40", "data.n_items=200"]


def test_bootstrap_interval_is_reproducible_and_counts_both_levels():
    rng = np.random.default_rng(1)
    returns = [list(rng.normal(mu, 1.0, 50)) for mu in (0.0, 1.0, 2.0, 3.0)]
    lo, hi = bootstrap_interval(returns)
    assert (lo, hi) == bootstrap_interval(returns)                   # its own generator
    mean = np.mean(returns)
    assert lo < mean < hi
    pooled = bootstrap_interval([[x for r in returns for x in r]])   # as if one seed: episodes only
    assert hi - lo > 2 * (pooled[1] - pooled[0])                     # seeds that differ widen the interval
    assert np.isnan(bootstrap_interval([[1.0]])[0])
    one = bootstrap_interval([[0.0, 1.0] * 20])                      # one seed still has an interval
    assert 0.0 < one[0] < 0.5 < one[1] < 1.0


def test_evaluation_reports_an_interval_and_paired_advantage():
    pop = evaluate(lambda env, s: builtin_policy("popularity", env, s), str(RL), [1, 2], 6, overrides=SMALL,
                   name="popularity")
    rnd = evaluate(lambda env, s: builtin_policy("random", env, s), str(RL), [1, 2], 6, overrides=SMALL,
                   name="random")
    assert pop.seeds == [1, 2] and [len(r) for r in pop.returns] == [6, 6]
    assert pop.mean == pytest.approx(np.mean(pop.returns)) and pop.per_seed == pytest.approx(np.mean(pop.returns, 1))
    assert pop.ci_low <= pop.mean <= pop.ci_high
    compare_to(rnd, pop)
    assert rnd.advantage_of == "popularity"
    assert rnd.advantage == pytest.approx(pop.mean - rnd.mean)
    assert rnd.advantage_low <= rnd.advantage <= rnd.advantage_high
    with pytest.raises(ValueError, match="same seeds"):
        compare_to(EvalResult("x", 0, 0, [0], 6, seeds=[9], returns=[[0.0] * 6]), pop)


def test_cli_train_prints_intervals_and_writes_them(tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    from recworld.simulator.cli import main

    out = tmp_path / "t"
    args = ["train", str(RL), "--steps", "64", "--eval-seeds", "2", "--eval-episodes", "4", "--out", str(out),
            "--no-progress"]
    for s in SMALL:
        args += ["--set", s]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "95% interval (bootstrap over seeds and episodes)" in text and "ppo - random:" in text
    res = {r["policy"]: r for r in json.loads((out / "results.json").read_text())}
    assert res["ppo"]["ci_low"] <= res["ppo"]["mean"] <= res["ppo"]["ci_high"] and res["ppo"]["advantage_of"] is None
    assert res["random"]["advantage_of"] == "ppo" and len(res["random"]["returns"]) == 2
    assert "## Evaluation" in (out / "report.md").read_text()
