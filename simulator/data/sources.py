"""Data sources: MovieLens (ml-latest-small layout, any path), synthetic worlds, JSONL product catalogs.

Every loader returns plain objects (``Catalog``, ``Population``, an interactions table) so a
user can also build a world from their own data.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import shutil
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from recworld.simulator.data.calibration import genre_tastes
from recworld.simulator.data.catalog import Catalog
from recworld.simulator.data.errors import DataError, file_problem, show
from recworld.simulator.data.holdout import Holdout, filter_tags, split_ratings
from recworld.simulator.data.population import Population, heavy_tailed_activity, normalised_entropy

log = logging.getLogger("recworld")

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


# ----------------------------------------------------------------------------- checked CSV reading

#: the columns RecWorld reads from each MovieLens file (others are ignored)
MOVIELENS_COLUMNS = {
    "movies": ("movieId", "title", "genres"),
    "ratings": ("userId", "movieId", "rating", "timestamp"),
    "tags": ("movieId", "tag"),
}
_LAYOUT = "the MovieLens ml-latest-small layout"


def _read_csv(path: Path, stem: str) -> pd.DataFrame:
    """``pd.read_csv(path)``; an unreadable, empty or malformed file is a ``DataError``."""
    problem = file_problem(path, f"a MovieLens {stem}.csv")
    if problem is not None:
        raise problem
    header = ",".join(MOVIELENS_COLUMNS[stem])
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(path, "is empty", hint=f"it needs the header line {header} and one row per line "
                        f"({_LAYOUT})") from None
    except pd.errors.ParserError as e:
        text = " ".join(str(e).split())
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
        if m:
            raise DataError(path, f"{m.group(3)} fields where the header has {m.group(1)}", line=int(m.group(2)),
                            hint=f"every line needs the same columns as the header, {header} (quote "
                            "values that hold commas)") from None
        raise DataError(path, f"is not a valid CSV file ({text[:160]})",
                        hint=f"every line needs the same columns as the header, {header}") from None
    except UnicodeDecodeError:
        line, byte = _first_non_utf8(path)
        raise DataError(path, "is not UTF-8 text" + (f" (byte 0x{byte:02x})" if byte is not None else ""),
                        line=line, hint="save it as UTF-8 CSV") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(path, f"is not a readable gzip file ({e})",
                        hint="compress it again, or give the plain .csv") from None
    except OSError as e:
        raise DataError(path, f"cannot be read ({e.strerror or e})") from None
    missing = [c for c in MOVIELENS_COLUMNS[stem] if c not in df.columns]
    if missing:
        found = ", ".join(show(str(c), 30) for c in df.columns[:8]) + (", ..." if len(df.columns) > 8 else "")
        hint = f"the header line must name {header} ({_LAYOUT})"
        if len(df.columns) == 1 and any(sep in str(df.columns[0]) for sep in ";\t|"):
            sep = next(sep for sep in ";\t|" if sep in str(df.columns[0]))
            hint = f"the file seems to separate values with {sep!r}; MovieLens files are comma-separated ({header})"
        raise DataError(path, f"has no column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                        f"(its header has {found})", line=1, hint=hint)
    return df


def _first_non_utf8(path: Path) -> tuple[int | None, int | None]:
    """(line, byte) of the first byte that is not UTF-8 in a (possibly gzipped) text file."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    return n, raw[e.start]
    except (OSError, EOFError, zlib.error):
        pass
    return None, None


