import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")     # before any test module imports litellm
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


def full_movielens_path() -> Path:
    """ml-latest-small: $RECWORLD_MOVIELENS, else the shared data folder beside the repo."""
    env = os.environ.get("RECWORLD_MOVIELENS")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "ml-latest-small"


def products_folder() -> Path:
    return ROOT.parent / "shared" / "data" / "llm-rank-optimizer"


def tiny_run_scenario(**over) -> dict:
    """A one-day run on the tiny MovieLens fixture (10 users), as a dict; ``over`` replaces top-level keys."""
    scn = {"name": "tiny", "seed": 3, "duration_days": 1,
           "data": {"source": "movielens", "path": str(DATA / "movielens_tiny"), "min_ratings": 5},
           "population": {"size": 10, "activity": {"median_sessions_per_day": 6}},
           "social": {"graph": "small_world", "degree": 4},
           "recommender": {"name": "popularity"}, "session": {"page_size": 5}}
    scn.update(over)
    return scn


@pytest.fixture
def tiny_ml() -> Path:
    return DATA / "movielens_tiny"


@pytest.fixture(scope="session")
def ml_full() -> Path:
    p = full_movielens_path()
    if not (p / "ratings.csv").exists():
        where = (f"$RECWORLD_MOVIELENS={os.environ['RECWORLD_MOVIELENS']}" if os.environ.get("RECWORLD_MOVIELENS")
                 else f"{p} (the shared data folder beside the repository; RECWORLD_MOVIELENS is not set)")
        pytest.skip(f"full ml-latest-small not found: no ratings.csv in {where}; set RECWORLD_MOVIELENS "
                    "to a folder with the ml-latest-small movies.csv and ratings.csv to run this test")
    return p


@pytest.fixture
def small_scenario(tiny_ml):
    """A fast MovieLens scenario on the tiny fixture, as a dict."""
    return {
        "name": "tiny",
        "seed": 3,
        "duration_days": 1,
        "data": {"source": "movielens", "path": str(tiny_ml), "min_ratings": 5},
        "population": {"size": 10, "activity": {"median_sessions_per_day": 4}},
        "social": {"graph": "small_world", "degree": 4},
        "recommender": {"name": "popularity"},
        "session": {"page_size": 5},
    }
