"""Data sources: MovieLens (ml-latest-small layout, any path), synthetic worlds, JSONL product catalogs.

Every loader returns plain objects (``Catalog``, ``Population``, an interactions table) so a
user can also build a world from their own data.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from recworld.simulator.data.catalog import Catalog
from recworld.simulator.data.population import Population, heavy_tailed_activity, normalised_entropy

_YEAR = re.compile(r"\((\d{4})\)\s*$")

INTERACTION_COLUMNS = ("user_id", "item_id", "item", "rating", "timestamp")


def bundled_movielens_path() -> Path:
    """Folder of the MovieLens sample shipped inside the package (ml-latest-small format)."""
    return Path(str(resources.files("recworld.simulator.data") / "movielens_sample"))


BUNDLED_PRODUCTS = ("coffee_machines", "books", "cameras")


def bundled_products_path(name: str) -> Path:
    """A product catalog shipped inside the package (the coffee machine, book and camera
    catalogs of the STS studies; MIT, see ``data/products/LICENSE``)."""
    if name not in BUNDLED_PRODUCTS:
        raise ValueError(f"no bundled product catalog {name!r}; bundled: {', '.join(BUNDLED_PRODUCTS)}")
    return Path(str(resources.files("recworld.simulator.data") / "products" / f"{name}.jsonl"))


def _find(folder: Path, stem: str, required: bool = True) -> Path | None:
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        p = folder / name
        if p.exists():
            return p
    if required:
        raise FileNotFoundError(
            f"no {stem}.csv (or {stem}.csv.gz) in {folder}: expected a MovieLens folder in the "
            "ml-latest-small layout (movies.csv, ratings.csv, optional tags.csv)"
        )
    return None


def _hashed_uniform(ids: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic uniform(0,1) per integer id (splitmix64), independent of catalog order."""
    with np.errstate(over="ignore"):
        x = ids.astype(np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def movie_durations(item_ids: np.ndarray, mean: float = 105.0, sd: float = 20.0) -> np.ndarray:
    """MovieLens has no runtimes: a fixed pseudo-random runtime per movie id (minutes, 70..200)."""
    u1 = np.clip(_hashed_uniform(item_ids, 1), 1e-12, 1.0)
    u2 = _hashed_uniform(item_ids, 2)
    z = np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)
    return np.clip(np.round(mean + sd * z), 70, 200)


@dataclass
class MovieLens:
    catalog: Catalog
    ratings: pd.DataFrame    # user_id, item_id, item (catalog index), rating, timestamp


