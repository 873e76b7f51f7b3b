import numpy as np
import pytest

from recommenders.bandits import SlateThompsonSampling
from simulator.datasets import synthetic_catalog
from simulator.protocols import Feedback, Slate, SlateRequest


@pytest.fixture
def cat():
    return synthetic_catalog(200, 4, np.random.default_rng(0))


def make(cat, **params):
    r = SlateThompsonSampling(params, rng=np.random.default_rng(1))
    r.fit(None, cat)
    return r


def show(rec, items, clicked):
    rec.update(Feedback(0, Slate(np.asarray(items)), np.asarray(clicked, dtype=np.int64), np.array([]), np.array([]), 0.0))


def test_posterior_moves_with_clicks_and_group_prior_pools(cat):
    rec = make(cat, sampling="greedy")
    g = rec.group
    a_group = np.flatnonzero(g == g[0])
    other = np.flatnonzero(g != g[0])
    for _ in range(30):
        show(rec, [a_group[0], other[0]], [0])             # item a_group[0] always clicked
    mean = lambda i: (lambda a, b: a / (a + b))(*rec.posterior(np.array([i])))[0]  # noqa: E731
    assert mean(a_group[0]) > 0.5
    assert mean(other[0]) < mean(other[1])                # 30 misses push it below its group-mates
    # never-shown items inherit their group's pooled rate
    assert mean(a_group[1]) > mean(other[1])


def test_greedy_ranks_by_posterior_mean(cat):
    rec = make(cat, sampling="greedy")
    for _ in range(10):
        show(rec, [5, 6, 7], [2])
    slate = rec.recommend(SlateRequest(user=0, k=3, exclude=np.array([], dtype=np.int64)))
    assert slate.items[0] == 7


def test_in_slate_sampling_is_rank_major_and_distinct(cat):
    rec = make(cat)
    for _ in range(20):
        show(rec, np.arange(len(cat)), [])                 # every item: 20 unclicked impressions
    for _ in range(500):
        show(rec, [10, 11], [0, 1])      # two items with overwhelming evidence
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
