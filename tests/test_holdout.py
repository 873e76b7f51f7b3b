"""Holdout splits in the data layer: what is held out never reaches a built world."""

import shutil

import numpy as np
import pandas as pd
import pytest

from recworld.simulator.build import build_parts
from recworld.simulator.data.holdout import Holdout, cutoff_seconds, filter_tags, split_ratings
from recworld.simulator.data.sources import load_movielens, population_from_ratings
from recworld.simulator.engine.events import read_events
from recworld.simulator.run import run_scenario
from recworld.simulator.scenario import ScenarioError, load_scenario


def ratings_table():
    rows = []
    for u, n in ((1, 10), (2, 5), (3, 1)):
        for k in range(n):
            rows.append((u, 100 + (7 * k) % n, 1.0 + k % 5, 1000 + 10 * k + u))
    return pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])


def test_fraction_split_holds_out_each_users_latest_ratings():
    r = ratings_table().sample(frac=1.0, random_state=0)          # the input order does not matter
    s = split_ratings(r, {"fraction": 0.2})
    assert len(s.history) + len(s.heldout) == len(r)
    assert s.history.groupby("userId").size().to_dict() == {1: 8, 2: 4, 3: 1}
    assert s.heldout.groupby("userId").size().to_dict() == {1: 2, 2: 1}
    for u, held in s.heldout.groupby("userId"):
        assert s.history[s.history.userId == u]["timestamp"].max() <= held["timestamp"].min()
        assert s.cut_time[u] == held["timestamp"].min()
    again = split_ratings(r.iloc[::-1], Holdout("fraction", 0.2))
    key = ["userId", "timestamp", "movieId"]
    pd.testing.assert_frame_equal(s.heldout.sort_values(key).reset_index(drop=True),
                                  again.heldout.sort_values(key).reset_index(drop=True))
    # min_history keeps more of short histories
    s5 = split_ratings(r, Holdout("fraction", 0.5, min_history=4))
    assert s5.history.groupby("userId").size().to_dict() == {1: 5, 2: 4, 3: 1}


def test_time_split_by_cutoff_and_by_share():
    r = ratings_table()
    s = split_ratings(r, Holdout("time", cutoff=1050))
    assert (s.history.timestamp < 1050).all() and (s.heldout.timestamp >= 1050).all()
    assert s.cutoff == 1050
    share = split_ratings(r, {"by": "time", "fraction": 0.25})
    assert abs(len(share.heldout) / len(r) - 0.25) < 0.1
    assert share.history.timestamp.max() < share.heldout.timestamp.min()
    assert cutoff_seconds("1970-01-02") == 86400 and cutoff_seconds("86400") == 86400
    with pytest.raises(ValueError, match="neither Unix seconds nor a date"):
        Holdout("time", cutoff="next tuesday")
    with pytest.raises(ValueError, match="between 0 and 1"):
        Holdout("fraction", 1.0)


def test_tags_from_the_held_out_period_are_dropped():
    r = ratings_table()
    s = split_ratings(r, {"fraction": 0.2})
    cut1 = int(s.cut_time[1])
    tags = pd.DataFrame({"userId": [1, 1, 2, 3, 9], "movieId": [100, 101, 100, 100, 100],
                         "tag": ["early", "late", "x", "y", "z"],
                         "timestamp": [cut1 - 1, cut1, 0, 10**10, 10**10]})
    kept = filter_tags(tags, s)
    assert kept["tag"].tolist() == ["early", "x", "y", "z"]   # user 3 has nothing held out; 9 rated nothing
    t = split_ratings(r, Holdout("time", cutoff=1050))
    assert filter_tags(tags, t)["tag"].tolist() == ["x"]      # a global cutoff drops every later tag