def _numbers(df: pd.DataFrame, path: Path, col: str, *, whole: bool, what: str,
             lo: float | None = None, hi: float | None = None) -> None:
    """Check that column ``col`` holds numbers (whole numbers if ``whole``) in [lo, hi]; a text
    column of valid numbers is converted in place. Errors name the line (the header is line 1)."""
    s = df[col]
    hint = f"{col} must be {what} (fix or remove that line)"
    if pd.api.types.is_bool_dtype(s):
        raise DataError(path, f"{show(str(s.iloc[0]))} is not a number", line=2, column=col, hint=hint)
    if not pd.api.types.is_numeric_dtype(s):
        num = pd.to_numeric(s.astype("object").where(s.notna(), None), errors="coerce")
        bad = (num.isna() & s.notna()) | s.map(lambda v: isinstance(v, bool)).astype(bool)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(path, f"{show(str(s.iloc[i]))} is not a number", line=i + 2, column=col, hint=hint)
        s = num
    values = s.to_numpy(dtype=np.float64, na_value=np.nan)
    checks = [(np.isnan(values), "is empty"), (np.isinf(values), "is not a finite number")]
    if whole:
        with np.errstate(invalid="ignore"):
            checks.append((np.isfinite(values) & (values != np.round(values)), "is not a whole number"))
            checks.append((np.abs(values) >= 2.0 ** 53, "is too large"))
    with np.errstate(invalid="ignore"):
        if lo is not None:
            checks.append((values < lo, f"is below {lo:g}"))
        if hi is not None:
            checks.append((values > hi, f"is above {hi:g}"))
    for bad, problem in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            v = df[col].iloc[i]
            v = v.item() if isinstance(v, np.generic) else v
            msg = "the value is empty" if problem == "is empty" else f"{show(v)} {problem}"
            raise DataError(path, msg, line=i + 2, column=col, hint=hint)
    if s is not df[col]:
        df[col] = s.astype(np.int64) if whole else s.astype(np.float64)


def _texts(df: pd.DataFrame, path: Path, col: str, hint: str) -> None:
    empty = df[col].isna().to_numpy() | (df[col].astype(str).str.strip() == "").to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise DataError(path, "the value is empty", line=i + 2, column=col, hint=hint)


@dataclass
class MovieLensTables:
    """The three MovieLens tables, read and checked (``tags`` None without a tags file)."""
    folder: Path
    movies: pd.DataFrame
    ratings: pd.DataFrame
    tags: pd.DataFrame | None
    files: dict[str, Path]


