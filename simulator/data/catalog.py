"""The item catalog: a pandas table plus the dense arrays the world needs on its hot path.

Inside the world items are addressed by their *index*, the row position in
``Catalog.items`` (0..n-1).  ``Catalog.ids[index]`` gives the public item id that
appears in the event log.
"""

from __future__ import annotations

import re
from collections import OrderedDict, defaultdict

import numpy as np
import pandas as pd

_TOKEN = re.compile(r"[a-z0-9]+")

REQUIRED_COLUMNS = ("item_id", "title", "genres", "text", "duration", "year")


def product_object(text: str) -> dict | None:
    """The JSON object a product catalog keeps as item text (Name, Description, ...), or None
    for plain text."""
    if not text.startswith("{"):
        return None
    import json

    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def popularity_quality(n_ratings: np.ndarray, mean_rating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(popularity, quality) of items from their number of ratings and mean rating:
    popularity = log(1 + n) scaled to 0..1; quality = the mean rating shrunk towards the mean of
    the items' means (10 pseudo-ratings), centred at 0 (0 where nothing is known)."""
    n = np.asarray(n_ratings, dtype=np.float64)
    lp = np.log1p(n)
    popularity = lp / lp.max() if lp.max() > 0 else np.zeros_like(lp)
    mr = np.asarray(mean_rating, dtype=np.float64)
    if np.isfinite(mr).any():
        g = np.nanmean(mr)
        shrunk = np.where(np.isfinite(mr), (mr * n + g * 10) / (n + 10), g)
        quality = (shrunk - g).astype(np.float64)
    else:
        quality = np.zeros(len(n))
    return popularity, quality


class Catalog:
    """Items with title, genres, free text, duration (simulated minutes) and release year.

    Optional columns: ``n_ratings`` (popularity prior) and ``mean_rating``.
    """

    #: queries whose match counts and search results are kept
    QUERY_CACHE = 64

    def __init__(self, items: pd.DataFrame):
        missing = [c for c in REQUIRED_COLUMNS if c not in items.columns]
        if missing:
            raise ValueError(f"catalog table is missing columns {missing}; it needs {list(REQUIRED_COLUMNS)}")
        if items["item_id"].duplicated().any():
            dup = items.loc[items["item_id"].duplicated(), "item_id"].iloc[0]
            raise ValueError(f"catalog has duplicate item_id {dup!r}")
        if len(items) == 0:
            raise ValueError("catalog is empty")
        items = items.reset_index(drop=True).copy()
        if "n_ratings" not in items.columns:
            items["n_ratings"] = 0
        if "mean_rating" not in items.columns:
            items["mean_rating"] = np.nan
        self.items = items
        self.ids = items["item_id"].to_numpy(dtype=np.int64)
        self._index = {int(i): k for k, i in enumerate(self.ids)}
        self.titles = items["title"].astype(str).tolist()
        self.duration = items["duration"].to_numpy(dtype=np.float64)
        self.year = items["year"].fillna(0).to_numpy(dtype=np.int32)

        genre_lists = [list(g) for g in items["genres"]]
        self.genre_lists = genre_lists
        names = sorted({g for gs in genre_lists for g in gs})
        if not names:
            names = ["(none)"]
            genre_lists = [["(none)"] for _ in genre_lists]
        self.genre_names = names
        col = {g: j for j, g in enumerate(names)}
        gm = np.zeros((len(items), len(names)), dtype=np.float32)
        for r, gs in enumerate(genre_lists):
            for g in gs:
                gm[r, col[g]] = 1.0
        self.genre_matrix = gm
        # genre distribution of each item (rows sum to 1; items without genres spread evenly)
        counts = gm.sum(axis=1, keepdims=True)
        self.genre_dist = np.where(counts > 0, gm / np.maximum(counts, 1), 1.0 / len(names)).astype(np.float32)

        self.popularity, self.quality = popularity_quality(items["n_ratings"].to_numpy(dtype=np.float64),
                                                           items["mean_rating"].to_numpy(dtype=np.float64))
        self._inverted: dict[str, np.ndarray] | None = None
        # the last queries' match counts and search results (users search the same few words)
        self._counts_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._search_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Catalog({len(self)} items, {len(self.genre_names)} genres)"

    def index_of(self, item_id: int) -> int:
        try:
            return self._index[int(item_id)]
        except KeyError:
            raise KeyError(f"item_id {item_id} is not in the catalog") from None

    def indices_of(self, item_ids) -> np.ndarray:
        return np.fromiter((self._index[int(i)] for i in item_ids), dtype=np.int64)

    def _match_counts(self, query: str) -> np.ndarray:
        """Number of distinct query words each item's title, genres or text contains."""
        if self._inverted is None:
            inv: dict[str, list[int]] = defaultdict(list)
            for k, (t, gs, txt) in enumerate(zip(self.titles, self.genre_lists, self.items["text"].astype(str))):
                for tok in set(tokenize(f"{t} {' '.join(gs)} {txt}")):
                    inv[tok].append(k)
            self._inverted = {t: np.asarray(v, dtype=np.int64) for t, v in inv.items()}
        cached = self._counts_cache.get(query)
        if cached is not None:
            self._counts_cache.move_to_end(query)
            return cached
        hits = [self._inverted[t] for t in set(tokenize(query)) if t in self._inverted]
        if not hits:
            counts = np.zeros(len(self), dtype=np.int64)
        else:
            counts = np.bincount(np.concatenate(hits), minlength=len(self))
        counts.flags.writeable = False          # shared by every caller of the same query
        self._counts_cache[query] = counts
        if len(self._counts_cache) > self.QUERY_CACHE:
            self._counts_cache.popitem(last=False)
        return counts

    def query_matches(self, query: str, items: np.ndarray) -> np.ndarray:
        return self._match_counts(query)[np.asarray(items, dtype=np.int64)]

    def search(self, query: str, limit: int | None = None) -> np.ndarray:
        """Item indices whose title, genres or text contain the query's words.

        Ranked by the number of query words matched (then by popularity); empty if none match.
        """
        out = self._search_cache.get(query)
        if out is None:
            score = self._match_counts(query)
            cand = np.flatnonzero(score)
            out = cand[np.lexsort((-self.popularity[cand], -score[cand]))]
            self._search_cache[query] = out
            if len(self._search_cache) > self.QUERY_CACHE:
                self._search_cache.popitem(last=False)
        else:
            self._search_cache.move_to_end(query)
        return (out if limit is None else out[:limit]).copy()     # the caller's own array (the cache stays intact)