def test_load_movielens_builds_the_catalog_from_the_history_only(tiny_ml):
    full = load_movielens(tiny_ml)
    ml = load_movielens(tiny_ml, holdout={"fraction": 0.25})
    assert full.heldout is None and full.holdout is None
    assert len(ml.ratings) + len(ml.heldout) == len(full.ratings)
    stats = ml.ratings.groupby("item_id")["rating"].agg(["size", "mean"])
    items = ml.catalog.items.set_index("item_id")
    assert (items["n_ratings"] == stats["size"].reindex(items.index).fillna(0)).all()
    assert np.allclose(items["mean_rating"].dropna(), stats["mean"].reindex(items["mean_rating"].dropna().index))
    pairs = set(zip(ml.ratings.user_id, ml.ratings.item_id))
    assert not pairs & set(zip(ml.heldout.user_id, ml.heldout.item_id))
    # a given subset of ratings replaces the ratings file
    some = full.ratings[full.ratings.user_id <= 3]
    sub = load_movielens(tiny_ml, ratings=some[["user_id", "item_id", "rating", "timestamp"]])
    assert sorted(sub.ratings.user_id.unique()) == [1, 2, 3]
    assert sub.catalog.items["n_ratings"].sum() == len(some)
    with pytest.raises(ValueError, match="no column"):
        load_movielens(tiny_ml, ratings=some[["user_id", "item_id"]])


def copy_tiny(src, dst, change=None):
    shutil.copytree(src, dst)
    if change is not None:
        r = pd.read_csv(dst / "ratings.csv")
        change(r).to_csv(dst / "ratings.csv", index=False)
    return dst


def scenario(path, holdout):
    return load_scenario({
        "name": "holdout", "seed": 5, "duration_days": 1,
        "data": {"source": "movielens", "path": str(path), "min_ratings": 5, "holdout": holdout},
        "population": {"size": 10, "activity": {"median_sessions_per_day": 4}},
        "social": {"graph": "small_world", "degree": 4},
        "recommender": {"name": "popularity"}, "session": {"page_size": 5},
        "output": {"plots": False},
    })


def assert_same_parts(a, b):
    pd.testing.assert_frame_equal(a.catalog.items, b.catalog.items)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.population.profiles, b.population.profiles)
    assert np.array_equal(a.population.taste, b.population.taste)
    assert np.array_equal(a.population.rating_affinity, b.population.rating_affinity)
    for x, y in zip(a.population.history + a.population.history_ratings,
                    b.population.history + b.population.history_ratings):
        assert np.array_equal(x, y)
    assert a.population.calibration.keys() == b.population.calibration.keys()
    for k, v in a.population.calibration.items():
        assert np.array_equal(np.asarray(v), np.asarray(b.population.calibration[k])), k
    assert a.population.fitted.keys() == b.population.fitted.keys()     # the fitted model's arrays too
    for k, v in a.population.fitted.items():
        assert np.array_equal(v, b.population.fitted[k]), k


@pytest.mark.parametrize("holdout", [{"fraction": 0.25}, {"by": "time", "cutoff": 1000100009}])
def test_no_held_out_rating_reaches_a_built_world(tiny_ml, tmp_path, holdout):
    """Whatever the held-out ratings say (their stars, which movies they name, or whether they
    exist at all), the built world and the events of its run are the same."""
    scn = scenario(tiny_ml, holdout)
    ml = load_movielens(tiny_ml, holdout=holdout)
    held = set(zip(ml.heldout.user_id, ml.heldout.timestamp))
    assert len(held) == len(ml.heldout) > 0

    def is_held(r):
        return np.array([(u, t) in held for u, t in zip(r.userId, r.timestamp)])

    def other_stars(r):
        m = is_held(r)
        r.loc[m, "rating"] = 6.0 - r.loc[m, "rating"].clip(1, 5)
        return r

    def other_movies(r):            # the held-out rows now name other movies the users never rated
        m = is_held(r)
        ids = np.sort(pd.read_csv(tiny_ml / "movies.csv")["movieId"].unique())[::-1]
        for u in r.loc[m, "userId"].unique():
            rows = np.flatnonzero(m & (r.userId == u).to_numpy())
            unrated = ids[~np.isin(ids, r.loc[r.userId == u, "movieId"])]
            k = min(len(rows), len(unrated))
            r.loc[r.index[rows[:k]], "movieId"] = unrated[:k]
        return r

    variants = {"stars": other_stars, "movies": other_movies}
    if holdout.get("by") == "time":
        variants["deleted"] = lambda r: r[~is_held(r)]
    base = build_parts(scn)            # the parametric brain on MovieLens: the user model is fitted by default
    assert base.population.fitted and "slate_no_click" in base.population.calibration    # the fitted model too
    h_items = set(zip(ml.heldout.user_id, ml.heldout.item))
    for uid, hist in zip(base.population.ids, base.population.history):
        assert not {(int(uid), int(i)) for i in hist} & h_items        # seen sets hold history only
    assert not set(zip(base.interactions.user_id, base.interactions.timestamp)) & held
    run_a = read_events(run_scenario(scn, tmp_path / "run_base", progress=False))
    for name, change in variants.items():
        folder = copy_tiny(tiny_ml, tmp_path / name, change)
        scn_b = scenario(folder, holdout)
        other = load_movielens(folder, holdout=holdout)
        assert not other.heldout.equals(ml.heldout) or name == "deleted"
        assert_same_parts(base, build_parts(scn_b))
        run_b = read_events(run_scenario(scn_b, tmp_path / f"run_{name}", progress=False))
        assert run_a.equals(run_b), name