def read_movielens_tables(path: str | Path) -> MovieLensTables:
    """Read and check a MovieLens folder: the files exist, have the columns RecWorld reads,
    ids are whole numbers, ratings are numbers from 0.5 to 5, timestamps whole numbers,
    titles and genres are given, movieIds are unique in movies.csv, and ratings name movies of
    movies.csv. Every problem is a ``DataError`` naming the file, the line and the column."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        if folder.exists():
            raise DataError(folder, "is a file, not a folder", hint=f"data.path names a folder in {_LAYOUT} "
                            "(movies.csv, ratings.csv, optional tags.csv)")
        raise FileNotFoundError(f"MovieLens folder {folder} does not exist")
    files = {"movies": _find(folder, "movies"), "ratings": _find(folder, "ratings")}
    tags_path = _find(folder, "tags", required=False)
    if tags_path is not None:
        files["tags"] = tags_path
    movies = _read_csv(files["movies"], "movies")
    ratings = _read_csv(files["ratings"], "ratings")
    tags = _read_csv(tags_path, "tags") if tags_path is not None else None

    mp, rp = files["movies"], files["ratings"]
    if len(movies) == 0:
        raise DataError(mp, "has no movies (only a header)", hint="add one line per movie: movieId,title,genres")
    _numbers(movies, mp, "movieId", whole=True, what="a whole number (the movie's id)")
    _texts(movies, mp, "title", "every movie needs a title")
    _texts(movies, mp, "genres", "write the genres separated by '|', or (no genres listed)")
    dup = movies["movieId"].duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        first = movies["movieId"].iloc[rows[0]]
        twin = rows[movies["movieId"].iloc[rows].to_numpy() == first]
        raise DataError(mp, f"movieId {first} appears twice (lines {twin[0] + 2} and {twin[1] + 2})",
                        column="movieId", hint="each movie needs its own id; remove or renumber one")
    if len(ratings) == 0:
        raise DataError(rp, "has no ratings (only a header)", hint="add one line per rating: "
                        "userId,movieId,rating,timestamp")
    _numbers(ratings, rp, "userId", whole=True, what="a whole number (the user's id)")
    _numbers(ratings, rp, "movieId", whole=True, what="a whole number (a movieId of movies.csv)")
    _numbers(ratings, rp, "rating", whole=False, what="a number from 0.5 to 5 (stars)", lo=0.5, hi=5.0)
    _numbers(ratings, rp, "timestamp", whole=True, what="a whole number (Unix time in seconds)")
    known = ratings["movieId"].isin(movies["movieId"]).to_numpy()
    if not known.any():
        raise DataError(rp, f"none of its {len(ratings)} ratings names a movieId of {mp.name} "
                        f"(e.g. movieId {ratings['movieId'].iloc[0]} on line 2)",
                        hint="ratings.csv and movies.csv must come from the same dataset")
    if not known.all():
        unknown = ratings.loc[~known, "movieId"]
        log.warning("%s: %d of %d ratings name movies that are not in %s (e.g. movieId %s on line %d); "
                    "they are ignored", rp, len(unknown), len(ratings), mp.name, unknown.iloc[0],
                    int(np.flatnonzero(~known)[0]) + 2)
    if tags is not None:
        _numbers(tags, tags_path, "movieId", whole=True, what="a whole number (a movieId of movies.csv)")
    return MovieLensTables(folder, movies, ratings, tags, files)


def eligible_users(ratings: pd.DataFrame, min_ratings: int) -> pd.Series:
    """Ratings per user (``userId`` or ``user_id`` column) of the users with at least ``min_ratings``."""
    col = "user_id" if "user_id" in ratings.columns else "userId"
    counts = ratings.groupby(col).size()
    return counts[counts >= min_ratings]


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
    ratings: pd.DataFrame    # user_id, item_id, item (catalog index), rating, timestamp; with a holdout: the history
    heldout: pd.DataFrame | None = None   # with a holdout: the held-out ratings (same columns), for evaluation only
    holdout: Holdout | None = None


def _given_ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    """A ratings table given by the caller, with MovieLens column names, checked."""
    if not isinstance(ratings, pd.DataFrame):
        raise TypeError(f"ratings must be a pandas DataFrame (got {type(ratings).__name__})")
    df = ratings.rename(columns={"user_id": "userId", "item_id": "movieId"})
    missing = [c for c in MOVIELENS_COLUMNS["ratings"] if c not in df.columns]
    if missing:
        raise ValueError(f"the given ratings have no column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                         "they need userId, movieId, rating, timestamp (or user_id, item_id, rating, timestamp)")
    df = df[list(MOVIELENS_COLUMNS["ratings"])].copy()
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]) or df[col].isna().any():
            raise ValueError(f"the given ratings' {col} column must hold numbers, none missing")
    r = df["rating"].to_numpy(np.float64)
    if len(r) and (r.min() < 0.5 or r.max() > 5.0):
        raise ValueError("the given ratings must be numbers from 0.5 to 5 (stars)")
    return df.reset_index(drop=True)


def _interactions(ratings: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    """MovieLens ratings (of movies in ``catalog``) as an interactions table, by user and time."""
    ratings = ratings[ratings["movieId"].isin(catalog._index)]
    return pd.DataFrame({
        "user_id": ratings["userId"].to_numpy(np.int64),
        "item_id": ratings["movieId"].to_numpy(np.int64),
        "item": catalog.indices_of(ratings["movieId"].to_numpy()),
        "rating": ratings["rating"].to_numpy(np.float64),
        "timestamp": ratings["timestamp"].to_numpy(np.int64),
    }).sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)


def load_movielens(path: str | Path, n_tags: int = 10, *, holdout: Holdout | dict | None = None,
                   ratings: pd.DataFrame | None = None) -> MovieLens:
    """Load a folder in the ml-latest-small format.

    Item text = title, genres and the item's most frequent tags.  Works on the full
    ml-latest-small, on the bundled sample, and on any folder with the same files.

    ``ratings``: use these ratings (columns userId, movieId, rating, timestamp, or user_id,
    item_id, rating, timestamp) instead of the folder's ratings file, e.g. a chosen subset.
    ``holdout`` (a ``data.holdout.Holdout``, a dict, or a scenario's ``data.holdout``): split
    the ratings (see ``recworld.simulator.data.holdout``); the catalog's popularity and
    quality, its tags and ``MovieLens.ratings`` then come from the history only, and the
    held-out ratings are in ``MovieLens.heldout``, for evaluation (a world never sees them).
    """
    tables = read_movielens_tables(path)
    movies, ratings_all, tags = tables.movies, tables.ratings, tables.tags
    if ratings is not None:
        ratings_all = _given_ratings(ratings)
    split = None
    h = Holdout.of(holdout)
    if h is not None:
        known = ratings_all[ratings_all["movieId"].isin(movies["movieId"])]
        split = split_ratings(known, h)
        ratings_all = split.history
        tags = filter_tags(tags, split)

    movies = movies.rename(columns={"movieId": "item_id"})
    titles = movies["title"].astype(str)
    year = titles.str.extract(_YEAR, expand=False).astype("float").fillna(0).astype(int)
    clean_title = titles.str.replace(_YEAR, "", regex=True).str.strip()
    genres = [[] if g == "(no genres listed)" else g.split("|") for g in movies["genres"].astype(str)]

    tag_text = {}
    if tags is not None:
        tags = tags.copy()
        tags["tag"] = tags["tag"].astype(str).str.strip().str.lower()
        top = (tags.groupby(["movieId", "tag"]).size().rename("n").reset_index()
               .sort_values(["movieId", "n", "tag"], ascending=[True, False, True]))
        for mid, grp in top.groupby("movieId", sort=False):
            tag_text[int(mid)] = ", ".join(grp["tag"].head(n_tags))

    stats = ratings_all.groupby("movieId")["rating"].agg(["size", "mean"])
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
    inter = _interactions(ratings_all, catalog)
    if split is None:
        return MovieLens(catalog, inter)
    return MovieLens(catalog, inter, _interactions(split.heldout, catalog), h)


def population_problem(counts: pd.Series, n_users: int, min_ratings: int,
                       what: str = "ratings") -> tuple[str, str] | None:
    """(field, message) if ``n_users`` users with ``min_ratings`` ratings cannot be drawn from
    ``counts`` (ratings per user), else None.  ``what`` names the ratings counted."""
    n_eligible = int((counts >= min_ratings).sum())
    if n_eligible == 0:
        most = int(counts.max()) if len(counts) else 0
        return "data.min_ratings", (f"no user has at least {min_ratings} {what} (data.min_ratings) in this "
                                    f"MovieLens folder (the most any user has is {most}); lower data.min_ratings")
    if n_users > n_eligible:
        return "population.size", (f"population.size={n_users} but only {n_eligible} users have at least "
                                   f"{min_ratings} {what} (data.min_ratings) in this MovieLens folder; lower "
                                   f"population.size to at most {n_eligible}, or data.min_ratings")
    return None


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


def population_from_ratings(catalog: Catalog, inter: pd.DataFrame, n_users: int | None = None,
                            rng: np.random.Generator | None = None, *, users=None, sample: str = "random",
                            min_ratings: int = 20, activity_median: float = 1.0, activity_tail: float = 1.5,
                            activity_max: float = 24.0, fit: bool = True) -> Population:
    """Profiles calibrated from rating histories (Agent4Rec-style traits: activity, conformity, diversity).

    ``inter`` is an interactions table (``load_movielens(...).ratings``): everything the users
    are built from.  Give it the history of a holdout split and nothing held out reaches the
    population.  ``n_users`` users with at least ``min_ratings`` ratings are drawn (``sample``:
    random, or the most active); or ``users`` names them (user ids, in the order wanted; any
    user with at least one rating in ``inter``).

    The choice model's weights on taste, popularity and quality are fitted by logistic
    regression of held-out watched items against random unwatched ones, and the rating
    model's weights by least squares; both go to ``Population.calibration``.  With ``fit``,
    the fitted parametric user is fitted too (``recworld.simulator.data.calibration``: the
    ``slate_*`` and ``rating_*`` keys, and the arrays in ``Population.fitted``).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    counts = inter.groupby("user_id").size()
    if users is not None:
        chosen = np.asarray(list(users), dtype=np.int64)
        if len(chosen) == 0:
            raise ValueError("users: give at least one user id")
        if len(np.unique(chosen)) != len(chosen):
            raise ValueError("users: a user id appears more than once")
        unknown = chosen[~np.isin(chosen, counts.index.to_numpy())]
        if len(unknown):
            raise ValueError(f"users: {len(unknown)} of the given users have no ratings to build them from "
                             f"(e.g. user {int(unknown[0])})")
        n_users = len(chosen)
    else:
        if n_users is None:
            raise ValueError("give n_users (how many users to draw) or users (their ids)")
        eligible = counts[counts >= min_ratings]
        problem = population_problem(counts, n_users, min_ratings)
        if problem is not None:
            raise ValueError(problem[1])
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
        taste[k], raff[k] = genre_tastes(catalog, items, r, base, mu)
        history.append(items.astype(np.int64))
        history_r.append(r.astype(np.float64))
        conformity = 1 - min(1.0, float(np.abs(r - item_mean.reindex(items).to_numpy()).mean()) / 1.5)
        rows.append((int(uid), 0.0, conformity, float(normalised_entropy(taste_share(catalog, items))),
                     mu, max(sd, 0.3), len(items)))
        # calibration data: tastes from 80% of the history, predict the other 20%
        cut = max(1, int(len(items) * 0.8))
        t_tr, d_tr = genre_tastes(catalog, items[:cut], r[:cut], base, mu)
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
    fitted = {}
    if fit and fit_X:
        # the fitted parametric user (slate likelihood, collaborative signal, rating model): a fit of
        # the data alone, with random draws of its own (rng is not touched)
        from recworld.simulator.data.calibration import fit_parametric

        model = fit_parametric(catalog, inter, chosen)
        calibration.update(model.calibration)
        fitted = model.arrays
    return Population(profiles, taste, raff, history, calibration, history_r, fitted)


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


def products_file(path: str | Path) -> Path:
    """The JSONL file of a product catalog: ``path``, or a bundled catalog's file for its name."""
    return bundled_products_path(str(path)) if str(path) in BUNDLED_PRODUCTS else Path(path).expanduser()


def read_products(path: str | Path, name_field: str = "Name") -> list[dict]:
    """The products of a JSONL catalog, checked: one JSON object per line (blank lines are
    skipped), each with a non-empty ``name_field`` (text or a number). Every problem is a
    ``DataError`` naming the file and the line."""
    p = products_file(path)
    if not p.exists() and not p.is_symlink():
        raise FileNotFoundError(f"product catalog {p} does not exist (give a JSONL file, or one of the "
                                f"bundled catalogs: {', '.join(BUNDLED_PRODUCTS)})")
    problem = file_problem(p, "a JSONL product catalog")
    if problem is not None:
        raise problem
    try:
        data = p.read_bytes()
    except OSError as e:
        raise DataError(p, f"cannot be read ({e.strerror or e})") from None
    hint = f'each line must be one JSON object with a {name_field!r} field, e.g. {{"{name_field}": "...", ' \
           '"Description": "..."}'
    if b"\x00" in data[:65536]:
        raise DataError(p, "is a binary file, not JSONL text", hint=hint)
    recs = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise DataError(p, f"is not UTF-8 text (byte 0x{raw[e.start]:02x})", line=n,
                            hint="save the file as UTF-8") from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(p, f"not valid JSON ({e.msg} at column {e.colno})", line=n, hint=hint) from None
        except RecursionError:
            raise DataError(p, "JSON nested too deeply", line=n, hint=hint) from None
        if not isinstance(obj, dict):
            kind = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
                type(obj), "a number")
            raise DataError(p, f"the line is {kind} ({show(line.strip(), 40)}), not a JSON object", line=n,
                            hint=hint)
        if name_field not in obj:
            raise DataError(p, f"the product has no {name_field!r} field (its fields: "
                            f"{', '.join(show(str(k), 30) for k in list(obj)[:6]) or 'none'})", line=n, hint=hint)
        name = obj[name_field]
        if isinstance(name, bool) or not isinstance(name, (str, int, float)) or not str(name).strip():
            shown = show(name) if isinstance(name, str) else json.dumps(name)[:40]
            raise DataError(p, f"the product's {name_field!r} is {shown}; it must be a non-empty text",
                            line=n, hint=hint)
        recs.append(obj)
    if not recs:
        raise DataError(p, "has no products (the file is empty)", hint=hint)
    return recs


