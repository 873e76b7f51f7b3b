"""Fidelity: users built from given histories, brains asked outside a world, `recworld fidelity`."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from recworld.simulator.data.sources import load_movielens
from recworld.simulator.studies.fidelity import (FidelitySettings, SimulatedUsers, add_fidelity_arguments, auc,
                                                 classification, cmd_fidelity, fidelity_scenario, histogram,
                                                 run_fidelity, tv_distance)


@pytest.fixture(scope="module")
def tiny_users():
    return SimulatedUsers.from_movielens(_tiny(), users=[3, 1, 2], holdout={"fraction": 0.25}, seed=4)


def test_users_are_built_from_their_histories_in_the_order_given(tiny_users):
    u = tiny_users
    assert u.population.ids.tolist() == [3, 1, 2]
    hist = load_movielens(_tiny(), holdout={"fraction": 0.25}).ratings
    for k, uid in enumerate([3, 1, 2]):
        mine = hist[hist.user_id == uid]
        assert u.population.profiles["n_history"].iloc[k] == len(mine)
        assert set(u.population.history[k].tolist()) == set(mine["item"].tolist())
    assert u.heldout is not None and not set(zip(u.heldout.user_id, u.heldout.item)) & set(zip(hist.user_id, hist.item))


def _tiny():
    from pathlib import Path

    return Path(__file__).parent / "data" / "movielens_tiny"


def test_choose_and_rate_without_a_world(tiny_users):
    u = tiny_users
    items = u.catalog.ids[:10].tolist()
    picks = [u.choose(1, items) for _ in range(30)]
    assert all(set(p) <= set(items) and len(p) == len(set(p)) for p in picks)
    assert any(picks)
    r = u.rate(1, items[0])
    assert 0.5 <= r <= 5 and r * 2 == int(r * 2)
    # the same seed and the same calls give the same answers
    again = SimulatedUsers.from_movielens(_tiny(), users=[3, 1, 2], holdout={"fraction": 0.25}, seed=4)
    assert [again.choose(1, items) for _ in range(30)] == picks and again.rate(1, items[0]) == r
    # many pages at once are the same decisions as one by one, in the same order
    other = SimulatedUsers.from_movielens(_tiny(), users=[3, 1, 2], holdout={"fraction": 0.25}, seed=4)
    assert other.choose_many([(1, items)] * 30) == picks
    with pytest.raises(KeyError, match="user 99"):
        u.choose(99, items)


def test_scores_do_not_depend_on_the_order_shown(tiny_users):
    u = tiny_users
    items = u.catalog.ids[5:25]
    a = u.scores(2, items)
    b = u.scores(2, items[::-1])[::-1]
    assert np.allclose(a, b)


def test_users_from_a_table_of_histories():
    ml = load_movielens(_tiny())
    h = pd.DataFrame({"user_id": [7, 7, 7, 8, 8], "item_id": ml.catalog.ids[[0, 1, 2, 3, 4]],
                      "rating": [5.0, 4.5, 1.0, 3.0, 2.0], "timestamp": [1, 2, 3, 1, 2]})
    u = SimulatedUsers.from_histories(ml.catalog, h, seed=1)
    assert u.population.ids.tolist() == [7, 8]
    assert u.population.profiles["rating_mean"].round(3).tolist() == [3.5, 2.5]
    assert u.row(7) == 0 and u.row(8) == 1
    assert u.choose(8, ml.catalog.ids[10:20].tolist()) is not None
    with pytest.raises(ValueError, match="not in the catalog"):
        SimulatedUsers.from_histories(ml.catalog, h.assign(item_id=[10**9] * 5))


def test_metric_helpers():
    assert auc([3, 4], [1, 2]) == 1.0 and auc([1], [1]) == 0.5 and np.isnan(auc([], [1]))
    c = classification(np.array([[2, 1, 1, 6], [0, 0, 2, 8]]), np.random.default_rng(0), n_boot=50)
    assert c["micro"]["precision"] == pytest.approx(2 / 3) and c["micro"]["recall"] == pytest.approx(0.4)
    assert c["per_user"]["f1"] == pytest.approx((4 / 6 + 0) / 2)
    assert c["micro_ci"]["f1"][0] <= c["micro"]["f1"] <= c["micro_ci"]["f1"][1]
    h = histogram([0.5, 1, 1, 4.4, 5])
    assert h.sum() == pytest.approx(1) and h[1] == pytest.approx(0.4) and h[8] == pytest.approx(0.2)
    assert tv_distance(h, h) == 0 and tv_distance([1, 0], [0, 1]) == 1


def tiny_result(**kw):
    scn = fidelity_scenario(None, str(_tiny()), None, [])
    return run_fidelity(scn, FidelitySettings(bootstrap=50, **kw))


def test_the_protocol_on_the_tiny_data():
    res = tiny_result()
    assert res["data"]["users"] == res["data"]["eligible_users"] > 0
    users = pd.DataFrame(res["per_user"])
    for ratio, m in (("1:1", 1), ("1:3", 3), ("1:9", 9)):
        r = res["ratios"][ratio]
        for mth in ("brain", "random", "popularity", "genre"):
            for v in r[mth]["micro"].values():
                assert 0 <= v <= 1
        # every baseline made exactly as many picks as the brain, user by user (same totals)
        mine = users[users.ratio == m]
        picks = mine["picks"].sum()
        assert picks == pytest.approx(r["brain"]["pick_rate"] * r["shown"])
        # at most m negatives per positive (a tiny catalog runs out of unrated items)
        assert (mine["shown"] <= (m + 1) * mine["positives"]).all()
    h = res["ratings"]["histogram"]
    assert sum(h["simulated"]) == pytest.approx(1) and sum(h["real"]) == pytest.approx(1)
    assert {"brain", "user_mean", "item_mean", "global_mean", "brain_expected"} <= set(res["ratings"])
    # the same seed gives the same result
    again = tiny_result()
    assert json.dumps(again["ratios"]) == json.dumps(res["ratios"])
    assert json.dumps(again["ratings"]) == json.dumps(res["ratings"])


def test_baselines_pick_as_often_as_the_brain():
    res = tiny_result(ratios=(2,))
    r = res["ratios"]["1:2"]
    counts = {}
    for mth in ("brain", "random", "popularity", "genre"):
        p, rcl = r[mth]["micro"]["precision"], r[mth]["micro"]["recall"]
        counts[mth] = rcl / p if p else None        # picks / positives
    vals = [v for v in counts.values() if v is not None]
    assert np.allclose(vals, vals[0])


def cli(*argv):
    p = argparse.ArgumentParser()
    add_fidelity_arguments(p)
    return cmd_fidelity(p.parse_args([str(a) for a in argv]))


def test_the_command_writes_its_folder(tmp_path, capsys):
    out = tmp_path / "fid"
    assert cli("--data", _tiny(), "--out", out, "--ratios", "1,2", "--bootstrap", "20", "--no-progress") == 0
    assert {"fidelity.json", "fidelity.md", "fidelity_users.csv", "scenario.yaml"} <= {p.name for p in out.iterdir()}
    assert (out / "plots" / "f1_per_user.png").exists() and (out / "plots" / "rating_histogram.png").exists()
    body = json.loads((out / "fidelity.json").read_text())
    assert set(body["ratios"]) == {"1:1", "1:2"} and "provenance" in body
    assert "| 1:2 | **brain** |" in (out / "fidelity.md").read_text()
    assert "written to" in capsys.readouterr().out
    # an earlier fidelity folder is replaced only when asked
    with pytest.raises(FileExistsError):
        cli("--data", _tiny(), "--out", out, "--no-progress")
    assert cli("--data", _tiny(), "--out", out, "--overwrite", "--ratios", "1", "--bootstrap", "0",
               "--no-progress") == 0
    assert set(json.loads((out / "fidelity.json").read_text())["ratios"]) == {"1:1"}
    with pytest.raises(ValueError, match="--ratios"):
        cli("--data", _tiny(), "--out", tmp_path / "x", "--ratios", "one")
    with pytest.raises(ValueError, match="not both"):
        cli("scenarios/quickstart.yaml", "--data", _tiny())
    assert not (tmp_path / "x").exists()


def test_a_scenario_with_a_holdout_and_a_brain_setting(tmp_path):
    scn = tmp_path / "s.yaml"
    scn.write_text(f"name: fid\nseed: 3\ndata:\n  path: {_tiny()}\n  holdout:\n    fraction: 0.3\n"
                   "population:\n  brain:\n    name: parametric\n    no_click_utility: -3\nsession:\n  page_size: 5\n")
    assert cli(scn, "--out", tmp_path / "o", "--ratios", "1", "--bootstrap", "0", "--no-progress") == 0
    body = json.loads((tmp_path / "o" / "fidelity.json").read_text())
    assert body["settings"]["page_size"] == 5 and body["settings"]["seed"] == 3
    assert "30%" in body["data"]["holdout"] and body["brain"]["params"] == {"no_click_utility": -3}


def test_llm_users_choose_and_rate_through_the_service(tmp_path):
    pytest.importorskip("litellm")
    from recworld.simulator.testing.fakellm import FakeLLMServer, Reply
    from recworld.simulator.testing.scripted import answer, schema_name

    def responder(body, n):
        if schema_name(body) == "RatingAnswer":
            return Reply(json.dumps({"rating": 3.5 + (n % 2), "feeling": "fine"}))
        return answer(body, n)

    with FakeLLMServer(responder) as srv:
        out = tmp_path / "llm"
        code = cli("--data", _tiny(), "--brain", "llm", "--users", "3", "--ratios", "1", "--bootstrap", "0",
                   "--out", out, "--no-progress", "--set", "llm.model=openai/fake", "--set", f"llm.api_base={srv.url}",
                   "--set", f"llm.cache_path={tmp_path / 'cache.sqlite'}", "--set", "llm.retries=0")
        asked = [schema_name(b) for b in srv.requests]
    assert code == 0
    body = json.loads((out / "fidelity.json").read_text())
    assert body["data"]["users"] == 3 and body["llm"]["decisions"] > 0 and body["llm"]["fallbacks"] == 0
    assert asked.count("RatingAnswer") == body["ratings"]["brain"]["n"] > 0
    assert any(a.startswith("PageAnswer") for a in asked)
    sim = body["ratings"]["histogram"]["simulated"]
    assert sim[6] + sim[7] + sim[8] == pytest.approx(1)           # 3.5 and 4.5 as answered, nothing else
    calls = [json.loads(x) for x in (out / "llm_calls.jsonl").read_text().splitlines()]
    assert {c.get("purpose") for c in calls} >= {"page", "rate"}


# ----------------------------------------------------------------------------- the fitted model


def test_the_slate_likelihood_recovers_the_model_that_made_the_picks():
    """Picks simulated from a known chooser are fitted back to about its numbers."""
    from recworld.simulator.data import calibration as C

    rng = np.random.default_rng(0)
    n, size, F = 4000, 10, 4
    X = rng.normal(0, 1, (n, size, F))
    off = np.tile(-0.3 * np.log1p(np.arange(size)), (n, 1))
    true_b, c0, a = np.array([1.0, -0.5, 0.8, 0.0]), 1.5, 0.4
    d0 = C._Slates(X, off, np.zeros(1, dtype=np.int64), np.ones((1, size), dtype=bool), np.zeros(1), np.zeros(1),
                   np.zeros(1, dtype=np.int64), np.zeros((n, size), dtype=bool), np.zeros(n), np.ones(n, dtype=np.int64))
    picks = C.simulate_picks(d0, true_b, c0, a, 0.0, size, rng)
    # the picks' order does not matter for the recovery of the weights; take them by slot
    sp, sa, st, sc = [], [], [], []
    for p in range(n):
        avail = np.ones(size, dtype=bool)
        chosen = list(np.flatnonzero(picks[p])) + [-1]
        for t, j in enumerate(chosen):
            sp.append(p), sa.append(avail.copy()), st.append(t), sc.append(j)
            if j >= 0:
                avail[j] = False
    d = C._Slates(X, off, np.array(sp), np.array(sa), np.array(st, dtype=float), np.zeros(len(sp)), np.array(sc),
                  picks, np.zeros(n), np.ones(n, dtype=np.int64))
    fit = C.fit_slates(d, np.random.default_rng(1), sharpness=(1.0,))
    got = np.array([fit[f"slate_mle_{f}"] for f in C.CHOICE_FEATURES])
    assert np.allclose(got, true_b, atol=0.15)
    assert fit["slate_mle_no_click"] == pytest.approx(c0, abs=0.2) and fit["slate_mle_after_pick"] > 0


def test_prices_make_the_emitted_histogram_match():
    from recworld.simulator.data import calibration as C

    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(10) * 0.7, size=3000)
    allowed = np.ones((3000, 10), dtype=bool)
    allowed[:1000, C.HALF] = False                          # a third of the users never give half stars
    target = np.array([1, 3, 2, 8, 5, 19, 14, 26, 9, 12], dtype=float) / 99
    prices = C.fit_prices(P, allowed, target, 0.05)
    w = C.emission_weights(P, prices, 0.05, allowed)
    assert np.abs(w.mean(axis=0) - target / target.sum()).sum() / 2 < 0.01
    assert (w[:1000][:, C.HALF] == 0).all()


def test_the_fit_uses_the_history_it_is_given_and_only_that(tiny_ml):
    from recworld.simulator.data import calibration as C
    from recworld.simulator.data.sources import population_from_ratings

    ml = load_movielens(tiny_ml)
    users = np.sort(ml.ratings.user_id.unique())[:5]
    C._FITS.clear()
    a = C.fit_parametric(ml.catalog, ml.ratings, users)
    C._FITS.clear()
    b = C.fit_parametric(ml.catalog, ml.ratings, users[::-1])            # no cache: fitted again
    assert a.calibration == b.calibration
    assert np.array_equal(a.arrays["user_factors"], b.arrays["user_factors"][::-1])
    other = C.fit_parametric(ml.catalog, ml.ratings[ml.ratings.timestamp < ml.ratings.timestamp.max()], users)
    assert other.calibration != a.calibration
    assert {"slate_no_click", "slate_cf", "slate_sharpness", "rating_temperature", "rating_tilt_item_bias"} \
        <= set(a.calibration)
    assert a.arrays["rating_levels"].shape == (5, 10) and np.allclose(a.arrays["rating_levels"].sum(axis=1), 1)
    # the population of a scenario: the fitted model is added, nothing else changes and no draw is taken
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    with_fit = population_from_ratings(ml.catalog, ml.ratings, 6, r1, min_ratings=5)
    without = population_from_ratings(ml.catalog, ml.ratings, 6, r2, min_ratings=5, fit=False)
    pd.testing.assert_frame_equal(with_fit.profiles, without.profiles)
    assert {k: v for k, v in with_fit.calibration.items() if k in without.calibration} == without.calibration
    assert r1.random() == r2.random() and without.fitted == {} and with_fit.fitted


def test_fitted_users_rate_on_their_own_star_grid():
    ml = load_movielens(_tiny(), holdout={"fraction": 0.25})
    hist = ml.ratings.copy()
    whole = hist.user_id.isin([1, 2, 3])
    hist.loc[whole, "rating"] = np.ceil(hist.loc[whole, "rating"])         # three users give whole stars only
    u = SimulatedUsers.from_histories(ml.catalog, hist, brain="parametric", seed=2)
    assert u.brains[0].fitted                                               # the parametric brain is the fitted user
    halves = [bool(((h * 2) % 2 == 1).any()) for h in u.population.history_ratings]
    assert any(halves) and not all(halves)
    for k, uid in enumerate(u.population.ids.tolist()):
        got = [u.rate(uid, i) for i in u.catalog.ids[:25].tolist()]
        assert all(0.5 <= r <= 5 for r in got)
        if not halves[k]:
            assert all(r == int(r) for r in got), uid
    # without fitted numbers, or told not to use them, it is the hand-set model (whole stars)
    for params in ({"calibrate": False}, {"fitted": False}):
        plain = SimulatedUsers.from_movielens(_tiny(), holdout={"fraction": 0.25}, params=params, seed=2)
        assert not plain.brains[0].fitted
        assert {plain.rate(3, i) for i in plain.catalog.ids[:25].tolist()} <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_the_command_measures_the_fitted_brain(tmp_path):
    out = tmp_path / "fitted"          # parametric_fitted: the earlier name of the (now default) fitted brain
    assert cli("--data", _tiny(), "--brain", "parametric_fitted", "--out", out, "--ratios", "1", "--bootstrap", "0",
               "--no-progress", "--session") == 0
    body = json.loads((out / "fidelity.json").read_text())
    assert body["brain"]["names"] == ["parametric"] and body["brain"]["fitted"] is True
    assert body["settings"]["session"] is True and "slate_sharpness" in body["brain"]["calibration"]
    assert "fitted user model" in (out / "fidelity.md").read_text()


@pytest.mark.slow
def test_fidelity_of_the_fitted_user_on_the_full_movielens(ml_full):
    """The targets of the (fitted) parametric brain on ml-latest-small (a few minutes at most)."""
    from recworld.simulator.studies.fidelity import AGENT4REC_F1

    scn = fidelity_scenario(None, str(ml_full), None, [])
    res = run_fidelity(scn, FidelitySettings(bootstrap=0))
    assert res["brain"]["names"] == ["parametric"] and res["brain"]["fitted"]
    for ratio, r in res["ratios"].items():
        for kind in ("per_user", "micro"):
            assert r["brain"][kind]["f1"] > r["popularity"][kind]["f1"], (ratio, kind)
        assert r["brain"]["per_user"]["f1"] > AGENT4REC_F1[ratio]
    rt = res["ratings"]
    assert rt["brain"]["mae"] < rt["user_mean"]["mae"]
    assert rt["histogram"]["tv_distance"] < 0.10
    assert 0.25 < rt["histogram"]["half_star_share"]["simulated"] < 0.45


def test_a_mixed_population_is_measured_brain_by_brain(tmp_path):
    pytest.importorskip("litellm")
    from recworld.simulator.testing.fakellm import FakeLLMServer, Reply
    from recworld.simulator.testing.scripted import answer, schema_name

    def responder(body, n):
        if schema_name(body) == "RatingAnswer":
            return Reply(json.dumps({"rating": 4, "feeling": "fine"}))
        return answer(body, n)

    scn = tmp_path / "mixed.yaml"
    scn.write_text(f"name: mixed\ndata:\n  path: {_tiny()}\npopulation:\n  groups:\n    - share: 0.5\n"
                   "      brain:\n        name: llm\n")
    with FakeLLMServer(responder) as srv:
        out = tmp_path / "o"
        assert cli(scn, "--users", "6", "--ratios", "1", "--bootstrap", "0", "--rate-max", "2", "--out", out,
                   "--no-progress", "--set", "llm.model=openai/fake", "--set", f"llm.api_base={srv.url}",
                   "--set", "llm.cache=false") == 0
        rated = sum(schema_name(b) == "RatingAnswer" for b in srv.requests)
    body = json.loads((out / "fidelity.json").read_text())
    users = pd.read_csv(out / "fidelity_users.csv")
    assert body["brain"]["names"] == ["llm", "parametric"] and set(users["brain"]) == {"llm", "parametric"}
    assert rated == 2 * (users["brain"] == "llm").sum()            # only the LLM users asked the LLM


def test_max_positives_bounds_each_users_positives():
    full = tiny_result(ratios=(1,))
    capped = tiny_result(ratios=(1,), max_positives=1)
    assert capped["settings"]["max_positives"] == 1 and full["settings"]["max_positives"] is None
    users_full = pd.DataFrame(full["per_user"])
    users = pd.DataFrame(capped["per_user"])
    assert (users["positives"] == 1).all()
    assert (users_full["positives"] > 1).any()          # the cap changed something
    assert (users["shown"] <= 2).all()                  # one positive and at most one negative
    again = tiny_result(ratios=(1,), max_positives=1)
    assert json.dumps(again["ratios"]) == json.dumps(capped["ratios"])


def test_max_positives_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="max-positives"):
        cli("--data", _tiny(), "--max-positives", "0", "--out", tmp_path / "f", "--no-progress")