def test_users_are_drawn_by_their_history(tiny_ml):
    ml = load_movielens(tiny_ml, holdout={"fraction": 0.5})
    counts = ml.ratings.groupby("user_id").size()
    pop = population_from_ratings(ml.catalog, ml.ratings, int((counts >= 8).sum()), np.random.default_rng(0),
                                  min_ratings=8)
    assert (pop.profiles["n_history"] >= 8).all()
    with pytest.raises(ValueError, match="population.size"):
        population_from_ratings(ml.catalog, ml.ratings, int((counts >= 8).sum()) + 1, np.random.default_rng(0),
                                min_ratings=8)


def test_scenario_holdout_section_is_validated(tiny_ml):
    import datetime

    ok = scenario(tiny_ml, {"by": "time", "cutoff": "2001-01-01"})
    assert ok.data.holdout.cutoff == "2001-01-01"
    assert scenario(tiny_ml, {"by": "time", "cutoff": datetime.date(2001, 1, 1)}).data.holdout.cutoff == "2001-01-01"
    from recworld.simulator.scenario import validate_plugins

    with pytest.raises(ScenarioError, match="history ratings"):       # min_ratings counts the history
        validate_plugins(scenario(tiny_ml, {"fraction": 0.9}))
    assert scenario(tiny_ml, None).data.holdout is None
    for bad, words in (({"fraction": 1.5}, "data.holdout.fraction"), ({"cutoff": 5}, "needs by: time"),
                       ({"by": "time", "cutoff": "soon"}, "neither Unix seconds"),
                       ({"by": "later"}, "data.holdout.by"), ({"fractoin": 0.2}, "fractoin")):
        with pytest.raises(ScenarioError, match=words):
            scenario(tiny_ml, bad)


def test_worlds_fit_the_user_model_for_the_brains_that_use_it(tiny_ml):
    from recworld.simulator.build import fits_users
    from recworld.simulator.scenario import validate_plugins

    scn = scenario(tiny_ml, {"fraction": 0.25})
    assert fits_users(scn)
    off = load_scenario(scn, ["population.brain.fitted=false"])
    llm = load_scenario(scn, ["population.brain.name=llm"])
    assert not fits_users(off) and not fits_users(llm)
    mixed = load_scenario(scn, ["population.brain.name=llm", "population.groups=[{share: 0.5, brain: {name: parametric}}]"])
    assert fits_users(mixed)
    parts = build_parts(off)
    assert parts.population.fitted == {} and "slate_no_click" not in parts.population.calibration
    with pytest.raises(ScenarioError, match="population.brain.*fitted"):
        validate_plugins(load_scenario(scn, ["population.brain.fitted=maybe"]), data=False)