def load_movielens(path: str | Path, n_tags: int = 10) -> MovieLens:
    """Load a folder in the ml-latest-small format.

    Item text = title, genres and the item's most frequent tags.  Works on the full
    ml-latest-small, on the bundled sample, and on any folder with the same files.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"MovieLens folder {folder} does not exist")
    movies = pd.read_csv(_find(folder, "movies"))
    ratings = pd.read_csv(_find(folder, "ratings"))
    tags_path = _find(folder, "tags", required=False)
    for name, df, cols in (("movies", movies, ("movieId", "title", "genres")),
                           ("ratings", ratings, ("userId", "movieId", "rating", "timestamp"))):
        miss = [c for c in cols if c not in df.columns]
        if miss:
            raise ValueError(f"{name} file in {folder} lacks columns {miss}")

    movies = movies.rename(columns={"movieId": "item_id"})
    titles = movies["title"].astype(str)
    year = titles.str.extract(_YEAR, expand=False).astype("float").fillna(0).astype(int)
    clean_title = titles.str.replace(_YEAR, "", regex=True).str.strip()
    genres = [[] if g == "(no genres listed)" else g.split("|") for g in movies["genres"].astype(str)]

    tag_text = {}
    if tags_path is not None:
        tags = pd.read_csv(tags_path)
        tags["tag"] = tags["tag"].astype(str).str.strip().str.lower()
        top = (tags.groupby(["movieId", "tag"]).size().rename("n").reset_index()
               .sort_values(["movieId", "n", "tag"], ascending=[True, False, True]))
        for mid, grp in top.groupby("movieId", sort=False):
            tag_text[int(mid)] = ", ".join(grp["tag"].head(n_tags))

    stats = ratings.groupby("movieId")["rating"].agg(["size", "mean"])
    ids = movies["item_id"].to_numpy(np.int64)
    texts = []
    for t, y, gs, mid in zip(clean_title, year, genres, ids):
        s = f"{t} ({y})." if y else f"{t}."
        if gs:
            s += f" Genres: {', '.join(gs)}."
        if int(mid) in tag_text:
            s += f" Tags: {tag_text[int(mid)]}."
        texts.append(s)
    items = pd.DataFrame({
        "item_id": ids,
        "title": titles,
        "genres": genres,
        "text": texts,
        "duration": movie_durations(ids),
        "year": year.to_numpy(),
        "n_ratings": stats["size"].reindex(ids).fillna(0).astype(int).to_numpy(),
        "mean_rating": stats["mean"].reindex(ids).to_numpy(),
    })
    catalog = Catalog(items)
    ratings = ratings[ratings["movieId"].isin(catalog._index)]
    inter = pd.DataFrame({
        "user_id": ratings["userId"].to_numpy(np.int64),
        "item_id": ratings["movieId"].to_numpy(np.int64),
        "item": catalog.indices_of(ratings["movieId"].to_numpy()),
        "rating": ratings["rating"].to_numpy(np.float64),
        "timestamp": ratings["timestamp"].to_numpy(np.int64),
    }).sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    return MovieLens(catalog, inter)


def _fit_logit(X: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 25) -> np.ndarray:
    """Logistic regression by Newton's method (small, dense problems only); returns [bias, w...]."""
    Xb = np.hstack([np.ones((len(X), 1)), X])
    w = np.zeros(Xb.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-Xb @ w))
        g = Xb.T @ (p - y) + l2 * w
        H = (Xb * (p * (1 - p))[:, None]).T @ Xb + l2 * np.eye(len(w))
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _tastes(catalog: Catalog, items: np.ndarray, ratings: np.ndarray, base: np.ndarray,
            rating_mean: float) -> tuple[np.ndarray, np.ndarray]:
    gd = catalog.genre_dist[items].astype(np.float64)
    share = gd.sum(axis=0)
    # choice affinity: smoothed log ratio of the user's genre share to the catalog's
    choice = np.log((share + 2 * base) / (share.sum() + 2) / base)
    dev = ((ratings - rating_mean)[:, None] * gd).sum(axis=0) / (gd.sum(axis=0) + 3.0)
    return np.clip(choice, -3, 3), dev