def load_products(path: str | Path, name_field: str = "Name", consume_minutes: float = 5.0) -> Catalog:
    """A JSONL product catalog (one JSON object per line, e.g. Name, Description, Price, Rating);
    ``path`` may also name a bundled catalog (``coffee_machines``, ``books``, ``cameras``)."""
    recs = read_products(path, name_field)
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


# ----------------------------------------------------------------------------- checking a scenario's data


def _n_genres(catalog_genres) -> int:
    return max(1, len({g for gs in catalog_genres for g in gs}))


#: scenarios whose data checked out, by their data settings and the size and time of each file:
#: a run validates its scenario more than once, and reading a large dataset again is slow
_CHECKED: dict[tuple, tuple[int, int]] = {}


def _data_key(scenario) -> tuple | None:
    """The data settings of ``scenario`` with the size and modification time of every file its
    check reads (None if one cannot be examined)."""
    d, sc = scenario.data, scenario.social
    files: list[Path] = []
    try:
        if d.source == "movielens":
            folder = Path(d.path).expanduser() if d.path else bundled_movielens_path()
            files += [p for p in (_find(folder, "movies", False), _find(folder, "ratings", False),
                                  _find(folder, "tags", False)) if p is not None]
        elif d.source == "products":
            files.append(products_file(d.path))
        if sc.graph == "edgelist" and sc.path:
            files.append(Path(sc.path).expanduser())
        if scenario.sts is not None:
            files += [products_file(c.path) for c in scenario.sts.catalogs]
        stamps = tuple((str(p), st.st_size, st.st_mtime_ns) for p in files for st in (p.stat(),))
    except (OSError, ValueError):
        return None
    settings = (d.model_dump_json(), scenario.population.size, sc.model_dump_json(),
                tuple(c.path for c in scenario.sts.catalogs) if scenario.sts is not None else ())
    return settings, stamps


