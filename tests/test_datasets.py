import numpy as np
import pandas as pd
import pytest

from recworld.simulator.data.sources import (bundled_movielens_path, load_movielens, load_products, movie_durations,
                                population_from_ratings, synthetic_catalog, synthetic_population)


def test_movielens_tiny_items_text_year_duration(tiny_ml):
    ml = load_movielens(tiny_ml)
    cat = ml.catalog
    assert len(cat) == 41
    row = cat.items.set_index("item_id").loc[10]
    assert row["year"] == 1981
    assert "classic" in row["text"] and "Genres:" in row["text"]
    assert cat.items.set_index("item_id").loc[999, "genres"] == []          # "(no genres listed)"
    assert ((cat.duration >= 70) & (cat.duration <= 200)).all()
    # a movie's duration depends on its id only, not on the catalog it sits in
    assert movie_durations(np.array([10]))[0] == cat.duration[cat.index_of(10)]
    # interactions carry both the public id and the catalog index
    r = ml.ratings
    assert (cat.ids[r["item"].to_numpy()] == r["item_id"].to_numpy()).all()


def test_bundled_sample_is_gzipped_movielens_layout():
    ml = load_movielens(bundled_movielens_path())
    assert len(ml.catalog) > 1000 and ml.ratings["user_id"].nunique() >= 100
    assert (bundled_movielens_path() / "README.txt").exists()       # the data licence travels with it


def test_full_movielens(ml_full):
    ml = load_movielens(ml_full)
    assert len(ml.catalog) == 9742
    assert ml.ratings["user_id"].nunique() == 610
    toy = ml.catalog.search("toy story")
    assert ml.catalog.titles[toy[0]].startswith("Toy Story")


def test_missing_folder_and_files_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_movielens(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="ml-latest-small layout"):
        load_movielens(tmp_path)


def test_population_traits_and_calibration(tiny_ml):
    ml = load_movielens(tiny_ml)
    pop = population_from_ratings(ml.catalog, ml.ratings, 10, np.random.default_rng(0), min_ratings=5)
    p = pop.profiles
    assert len(pop) == 10 and p["user_id"].is_unique
    for col in ("conformity", "diversity"):
        assert p[col].between(0, 1).all()
    assert (p["activity"] > 0).all()
    # activity is assigned in the order of history length: more history => at least as active
    n, a = p["n_history"].to_numpy(), p["activity"].to_numpy()
    more = n[:, None] > n[None, :]
    assert more.any() and (a[:, None] >= a[None, :])[more].all()
    # each tiny-fixture user rates genre (uid % 6) higher and watches it more often
    genres = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi", "Romance"]
    taste_ranks = []
    for k, uid in enumerate(pop.ids):
        fav = ml.catalog.genre_names.index(genres[uid % 6])
        assert np.argmax(pop.rating_affinity[k]) == fav
        taste_ranks.append(list(np.argsort(-pop.taste[k])).index(fav))
    assert np.mean(taste_ranks) <= 1.5          # a genre picked at random would average 2.5
    assert {"choice_taste", "choice_popularity", "rating_quality"} <= set(pop.calibration)


def test_population_too_large_is_an_error(tiny_ml):
    ml = load_movielens(tiny_ml)
    with pytest.raises(ValueError, match="population.size=50"):
        population_from_ratings(ml.catalog, ml.ratings, 50, np.random.default_rng(0), min_ratings=5)


def test_population_sampling_depends_on_seed(ml_full):
    ml = load_movielens(ml_full)
    a = population_from_ratings(ml.catalog, ml.ratings, 30, np.random.default_rng(1))
    b = population_from_ratings(ml.catalog, ml.ratings, 30, np.random.default_rng(1))
    c = population_from_ratings(ml.catalog, ml.ratings, 30, np.random.default_rng(2))
    assert (a.ids == b.ids).all() and set(a.ids) != set(c.ids)
    act = a.profiles["activity"].to_numpy()
    assert act.max() / np.median(act) > 3          # heavy tail


def test_synthetic_world_is_seeded():
    a = synthetic_catalog(200, 8, np.random.default_rng(5))
    b = synthetic_catalog(200, 8, np.random.default_rng(5))
    pd.testing.assert_frame_equal(a.items, b.items)
    assert len(a.genre_names) == 8 and all(1 <= len(g) <= 3 for g in a.genre_lists)
    pop = synthetic_population(a, 100, np.random.default_rng(5))
    assert pop.taste.shape == (100, 8) and all(len(h) == 0 for h in pop.history)


def test_products_loader(tmp_path):
    cat = load_products(__import__("pathlib").Path(__file__).parent / "data" / "products_tiny.jsonl")
    assert len(cat) == 6 and cat.titles[0] == "Brewer 0"
    assert '"Price": "$50"' in cat.items["text"][0]
    assert set(cat.genre_names) == {"Home", "Office"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"Name": "ok"}\n{not json}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_products(bad)


def test_shared_product_catalogs_load():
    from conftest import products_folder

    folder = products_folder()
    if not folder.exists():
        pytest.skip(f"shared product catalogs not found at {folder} (coffee_machines.jsonl, books.jsonl, "
                    "cameras.jsonl: the shared data folder beside the repository); the bundled copies are tested "
                    "elsewhere")
    for name in ("coffee_machines", "books", "cameras"):
        cat = load_products(folder / f"{name}.jsonl")
        assert len(cat) >= 5 and all(cat.titles)
