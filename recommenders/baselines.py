"""Baseline recommenders: ``random`` and ``popularity``."""

from __future__ import annotations

from collections import deque
from typing import ClassVar

import numpy as np
from pydantic import Field

from recworld.simulator.protocols import Feedback, SlateRequest

from .base import BaseRecommender, Params, without

QUERY_CACHE = 256       # searches whose ranked matches a popularity ranking keeps


class RandomRecommender(BaseRecommender):
    """Uniformly random unseen items (search results in random order within each match level)."""

    name: ClassVar[str] = "random"
    deterministic: ClassVar[bool] = False

    def fit(self, interactions, catalog) -> None:
        super().fit(interactions, catalog)
        self._drawn_from: dict[int, int] = {}

    def item_scores(self, request: SlateRequest, candidates: np.ndarray) -> np.ndarray:
        return self.rng.random(len(candidates))

    def _rank(self, request: SlateRequest) -> np.ndarray:
        ranked = super()._rank(request)
        if request.page == 0:
            self._drawn_from[request.user] = len(ranked)  # N: the permutation later pages continue
        return ranked

    def propensities(self, request: SlateRequest, items: np.ndarray) -> np.ndarray | None:
        """Uniform draws without replacement: slot j of page p has probability 1 / (N - p*k - j)
        given the slots before it, N = the items the permutation was drawn from.  (Search results
        are random only within each match level, so they get None.)"""
        if request.query:
            return None
        left = self._drawn_from.get(request.user, 0) - request.page * request.k - np.arange(len(items))
        if len(items) == 0 or left.min() <= 0:       # past the first permutation (re-ranked): unknown
            return None
        return 1.0 / left.astype(np.float64)


class PopularityRecommender(BaseRecommender):
    """Most watched items in a recent window of simulated time, excluding items the user has seen.

    Warm start: historical interaction counts from ``fit``, scaled so the most-interacted item
    counts as ``prior_weight`` watches; in-world watches older than ``window_days`` expire.
    The ranking is recomputed at most every ``refresh_minutes`` of simulated time.
    """

    name: ClassVar[str] = "popularity"

    class Params(Params):
        window_days: float = Field(7.0, gt=0, le=3650, description="watches count for this many simulated days")
        prior_weight: float = Field(5.0, ge=0, le=1e9, description="watches the top historical item is worth")
        refresh_minutes: float = Field(60.0, ge=0, le=525_600, description="how stale the ranking may get")

    def fit(self, interactions, catalog) -> None:
        super().fit(interactions, catalog)
        n = len(catalog)
        prior = np.zeros(n)
        if interactions is not None and len(interactions):
            prior = np.bincount(interactions["item"].to_numpy(np.int64), minlength=n).astype(np.float64)
        elif catalog.items["n_ratings"].sum() > 0:
            prior = catalog.items["n_ratings"].to_numpy(np.float64)
        self.prior = prior / prior.max() * self.params.prior_weight if prior.max() > 0 else prior
        self.counts = np.zeros(n)
        self._window: deque[tuple[float, np.ndarray]] = deque()
        self._order = None
        self._rank_of = None          # (the ranking it was computed from, each item's score in it)
        self._query_order, self._query_ranked = None, {}   # search matches ranked, per query, for one ranking
        self._order_time = -np.inf
        self._dirty = True

    def _expire(self, now: float) -> None:
        horizon = now - self.params.window_days * 1440.0
        while self._window and self._window[0][0] < horizon:
            _, items = self._window.popleft()
            if len(items) == len(set(items.tolist())):
                self.counts[items] -= 1.0
            else:
                np.subtract.at(self.counts, items, 1.0)
            self._dirty = True

    def scores(self, now: float) -> np.ndarray:
        """Popularity score per item at simulated time ``now``."""
        self._expire(now)
        return self.prior + self.counts

    def ranking(self, now: float) -> np.ndarray:
        self._expire(now)
        if self._order is None or (self._dirty and now - self._order_time >= self.params.refresh_minutes):
            s = self.scores(now)
            self._order = np.lexsort((np.arange(len(s)), -s))     # ties: catalog order
            self._order_time = now
            self._dirty = False
        return self._order

    def item_scores(self, request: SlateRequest, candidates: np.ndarray) -> np.ndarray:
        order = self.ranking(request.time)
        if self._rank_of is None or self._rank_of[0] is not order:     # once per new ranking, not per request
            rank = np.empty(len(order), dtype=np.float64)
            rank[order] = np.arange(len(order), 0, -1)
            self._rank_of = (order, rank)
        return self._rank_of[1][candidates]

    def rank_all(self, request: SlateRequest, allowed: np.ndarray) -> np.ndarray:
        order = self.ranking(request.time)
        return order[allowed[order]]

    def _rank(self, request: SlateRequest) -> np.ndarray:
        """A search's matches in order: worked out once per query and ranking (they depend on
        nothing else here), then the request's excluded items taken out; the base class's order
        (a stable sort keeps the relative order of what remains)."""
        if not self._searches_kept(request):
            return super()._rank(request)
        return without(self._matches(request), request.exclude)

    def _searches_kept(self, request: SlateRequest) -> bool:
        return bool(request.query) and type(self).item_scores is PopularityRecommender.item_scores

    def _matches(self, request: SlateRequest) -> np.ndarray:
        """All of the search's matches, ranked (best match level, then popularity), excluded or not."""
        order = self.ranking(request.time)
        if self._query_order is not order:                 # a new ranking: earlier searches are stale
            self._query_order, self._query_ranked = order, {}
        ranked = self._query_ranked.get(request.query)
        if ranked is None:
            hits = self.catalog.search(request.query)
            if len(hits):
                level = self.catalog.query_matches(request.query, hits)
                hits = hits[np.lexsort((-self.item_scores(request, hits), -level))]
            ranked = self._query_ranked[request.query] = hits
            if len(self._query_ranked) > QUERY_CACHE:
                del self._query_ranked[next(iter(self._query_ranked))]
        return ranked

    def _top(self, request: SlateRequest, limit: int) -> np.ndarray:
        """The top of the popularity order (or of a search's ranked matches) without the excluded
        items, walking only as far down as needed (no per-request mask over the whole catalog)."""
        if type(self)._rank not in (BaseRecommender._rank, PopularityRecommender._rank) \
                or (request.query and not self._searches_kept(request)) \
                or (not request.query and type(self).rank_all is not PopularityRecommender.rank_all):
            return super()._top(request, limit)
        order = self._matches(request) if request.query else self.ranking(request.time)
        exclude = request.exclude
        head = order[: limit + len(exclude)]           # at most len(exclude) of these are excluded
        if len(exclude):
            head = without(head, exclude)
        return head[:limit].copy()

    def update(self, feedback: Feedback) -> None:
        if len(feedback.clicked):
            items = np.asarray(feedback.slate.items)[feedback.clicked]
            self._window.append((feedback.time, items))
            if len(items) == len(set(items.tolist())):     # a slate's picks: no repeats, so no np.add.at
                self.counts[items] += 1.0
            else:
                np.add.at(self.counts, items, 1.0)
            self._dirty = True
