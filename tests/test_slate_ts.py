import numpy as np
import pytest

from recworld.recommenders.bandits import SlateThompsonSampling
from recworld.simulator.data.sources import synthetic_catalog
from recworld.simulator.protocols import Feedback, Slate, SlateRequest


@pytest.fixture
def cat():
    return synthetic_catalog(200, 4, np.random.default_rng(0))


def make(cat, **params):
    r = SlateThompsonSampling(params, rng=np.random.default_rng(1))
    r.fit(None, cat)
    return r


def show(rec, items, clicked, user=0):
    rec.update(Feedback(user, Slate(np.asarray(items)), np.asarray(clicked, dtype=np.int64), np.array([]),
                        np.array([]), 0.0))


def test_posterior_moves_with_clicks_and_group_prior_pools(cat):
    rec = make(cat, sampling="greedy", user_sd=0)
    g = rec.group
    a_group = np.flatnonzero(g == g[0])
    other = np.flatnonzero((g != g[0]) & (g == g[np.flatnonzero(g != g[0])[0]]))
    mean = lambda i: rec.posterior(np.array([i]))[0][0]  # noqa: E731
    var = lambda i: rec.posterior(np.array([i]))[1][0]  # noqa: E731
    v0 = var(a_group[0])
    for _ in range(30):
        show(rec, [a_group[0], other[0]], [0])             # item a_group[0] always the pick
    p_pick = 1 / (1 + np.exp(-mean(a_group[0])))
    assert p_pick > 0.5 and var(a_group[0]) < v0
    assert mean(other[0]) < mean(other[1])                # 30 misses push it below its group-mates
    # never-shown items inherit what their group earned
    assert mean(a_group[1]) > mean(other[1])


def test_users_get_their_own_genre_affinity(cat):
    rec = make(cat, sampling="greedy")
    g0, g1 = (np.flatnonzero(cat.genre_matrix[:, j] > 0) for j in (0, 1))
    only0, only1 = np.setdiff1d(g0, g1), np.setdiff1d(g1, g0)
    for _ in range(40):                  # user 0 always picks the genre-0 item, user 1 the genre-1 item
        show(rec, [only0[0], only1[0]], [0], user=0)
        show(rec, [only0[0], only1[0]], [1], user=1)
    m = lambda u, i: rec.posterior(np.array([i]), u)[0][0]  # noqa: E731
    assert m(0, only0[1]) > m(0, only1[1]) and m(1, only1[1]) > m(1, only0[1])    # unseen items too
    assert rec.recommend(SlateRequest(user=0, k=1)).items[0] in g0
    assert rec.recommend(SlateRequest(user=1, k=1)).items[0] in g1


def test_greedy_ranks_by_posterior_mean(cat):
    rec = make(cat, sampling="greedy")
    for _ in range(10):
        show(rec, [5, 6, 7], [2])
    slate = rec.recommend(SlateRequest(user=0, k=3, exclude=np.array([], dtype=np.int64)))
    assert slate.items[0] == 7


def test_in_slate_sampling_is_rank_major_and_distinct(cat):
    rec = make(cat, user_sd=0)
    for _ in range(20):
        show(rec, np.arange(len(cat)), [])                 # every item: 20 unclicked impressions
    mate = {i: next(j for j in range(20, len(cat)) if rec.group[j] == rec.group[i]) for i in (10, 11)}
    for _ in range(300):                 # two items with overwhelming evidence against group-mates
        show(rec, [10, mate[10]], [0])
        show(rec, [11, mate[11]], [0])
    req = SlateRequest(user=0, k=4)
    ranked = rec.rank_candidates(req, np.arange(len(cat)), n=20)
    assert len(set(ranked.tolist())) == 20
    assert set(ranked[:2].tolist()) == {10, 11}          # every sample ranks them first
    firsts = [rec.recommend(SlateRequest(user=u, k=4)).items.tolist() for u in range(30)]
    assert len({tuple(f[2:]) for f in firsts}) > 5        # exploration below the sure winners


def test_single_sample_explores(cat):
    rec = make(cat, sampling="single")
    tops = {int(rec.recommend(SlateRequest(user=u, k=1)).items[0]) for u in range(50)}
    assert len(tops) > 20