def population_from_ratings(catalog: Catalog, inter: pd.DataFrame, n_users: int, rng: np.random.Generator,
                            *, sample: str = "random", min_ratings: int = 20, activity_median: float = 1.0,
                            activity_tail: float = 1.5, activity_max: float = 24.0) -> Population:
    """Profiles calibrated from rating histories (Agent4Rec-style traits: activity, conformity, diversity).

    The choice model's weights on taste, popularity and quality are fitted by logistic
    regression of held-out watched items against random unwatched ones, and the rating
    model's weights by least squares; both go to ``Population.calibration``.
    """
    counts = inter.groupby("user_id").size()
    eligible = counts[counts >= min_ratings]
    if len(eligible) == 0:
        raise ValueError(f"no user has at least {min_ratings} ratings (data.min_ratings)")
    if n_users > len(eligible):
        raise ValueError(f"population.size={n_users} but only {len(eligible)} users have at least "
                         f"{min_ratings} ratings in this MovieLens folder")
    if sample == "most_active":
        chosen = eligible.sort_values(ascending=False, kind="stable").index[:n_users].to_numpy()
    else:
        chosen = rng.choice(eligible.index.to_numpy(), size=n_users, replace=False)
    chosen = np.sort(chosen)
    base = catalog.genre_dist.mean(axis=0).astype(np.float64) + 1e-6
    item_mean = inter.groupby("item")["rating"].mean()
    groups = dict(tuple(inter[inter["user_id"].isin(chosen)].groupby("user_id")))

    n_g = len(catalog.genre_names)
    taste = np.zeros((n_users, n_g))
    raff = np.zeros((n_users, n_g))
    rows, history, history_r = [], [], []
    fit_X, fit_y, reg_X, reg_y = [], [], [], []
    for k, uid in enumerate(chosen):
        g = groups[uid]
        items = g["item"].to_numpy()
        r = g["rating"].to_numpy()
        mu = float(r.mean())
        sd = float(r.std()) if len(r) > 1 else 0.8
        taste[k], raff[k] = _tastes(catalog, items, r, base, mu)
        history.append(items.astype(np.int64))
        history_r.append(r.astype(np.float64))
        conformity = 1 - min(1.0, float(np.abs(r - item_mean.reindex(items).to_numpy()).mean()) / 1.5)
        rows.append((int(uid), 0.0, conformity, float(normalised_entropy(taste_share(catalog, items))),
                     mu, max(sd, 0.3), len(items)))
        # calibration data: tastes from 80% of the history, predict the other 20%
        cut = max(1, int(len(items) * 0.8))
        t_tr, d_tr = _tastes(catalog, items[:cut], r[:cut], base, mu)
        held = items[cut:]
        if len(held):
            neg = rng.integers(0, len(catalog), size=len(held))
            for its, lab in ((held, 1.0), (neg, 0.0)):
                gd = catalog.genre_dist[its]
                fit_X.append(np.column_stack([gd @ t_tr, catalog.popularity[its], catalog.quality[its]]))
                fit_y.append(np.full(len(its), lab))
            gd = catalog.genre_dist[held]
            reg_X.append(np.column_stack([catalog.quality[held], gd @ d_tr]))
            reg_y.append(r[cut:] - mu)
    profiles = pd.DataFrame(rows, columns=["user_id", "activity", "conformity", "diversity",
                                           "rating_mean", "rating_std", "n_history"])
    # heavy-tailed activity, assigned in the order of how much each user rated
    acts = np.sort(heavy_tailed_activity(n_users, rng, activity_median, activity_tail, activity_max))
    order = np.argsort(profiles["n_history"].to_numpy(), kind="stable")
    profiles.loc[order, "activity"] = acts

    calibration = {"source": "movielens"}
    if fit_X:
        w = _fit_logit(np.vstack(fit_X), np.concatenate(fit_y))
        calibration.update(choice_taste=float(w[1]), choice_popularity=float(w[2]), choice_quality=float(w[3]))
        coef, *_ = np.linalg.lstsq(np.vstack(reg_X), np.concatenate(reg_y), rcond=None)
        calibration.update(rating_quality=float(coef[0]), rating_affinity=float(coef[1]))
    return Population(profiles, taste, raff, history, calibration, history_r)


def taste_share(catalog: Catalog, items: np.ndarray) -> np.ndarray:
    return catalog.genre_dist[items].sum(axis=0)


GENRE_POOL = ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
              "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
              "War", "Western", "IMAX"]


def synthetic_catalog(n_items: int, n_genres: int, rng: np.random.Generator,
                      duration_mean: float = 100.0) -> Catalog:
    """Items with 1-3 genres, Zipf-like popularity and a latent quality."""
    names = GENRE_POOL[:n_genres] if n_genres <= len(GENRE_POOL) else [f"genre{j}" for j in range(n_genres)]
    gw = rng.dirichlet(np.ones(n_genres) * 2.0)
    genres, texts = [], []
    for k in range(n_items):
        m = int(rng.integers(1, 4))
        gs = sorted(rng.choice(n_genres, size=min(m, n_genres), replace=False, p=gw).tolist())
        genres.append([names[j] for j in gs])
    rank = rng.permutation(n_items) + 1
    n_ratings = np.floor(2000.0 / rank ** 0.9).astype(int)
    quality = rng.normal(3.5, 0.45, n_items).clip(1, 5)
    years = rng.integers(1950, 2024, n_items)
    ids = np.arange(1, n_items + 1, dtype=np.int64)
    for k in range(n_items):
        texts.append(f"Item {ids[k]} ({years[k]}). Genres: {', '.join(genres[k])}.")
    items = pd.DataFrame({
        "item_id": ids, "title": [f"Item {i}" for i in ids], "genres": genres, "text": texts,
        "duration": np.clip(rng.normal(duration_mean, duration_mean * 0.2, n_items).round(), 5, None),
        "year": years, "n_ratings": n_ratings, "mean_rating": quality,
    })
    return Catalog(items)


