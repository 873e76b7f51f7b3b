from pathlib import Path

import numpy as np
import pytest

from recworld.recommenders.bandits import LinUCB
from recworld.recommenders.personal import ContentBased, ItemKNN, MatrixFactorization
from recworld.simulator import load_run, run_scenario
from recworld.simulator.data.sources import load_movielens
from recworld.simulator.studies.evaluate import evaluate_offline, leave_last_out
from recworld.simulator.protocols import Feedback, Slate, SlateRequest
from recworld.simulator.registry import available

ROOT = Path(__file__).resolve().parents[1]
PERSONAL = [MatrixFactorization, ItemKNN, ContentBased, LinUCB]


@pytest.fixture(scope="module")
def ml():
    return load_movielens(Path(__file__).parent / "data" / "movielens_tiny")


def fitted(cls, ml, **params):
    rec = cls(params, rng=np.random.default_rng(0))
    rec.fit(ml.ratings, ml.catalog)
    return rec


def request(ml, uid, k=5, time=0.0, user=0):
    seen = ml.ratings.loc[ml.ratings["user_id"] == uid, "item"].to_numpy()
    return SlateRequest(user=user, k=k, exclude=seen, user_id=uid, time=time)


@pytest.mark.parametrize("cls", PERSONAL, ids=lambda c: c.name)
def test_recommends_unseen_items_and_personalises(cls, ml):
    rec = fitted(cls, ml)
    tops = {}
    for j, uid in enumerate(ml.ratings["user_id"].unique()):
        req = request(ml, int(uid), user=j)
        items = rec.recommend(req).items
        assert len(items) == 5 and not set(items.tolist()) & set(req.exclude.tolist())
        tops[int(uid)] = tuple(items.tolist())
    assert len(set(tops.values())) > 3          # different users, different lists


@pytest.mark.parametrize("cls", PERSONAL, ids=lambda c: c.name)
def test_unknown_user_gets_a_full_slate(cls, ml):
    rec = fitted(cls, ml)
    assert len(rec.recommend(SlateRequest(user=99, k=5, user_id=424242)).items) == 5


def test_mf_refits_on_feedback_after_the_interval(ml):
    rec = fitted(MatrixFactorization, ml, refit_minutes=60)
    newcomer = 777
    assert rec.user_scores(SlateRequest(user=0, k=5, user_id=newcomer)) is None
    rec.update(Feedback(0, Slate(np.array([3, 4])), np.array([0, 1]), np.array([4.0, 5.0]), np.zeros(2), 10.0,
                        user_id=newcomer))
    rec.recommend(SlateRequest(user=0, k=5, user_id=newcomer, time=30.0))
    assert rec.user_scores(SlateRequest(user=0, k=5, user_id=newcomer)) is None     # not yet refitted
    rec.recommend(SlateRequest(user=0, k=5, user_id=newcomer, time=100.0))
    assert rec.user_scores(SlateRequest(user=0, k=5, user_id=newcomer)) is not None


def test_content_profile_follows_what_was_watched(ml):
    rec = fitted(ContentBased, ml)
    target = 5
    rec.update(Feedback(0, Slate(np.array([target])), np.array([0]), np.array([5.0]), np.zeros(1), 0.0, user_id=888))
    scores = rec.item_scores(SlateRequest(user=0, k=5, user_id=888), np.arange(len(ml.catalog)))
    assert np.argmax(scores) == target


def test_linucb_learns_from_clicks(ml):
    rec = fitted(LinUCB, ml, warm_start=False, alpha=0.0)
    g = ml.catalog.genre_matrix
    liked = np.flatnonzero(g[:, 0] == 1)[:6]
    other = np.flatnonzero(g[:, 0] == 0)[:6]
    for _ in range(20):
        rec.update(Feedback(0, Slate(np.concatenate([liked[:3], other[:3]])), np.arange(3), np.full(3, 4.0),
                            np.zeros(3), 0.0, user_id=999))
    s = rec.item_scores(SlateRequest(user=0, k=5, user_id=999), np.concatenate([liked[3:], other[3:]]))
    assert s[:3].mean() > s[3:].mean()


def test_leave_last_out_holds_out_each_users_latest(ml):
    train, test = leave_last_out(ml.ratings)
    assert test["user_id"].is_unique and len(train) + len(test) == len(ml.ratings)
    latest = ml.ratings.groupby("user_id")["timestamp"].max()
    assert (test.set_index("user_id")["timestamp"] == latest.loc[test["user_id"]].to_numpy()).all()


def test_offline_ordering_on_movielens(ml_full):
    table = evaluate_offline(ml_full, ["random", "popularity", "mf", "itemknn"]).set_index("recommender")
    ndcg = table["ndcg@10"]
    assert ndcg["mf"] > ndcg["popularity"] > ndcg["random"]
    assert ndcg["itemknn"] > ndcg["popularity"]
    assert table["users"].iloc[0] == 610 and (table["coverage"] > 0).all()


def test_cli_evaluate_writes_tables(tmp_path, capsys):
    from recworld.simulator.cli import main

    assert main(["evaluate", "--recommenders", "random,popularity", "--users", "30", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    assert "| popularity |" in capsys.readouterr().out
    for f in ("offline_eval.csv", "offline_eval.json", "offline_eval.md"):
        assert (tmp_path / f).exists()
    assert main(["evaluate", "--recommenders", "nope"]) != 0


LLM_RECS = {"llm_ranker": ["recommender.candidates=8", "recommender.item_chars=60"],
            "toolrec": ["recommender.candidates=8", "recommender.item_chars=60", "recommender.max_rounds=3",
                        "recommender.pool=10"]}


def _served():
    for n in available("recommenders"):
        if n in LLM_RECS:        # on the embedded model, in a smaller world
            yield pytest.param(n, ["population.size=8", "duration_days=0.5", "population.activity.median_sessions_per_day=6",
                                   "llm.max_tokens=120"] + LLM_RECS[n], id=n, marks=pytest.mark.local_llm)
        elif n != "policy":
            yield pytest.param(n, ["duration_days=1"], id=n)


@pytest.mark.slow
@pytest.mark.parametrize("name,extra", list(_served()))
def test_every_recommender_serves_the_quickstart_world(name, extra, tmp_path):
    out = run_scenario(ROOT / "scenarios" / "quickstart.yaml", tmp_path / name, progress=False,
                       overrides=[f"recommender.name={name}", f"llm.cache_path={tmp_path / 'cache.sqlite'}"] + extra)
    run = load_run(out)
    assert run.metrics["status"] == "completed" and run.metrics["slates_shown"] > 20
    if name in LLM_RECS:
        st = run.metrics["recommender_stats"]
        assert st["requests"] > 0 and st["llm_calls"] >= st["requests"] and run.metrics["llm"]["calls"] > 0
    slates = run.of_kind("slate")
    assert all(len(set(items)) == len(items) for items in slates["items"])
