import numpy as np
import pytest

from recworld.recommenders.baselines import PopularityRecommender, RandomRecommender
from recworld.simulator.data.sources import load_movielens
from recworld.simulator.protocols import Feedback, Slate, SlateRequest
from recworld.simulator.registry import UnknownPluginError, available, load, register, unregister


@pytest.fixture
def ml(tiny_ml):
    return load_movielens(tiny_ml)


def fitted(cls, ml, **params):
    r = cls(params, rng=np.random.default_rng(0))
    r.fit(ml.ratings, ml.catalog)
    return r


@pytest.mark.parametrize("cls", [RandomRecommender, PopularityRecommender])
def test_pages_exclude_seen_and_never_repeat(cls, ml):
    rec = fitted(cls, ml)
    exclude = np.array([0, 1, 2, 3])
    shown = []
    for page in range(4):
        s = rec.recommend(SlateRequest(user=1, k=5, page=page, exclude=exclude, time=10.0))
        assert len(s.items) == 5 and not set(s.items) & set(exclude)
        shown += s.items.tolist()
    assert len(shown) == len(set(shown)) == 20
    # past the end of the catalog a page is short, then empty
    last = rec.recommend(SlateRequest(user=1, k=5, page=7, exclude=exclude, time=10.0))
    assert len(last.items) == 41 - 4 - 35
    assert len(rec.recommend(SlateRequest(user=1, k=5, page=9, exclude=exclude, time=10.0)).items) == 0


def test_popularity_warm_start_follows_interaction_counts(ml):
    rec = fitted(PopularityRecommender, ml)
    counts = np.bincount(ml.ratings["item"], minlength=len(ml.catalog))
    top = rec.recommend(SlateRequest(user=0, k=5)).items
    assert counts[top].tolist() == sorted(counts, reverse=True)[:5]


def test_popularity_window_counts_and_expiry(ml):
    rec = fitted(PopularityRecommender, ml, prior_weight=0.0, window_days=1.0, refresh_minutes=0)
    target = 30
    slate = Slate(np.array([target, 31]))
    for t in range(3):
        rec.update(Feedback(0, slate, np.array([0]), np.array([4.0]), np.array([90.0]), time=float(t)))
    assert rec.recommend(SlateRequest(user=5, k=3, time=10.0)).items[0] == target
    # two days later the watches have left the window: ties fall back to catalog order
    assert rec.recommend(SlateRequest(user=5, k=3, time=3000.0)).items[0] == 0


def test_popularity_refresh_interval_keeps_ranking_stale(ml):
    rec = fitted(PopularityRecommender, ml, prior_weight=0.0, refresh_minutes=60)
    rec.recommend(SlateRequest(user=0, k=3, time=0.0))
    for _ in range(5):
        rec.update(Feedback(0, Slate(np.array([40])), np.array([0]), np.array([5.0]), np.array([1.0]), time=1.0))
    assert rec.recommend(SlateRequest(user=1, k=3, time=30.0)).items[0] != 40     # not yet refreshed
    assert rec.recommend(SlateRequest(user=1, k=3, time=61.0)).items[0] == 40


def test_search_puts_best_matches_first(ml):
    rec = fitted(PopularityRecommender, ml)
    title = ml.catalog.titles[5]              # e.g. "City Night 5 (1985)": three words
    words = title.split(" (")[0]
    s = rec.recommend(SlateRequest(user=0, k=5, query=words))
    assert s.items[0] == 5
    assert len(rec.recommend(SlateRequest(user=0, k=5, query="zzzz")).items) == 0


def test_random_is_seeded(ml):
    a = fitted(RandomRecommender, ml).recommend(SlateRequest(user=0, k=8)).items
    b = fitted(RandomRecommender, ml).recommend(SlateRequest(user=0, k=8)).items
    c = RandomRecommender(rng=np.random.default_rng(1))
    c.fit(ml.ratings, ml.catalog)
    assert (a == b).all() and not (a == c.recommend(SlateRequest(user=0, k=8)).items).all()


def test_unfitted_recommender_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        RandomRecommender().recommend(SlateRequest(user=0, k=3))


def test_registry_names_and_errors():
    assert {"random", "popularity"} <= set(available("recommenders"))
    assert load("recommenders", "popularity") is PopularityRecommender
    with pytest.raises(UnknownPluginError, match="known recommenders: .*popularity.*random"):
        load("recommenders", "nope")

    class Mine(RandomRecommender):
        name = "mine"

    register("recommenders", "mine", Mine)
    try:
        assert load("recommenders", "mine") is Mine and "mine" in available("recommenders")
    finally:
        unregister("recommenders", "mine")
    assert "mine" not in available("recommenders")


def test_entry_points_are_declared_for_builtins():
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="recworld.recommenders")}
    if not names:
        pytest.skip("package not installed (no entry points)")
    assert {"random", "popularity"} <= names


def test_popularity_search_ranking_kept_per_query_is_the_base_ranking(ml):
    """The ranked matches a popularity ranking keeps per query, minus each request's excluded
    items, are what the base class ranks from scratch, through re-rankings and updates."""
    from recworld.recommenders.base import BaseRecommender

    rec = fitted(PopularityRecommender, ml, refresh_minutes=0)
    rng = np.random.default_rng(0)
    words = sorted({w for t in ml.catalog.titles for w in t.split(" (")[0].split()} | set(ml.catalog.genre_names))
    for step in range(200):
        query = " ".join(rng.choice(words, size=rng.integers(1, 3), replace=False).tolist())
        req = SlateRequest(user=0, k=5, query=query, exclude=rng.choice(len(ml.catalog), size=rng.integers(0, 12)),
                           time=float(step))
        np.testing.assert_array_equal(rec._rank(req), BaseRecommender._rank(rec, req))
        if step % 7 == 0:       # the ranking changes: stale searches must not be reused
            rec.update(Feedback(0, Slate(rng.choice(len(ml.catalog), size=3, replace=False)), np.array([0, 2]),
                                np.array([4.0, 5.0]), np.array([1.0, 1.0]), time=float(step)))
    assert rec._query_ranked                              # it did keep searches


def test_popularity_first_page_walks_the_order_without_a_catalog_mask(ml, monkeypatch):
    """A recommendation page (no query) takes the top of the kept order: no mask over the
    whole catalog (``rank_all``) per request."""
    rec = fitted(PopularityRecommender, ml)
    expected = rec.recommend(SlateRequest(user=0, k=5, exclude=np.array([0, 3]), time=1.0)).items
    monkeypatch.setattr(rec, "rank_all", lambda *a: (_ for _ in ()).throw(AssertionError("rank_all called")))
    got = rec.recommend(SlateRequest(user=1, k=5, exclude=np.array([0, 3]), time=1.0)).items
    np.testing.assert_array_equal(got, expected)
