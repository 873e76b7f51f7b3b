"""Shared machinery for recommenders: exclusion, search, paging.

A subclass gives a score per candidate item (``item_scores``); the base class removes
excluded items, puts search matches first (more query words matched = earlier), pages the
result, and keeps each user's ranking of the current browsing run so later pages continue
it without repeats.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from recworld.simulator.protocols import Feedback, NoParams, Recommender, Slate, SlateRequest

CACHED_PAGES = 10

Params = NoParams      # subclasses extend it: ``class Params(Params): ...``

_ONES = np.ones(4096)


def without(items: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """``items`` minus those in ``exclude``, order kept: ``items[~np.isin(items, exclude)]``
    for the short arrays of a page request, without ``np.isin``'s overhead."""
    if not len(exclude) or not len(items):
        return items
    ex = np.sort(exclude)
    pos = np.searchsorted(ex, items)
    pos[pos == len(ex)] = 0
    return items[ex[pos] != items]


class BaseRecommender(Recommender):
    name: ClassVar[str] = "base"
    Params: ClassVar[type[BaseModel]] = Params
    #: True when the slate is a deterministic function of the request and the recommender's
    #: state: every slot then has propensity 1.  Stochastic policies override ``propensities``.
    deterministic: ClassVar[bool] = True

    def __init__(self, params: BaseModel | dict | None = None, *, rng: np.random.Generator | None = None,
                 llm=None):
        super().__init__(params, rng=rng, llm=llm)
        self.catalog = None
        self._runs: dict[int, tuple[str | None, np.ndarray]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"

    # --------------------------------------------------------------- to override

    def fit(self, interactions, catalog) -> None:
        self.catalog = catalog

    def item_scores(self, request: SlateRequest, candidates: np.ndarray) -> np.ndarray:
        """Higher is better, one score per candidate item index."""
        raise NotImplementedError

    def rank_candidates(self, request: SlateRequest, candidates: np.ndarray) -> np.ndarray:
        """The given candidate items, best first (used when a recommender acts as an env policy)."""
        return candidates[np.argsort(-self.item_scores(request, candidates), kind="stable")]

    def rank_all(self, request: SlateRequest, allowed: np.ndarray) -> np.ndarray:
        """All allowed items, best first (override when a faster path exists)."""
        return self.rank_candidates(request, np.flatnonzero(allowed))

    def update(self, feedback: Feedback) -> None:
        pass

    # --------------------------------------------------------------- shared

    def recommend(self, request: SlateRequest) -> Slate:
        if self.catalog is None:
            raise RuntimeError(f"recommender {self.name!r} is not fitted: call fit(interactions, catalog) first")
        k, page = request.k, request.page
        cached = self._runs.get(request.user)
        need = (page + 1) * k
        if page == 0 or cached is None or cached[0] != request.query or len(cached[1]) < need:
            if page == 0 or cached is None or cached[0] != request.query:
                # a copy: a view would keep the whole ranking alive as long as the cache entry
                keep = self._top(request, max(need, CACHED_PAGES * k))
            else:   # ran past the cache: continue the ranking without repeating earlier pages
                ranked = self._rank(request)
                fresh = ranked[~np.isin(ranked, cached[1])]
                keep = np.concatenate([cached[1], fresh[: max(need, CACHED_PAGES * k) - len(cached[1])]])
            self._runs[request.user] = (request.query, keep)
            cached = self._runs[request.user]
        items = cached[1][page * k: need].copy()
        return Slate(items, self.propensities(request, items))

    def propensities(self, request: SlateRequest, items: np.ndarray) -> np.ndarray | None:
        """Per-slot probability of this slate under the policy, or None where not computable."""
        if not self.deterministic:
            return None
        n = len(items)
        return _ONES[:n].copy() if n <= len(_ONES) else np.ones(n)

    def _top(self, request: SlateRequest, limit: int) -> np.ndarray:
        """The first ``limit`` items of ``_rank(request)``, as an array of their own (subclasses
        with a cheaper way to the top of their ranking override it)."""
        return self._rank(request)[:limit].copy()

    def _rank(self, request: SlateRequest) -> np.ndarray:
        if not request.query:
            allowed = np.ones(len(self.catalog), dtype=bool)
            if len(request.exclude):
                allowed[request.exclude] = False
            return self.rank_all(request, allowed)
        hits = self.catalog.search(request.query)
        if len(request.exclude) and len(hits):      # the search hits only: no mask over the whole catalog
            hits = without(hits, request.exclude)
        if len(hits) == 0:
            return hits
        level = self.catalog.query_matches(request.query, hits)
        return hits[np.lexsort((-self.item_scores(request, hits), -level))]
