import numpy as np
import pytest

from recworld.agents.parametric import ParametricBrain
from recworld.simulator.data.sources import load_movielens, population_from_ratings, synthetic_catalog, synthetic_population
from recworld.simulator.protocols import Post, UserState


@pytest.fixture(scope="module")
def world():
    cat = synthetic_catalog(300, 6, np.random.default_rng(0))
    pop = synthetic_population(cat, 40, np.random.default_rng(1))
    return cat, pop, ParametricBrain({}, catalog=cat, population=pop)


def state(u, seed=0):
    return UserState(u, u + 1, np.random.default_rng(seed))


def test_click_probabilities_are_a_distribution_with_no_click_mass(world):
    cat, pop, brain = world
    p = brain.click_probabilities(state(0), np.arange(10))
    assert p.shape == (10,) and (p > 0).all() and 0 < p.sum() < 1


def test_preferred_genre_is_more_likely_chosen(world):
    cat, pop, brain = world
    u = 3
    best_g = int(np.argmax(pop.taste[u]))
    worst_g = int(np.argmin(pop.taste[u]))
    liked = np.flatnonzero(cat.genre_dist[:, best_g] == 1)[:1]
    disliked = np.flatnonzero(cat.genre_dist[:, worst_g] == 1)[:1]
    assert len(liked) and len(disliked)
    # same position, otherwise identical slate
    p_like = brain.click_probabilities(state(u), np.concatenate([liked, np.arange(200, 205)]))[0]
    p_dis = brain.click_probabilities(state(u), np.concatenate([disliked, np.arange(200, 205)]))[0]
    assert p_like > p_dis


def test_position_bias_and_fatigue(world):
    cat, pop, brain = world
    items = np.arange(20, 30)
    p = brain.click_probabilities(state(1), items)
    p_rev = brain.click_probabilities(state(1), items[::-1])[::-1]
    assert p[0] > p_rev[0] and p[-1] < p_rev[-1]          # same item, better slot, higher chance
    tired = state(1)
    tired.pages_seen = 6
    assert brain.click_probabilities(tired, items).sum() < p.sum()


def test_leave_rate_grows_with_pages(world):
    cat, pop, brain = world
    def leave_rate(pages):
        st = state(2, seed=pages)
        leaves = 0
        for _ in range(400):
            st.pages_seen = pages
            leaves += brain.choose_from_slate(st, np.arange(10), 0, 0.0).next == "leave"
        return leaves / 400
    assert leave_rate(1) < leave_rate(5)