def synthetic_population(catalog: Catalog, n_users: int, rng: np.random.Generator, *, activity_median: float = 1.0,
                         activity_tail: float = 1.5, activity_max: float = 24.0,
                         taste_concentration: float = 0.5) -> Population:
    """Users with Dirichlet genre tastes and Beta-distributed traits; no prior history."""
    n_g = len(catalog.genre_names)
    base = catalog.genre_dist.mean(axis=0).astype(np.float64) + 1e-6
    shares = rng.dirichlet(np.ones(n_g) * taste_concentration, size=n_users)
    taste = np.clip(np.log((shares + 0.5 * base) / 1.5 / base), -3, 3)
    raff = 0.4 * np.tanh(taste)
    profiles = pd.DataFrame({
        "user_id": np.arange(1, n_users + 1, dtype=np.int64),
        "activity": heavy_tailed_activity(n_users, rng, activity_median, activity_tail, activity_max),
        "conformity": rng.beta(2, 2, n_users),
        "diversity": normalised_entropy(shares),
        "rating_mean": rng.normal(3.5, 0.4, n_users).clip(2, 4.7),
        "rating_std": rng.uniform(0.6, 1.1, n_users),
        "n_history": np.zeros(n_users, dtype=int),
    })
    hist = [np.empty(0, dtype=np.int64) for _ in range(n_users)]
    return Population(profiles, taste, raff, hist, {"source": "synthetic"})


def load_products(path: str | Path, name_field: str = "Name", consume_minutes: float = 5.0) -> Catalog:
    """A JSONL product catalog (one JSON object per line, e.g. Name, Description, Price, Rating);
    ``path`` may also name a bundled catalog (``coffee_machines``, ``books``, ``cameras``)."""
    p = bundled_products_path(str(path)) if str(path) in BUNDLED_PRODUCTS else Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"product catalog {p} does not exist (give a JSONL file, or one of the "
                                f"bundled catalogs: {', '.join(BUNDLED_PRODUCTS)})")
    recs = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{n}: not valid JSON ({e.msg})") from None
        if name_field not in obj:
            raise ValueError(f"{p}:{n}: product has no {name_field!r} field")
        recs.append(obj)
    rows = []
    for k, obj in enumerate(recs, 1):
        rating = obj.get("Rating")
        tags = [str(obj[f]) for f in ("Ideal For", "Category", "Genre") if f in obj]
        rows.append({
            "item_id": k, "title": str(obj[name_field]), "genres": tags[:1],
            "text": json.dumps(obj, ensure_ascii=False),
            "duration": consume_minutes, "year": 0, "n_ratings": 0,
            "mean_rating": float(rating) if isinstance(rating, (int, float)) else np.nan,
        })
    return Catalog(pd.DataFrame(rows))


def write_movielens_sample(src: str | Path, dst: str | Path, n_users: int = 200, seed: int = 0) -> Path:
    """Write a smaller MovieLens folder: ``n_users`` random users, all their ratings, the movies
    they rated and those movies' tags (gzipped CSVs in the same layout), plus the data README."""
    src, dst = Path(src), Path(dst)
    ratings = pd.read_csv(_find(src, "ratings"))
    movies = pd.read_csv(_find(src, "movies"))
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(ratings["userId"].unique(), size=n_users, replace=False))
    r = ratings[ratings["userId"].isin(users)]
    m = movies[movies["movieId"].isin(r["movieId"].unique())]
    dst.mkdir(parents=True, exist_ok=True)
    r.to_csv(dst / "ratings.csv.gz", index=False)
    m.to_csv(dst / "movies.csv.gz", index=False)
    tp = _find(src, "tags", required=False)
    if tp is not None:
        t = pd.read_csv(tp)
        t[t["movieId"].isin(m["movieId"])].to_csv(dst / "tags.csv.gz", index=False)
    readme = src / "README.txt"
    if readme.exists():
        shutil.copy(readme, dst / "README.txt")
    return dst