def check_data(scenario) -> list[tuple[str, str]]:
    """What is wrong with the data a scenario names, as (field, message) pairs, without building
    anything: its MovieLens folder or product catalog is read and checked, enough users must
    qualify, the edge list must join users of the population, and the world must fit in the
    memory available."""
    from recworld.simulator.data.population import memory_problem

    sc = scenario.social
    key = _data_key(scenario)
    if key is not None and key in _CHECKED:
        n_items, n_genres = _CHECKED[key]
        problems: list[tuple[str, str]] = []
    else:
        problems, n_items, n_genres = _check_files(scenario)
        if not problems and key is not None and n_items is not None:
            if len(_CHECKED) >= 16:
                _CHECKED.clear()
            _CHECKED[key] = (n_items, n_genres)
    if n_items is not None:
        degree = sc.degree if sc.graph in ("small_world", "scale_free", "random") else 0
        msg = memory_problem(scenario.population.size, n_items, n_genres, degree)
        if msg is not None:
            problems.append(("population.size", msg))
    return problems


def _check_files(scenario) -> tuple[list[tuple[str, str]], int | None, int]:
    """``check_data`` without the memory estimate: (problems, number of items, number of genres)."""
    from recworld.simulator.data.social import match_problem, read_edgelist

    d, size = scenario.data, scenario.population.size
    problems: list[tuple[str, str]] = []
    users = None                 # the ids the population is drawn from
    n_items, n_genres = None, 12
    try:
        if d.source == "movielens":
            t = read_movielens_tables(d.path or bundled_movielens_path())
            known = t.ratings[t.ratings["movieId"].isin(t.movies["movieId"])]
            what = "ratings"
            if getattr(d, "holdout", None) is not None:
                known = split_ratings(known, d.holdout).history     # users are built from their history
                what = "history ratings"
            counts = known.groupby("userId").size()
            problem = population_problem(counts, size, d.min_ratings, what)
            if problem is not None:
                problems.append(problem)
            users = set(counts[counts >= d.min_ratings].index.tolist())
            n_items = len(t.movies)
            n_genres = _n_genres(str(g).split("|") for g in t.movies["genres"])
        elif d.source == "products":
            recs = read_products(d.path)
            n_items = len(recs)
            users = range(1, size + 1)
        else:
            n_items, n_genres = d.n_items, d.n_genres
            users = range(1, size + 1)
    except (DataError, FileNotFoundError) as e:
        problems.append(("data.path", str(e)))
    if scenario.sts is not None:
        for i, c in enumerate(scenario.sts.catalogs):
            try:
                read_products(c.path)
            except (DataError, FileNotFoundError) as e:
                problems.append((f"sts.catalogs.{i}.path", str(e)))
    sc = scenario.social
    if sc.graph == "edgelist" and sc.path:
        try:
            pairs, lines = read_edgelist(sc.path)
            if users is not None:
                err, _ = match_problem(Path(sc.path), pairs, lines, users)
                if err is not None:
                    problems.append(("social.path", str(err)))
        except (DataError, FileNotFoundError) as e:
            problems.append(("social.path", str(e)))
    return problems, n_items, n_genres