def test_ratings_follow_taste(ml_full):
    ml = load_movielens(ml_full)
    pop = population_from_ratings(ml.catalog, ml.ratings, 40, np.random.default_rng(0), fit=False)
    brain = ParametricBrain({}, catalog=ml.catalog, population=pop)
    assert not brain.fitted                                   # the hand-set rating model
    rng = np.random.default_rng(5)
    exp, got = [], []
    for u in range(40):
        st = state(u, seed=u)
        for item in rng.integers(0, len(ml.catalog), 30):
            exp.append(brain.expected_rating(st, int(item)))
            got.append(brain.consume(st, int(item), 0.0).rating)
    got = np.array(got)
    assert set(np.unique(got)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert np.corrcoef(exp, got)[0, 1] > 0.4
    # the simulated ratings track the users' real mean ratings
    real = pop.profiles["rating_mean"].to_numpy()
    sim = np.array(got).reshape(40, 30).mean(axis=1)
    assert np.corrcoef(real, sim)[0, 1] > 0.5


def test_disliked_items_are_abandoned(world):
    cat, pop, brain = world
    st = state(0, seed=9)
    for item in range(100):
        c = brain.consume(st, item, 0.0)
        if c.rating >= 3:
            assert c.minutes == cat.duration[item]
        else:
            assert c.minutes < cat.duration[item]


def test_posts_and_chats_talk_about_liked_items(world):
    cat, pop, brain = world
    a, b = state(0), state(1)
    assert brain.write_post(a, 0.0) is None                  # nothing to post about yet
    a.watched = [(5, 2.0), (7, 5.0)]
    draft = brain.write_post(a, 0.0)
    assert draft.item == 7 and cat.titles[7] in draft.text
    assert brain.write_post(a, 0.0) is None                  # does not post the same item twice
    d = brain.chat(a, b, 0.0)
    assert d.mentioned == {7: 0} and len(d.lines) == brain.params.chat_turns


def test_reposts_need_interest(world):
    cat, pop, brain = world
    st = state(4, seed=1)
    post = Post(1, 1, 0, 10, "x", 0, 0.0)
    reactions = [brain.read_post(st, post, 0.0) for _ in range(300)]
    assert any(r.interested for r in reactions)
    assert all(r.interested for r in reactions if r.repost)


def test_same_rng_same_decisions(world):
    cat, pop, brain = world
    runs = []
    for _ in range(2):
        st = state(6, seed=42)
        runs.append([brain.choose_from_slate(st, np.arange(i, i + 10), 0, 0.0).watch for i in range(30)])
    assert runs[0] == runs[1]


# ----------------------------------------------------------------------------- the fitted user


@pytest.fixture(scope="module")
def fitted_world():
    from pathlib import Path

    ml = load_movielens(Path(__file__).parent / "data" / "movielens_tiny")
    pop = population_from_ratings(ml.catalog, ml.ratings, 12, np.random.default_rng(0), min_ratings=5)
    plain = population_from_ratings(ml.catalog, ml.ratings, 12, np.random.default_rng(0), min_ratings=5, fit=False)
    return ml.catalog, pop, plain


def test_a_population_with_a_fit_gets_the_fitted_user(fitted_world):
    cat, pop, _ = fitted_world
    cal = pop.calibration
    brain = ParametricBrain({}, catalog=cat, population=pop)
    assert brain.fitted and brain.max_picks(10) == cal["slate_max_picks"]
    st = state(3)
    assert brain.no_click_utility(st) == cal["slate_no_click"]
    # the collaborative score is part of the utility: without the user's factors it changes
    items = np.arange(10)
    u = brain.utilities(st, items)
    uf = brain._uf.copy()
    brain._uf[3] = 0.0
    assert not np.allclose(brain.utilities(st, items), u)
    brain._uf[:] = uf
    # ratings on the half-star grid, half stars only for users who give them
    halves = [bool(((h * 2) % 2 == 1).any()) for h in pop.history_ratings]
    for k in range(len(pop)):
        got = {brain.consume(state(k, seed=k), int(i), 0.0).rating for i in range(0, len(cat), 7)}
        assert got <= set(np.arange(1, 11) / 2)
        if not halves[k]:
            assert all(r == int(r) for r in got), k


def test_explicit_parameters_win_and_fitted_false_is_the_hand_set_brain(fitted_world):
    cat, pop, plain = fitted_world
    capped = ParametricBrain({"max_watch_per_page": 1, "no_click_utility": 0.5}, catalog=cat, population=pop)
    assert capped.fitted and capped.max_picks(10) == 1
    assert capped.no_click_utility(state(2)) == capped.reference[2] + 0.5
    assert all(len(capped.choose_from_slate(state(2, seed=s), np.arange(10), 0, 0.0).watch) <= 1 for s in range(50))
    off = ParametricBrain({"fitted": False}, catalog=cat, population=pop)
    hand = ParametricBrain({}, catalog=cat, population=plain)
    assert not off.fitted and not hand.fitted and not ParametricBrain.uses_fitted_users(off.Params(fitted=False))
    for s in range(30):
        a, b = state(s % 12, seed=s), state(s % 12, seed=s)
        items = np.arange(s, s + 10)
        assert off.choose_from_slate(a, items, 0, 0.0) == hand.choose_from_slate(b, items, 0, 0.0)
        assert off.consume(a, s, 0.0) == hand.consume(b, s, 0.0)


class _Lanes:
    """LaneDraws with one generator per row (as the vector env's per-env streams)."""

    def __init__(self, rngs):
        self.rngs = rngs

    def random(self, rows):
        return np.array([self.rngs[r].random() for r in rows.tolist()])

    def normal(self, rows, scale):
        return np.array([self.rngs[r].normal(0, s) for r, s in zip(rows.tolist(), np.broadcast_to(scale, len(rows)))])

    def uniform(self, rows, low, high):
        return np.array([self.rngs[r].uniform(low, high) for r in rows.tolist()])


def test_the_batch_model_of_the_fitted_user_is_its_per_user_model(fitted_world):
    from recworld.simulator.gym.batch import LEAVE, NEXT, SEARCH

    cat, pop, _ = fitted_world
    brain = ParametricBrain({}, catalog=cat, population=pop)
    n, S = 12, 5
    rng = np.random.default_rng(3)
    users = np.arange(n)
    for step in range(20):
        items = np.stack([rng.choice(len(cat), S, replace=False) for _ in range(n)])
        pages = rng.integers(1, 4, n)
        picks, nxt = brain.choose_batch(users, items, pages, np.zeros((n, len(cat.genre_names)), bool),
                                        np.zeros(n, bool), _Lanes([np.random.default_rng([step, u]) for u in users]))
        for u in users.tolist():
            st = state(u, seed=[step, u])
            st.pages_seen = int(pages[u])
            one = brain.choose_from_slate(st, items[u], 0, 0.0)
            assert [p for p in picks[u].tolist() if p >= 0] == one.watch
            assert nxt[u] == {"leave": LEAVE, "next": NEXT, "search": SEARCH}[one.next]
        watched = items[:, 0]
        r, minutes = brain.consume_batch(users, watched, _Lanes([np.random.default_rng([step, u, 1]) for u in users]))
        for u in users.tolist():
            c = brain.consume(state(u, seed=[step, u, 1]), int(watched[u]), 0.0)
            assert (r[u], minutes[u]) == (c.rating, c.minutes)
