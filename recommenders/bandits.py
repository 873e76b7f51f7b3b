"""Bandit recommenders: ``slate_ts`` and ``linucb``.

``slate_ts``: slate Thompson sampling with a hierarchical prior by item group.

After Eide, Leslie & Frigessi (FINN.no slates).  Each item's click probability has a Beta
posterior whose prior is centred on its group's (primary genre's) pooled click rate, so an
item that has never been shown starts from what its group has earned; the group rates are
themselves shrunk towards the global rate.  Clicks and non-clicked impressions from
``update`` move the posteriors online.

Sampling (``sampling``):

- ``in_slate`` (default): draw S posterior samples (S = slate size) and fill the slots
  rank-major across them (each sample's best item, then each sample's second best, ...),
  skipping items already placed;
- ``single``: one posterior sample, best first (plain Thompson sampling);
- ``greedy``: the posterior mean, best first (no exploration).

Position effects are not modelled: every impression counts the same.  Nor is competition
within a slate: the likelihood is per-item Bernoulli, while the simulated users choose among
the slate's items (multinomial logit with a no-click option), as Eide et al.'s model does.
In ``scenarios/compare_recommenders.yaml`` in-slate sampling's regret keeps falling over 14
simulated days but stays above the greedy variant's; a slate-choice likelihood is the next
step.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from simulator.protocols import Feedback, SlateRequest

from .base import CACHED_PAGES, BaseRecommender, Params
from .personal import PersonalRecommender


class SlateThompsonSampling(BaseRecommender):
    name: ClassVar[str] = "slate_ts"

    @property
    def deterministic(self) -> bool:          # only the greedy variant is
        return self.params.sampling == "greedy"

    class Params(Params):
        sampling: Literal["in_slate", "single", "greedy"] = "in_slate"
        prior_strength: float = Field(20.0, gt=0, le=1e6, description="pseudo-impressions of the group prior")
        group_strength: float = Field(50.0, gt=0, le=1e6, description="pseudo-impressions pulling groups to the global rate")
        prior_ctr: float = Field(0.05, gt=0, lt=1, description="click rate assumed before any feedback")

    def fit(self, interactions, catalog) -> None:
        super().fit(interactions, catalog)
        n = len(catalog)
        # group = each item's first genre
        gm = catalog.genre_matrix
        self.group = np.where(gm.any(axis=1), gm.argmax(axis=1), 0).astype(np.int64)
        self.n_groups = gm.shape[1]
        self.clicks = np.zeros(n)
        self.shows = np.zeros(n)
        self.g_clicks = np.zeros(self.n_groups)
        self.g_shows = np.zeros(self.n_groups)

    # --------------------------------------------------------------- posterior

    def posterior(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Beta parameters (a, b) of the click probability of ``items``."""
        p = self.params
        total_c, total_n = self.g_clicks.sum(), self.g_shows.sum()
        global_rate = (total_c + p.prior_ctr * p.group_strength) / (total_n + p.group_strength)
        g = self.group[items]
        group_rate = (self.g_clicks[g] + global_rate * p.group_strength) / (self.g_shows[g] + p.group_strength)
        a = group_rate * p.prior_strength + self.clicks[items]
        b = (1 - group_rate) * p.prior_strength + self.shows[items] - self.clicks[items]
        return a, b

    def item_scores(self, request: SlateRequest, candidates: np.ndarray) -> np.ndarray:
        a, b = self.posterior(candidates)
        if self.params.sampling == "greedy":
            return a / (a + b)
        return self.rng.beta(a, b)

    def rank_candidates(self, request: SlateRequest, candidates: np.ndarray, n: int | None = None) -> np.ndarray:
        """Candidates best first; in-slate sampling interleaves S samples rank-major."""
        if self.params.sampling != "in_slate" or len(candidates) == 0:
            return candidates[np.argsort(-self.item_scores(request, candidates), kind="stable")]
        a, b = self.posterior(candidates)
        S = max(1, request.k)
        want = len(candidates) if n is None else min(n, len(candidates))
        samples = self.rng.beta(a, b, size=(S, len(candidates)))
        if want < len(candidates):            # each sample's best `want`, in order
            top = np.argpartition(-samples, want - 1, axis=1)[:, :want]
            orders = np.take_along_axis(top, np.argsort(-np.take_along_axis(samples, top, axis=1), axis=1,
                                                        kind="stable"), axis=1)
        else:
            orders = np.argsort(-samples, axis=1, kind="stable")
        out: list[int] = []
        placed: set[int] = set()
        for r in range(orders.shape[1]):            # rank-major over the S samples
            for s in range(S):
                j = int(orders[s, r])
                if j not in placed:
                    placed.add(j)
                    out.append(j)
            if len(out) >= want:
                break
        return candidates[np.asarray(out[:want], dtype=np.int64)]

    def rank_all(self, request: SlateRequest, allowed: np.ndarray) -> np.ndarray:
        cand = np.flatnonzero(allowed)
        return self.rank_candidates(request, cand, n=max((request.page + 1) * request.k, CACHED_PAGES * request.k))

    def update(self, feedback: Feedback) -> None:
        items = np.asarray(feedback.slate.items, dtype=np.int64)
        if len(items) == 0:
            return
        clicked = np.zeros(len(items))
        clicked[np.asarray(feedback.clicked, dtype=np.int64)] = 1.0
        self.shows[items] += 1.0
        self.clicks[items] += clicked
        np.add.at(self.g_shows, self.group[items], 1.0)
        np.add.at(self.g_clicks, self.group[items], clicked)


class LinUCB(PersonalRecommender):
    """LinUCB with one shared linear model (Li et al., 2010, shared-parameter form).

    Features of item i for user u: the item's genre distribution times the user's genre
    profile (from what they consumed), the item's genres, popularity, quality and a bias.
    Score = theta . x + alpha * sqrt(x' A^-1 x); every shown item updates A and b with its
    click (1) or non-click (0).  Warm start (``warm_start``): the interactions from ``fit``
    count as clicks and as many sampled unconsumed items as non-clicks.
    """

    name: ClassVar[str] = "linucb"

    class Params(PersonalRecommender.Params):
        alpha: float = Field(0.5, ge=0, le=100, description="width of the confidence bonus")
        ridge: float = Field(1.0, gt=0, le=1e6)
        warm_start: bool = True

    def fit(self, interactions, catalog) -> None:
        g = catalog.genre_dist.astype(np.float64)
        self._static = np.column_stack([g, catalog.popularity, catalog.quality, np.ones(len(catalog))])
        self.G = g.shape[1]
        d = self.G + self._static.shape[1]
        self.A = np.eye(d) * self.params.ridge
        self.b = np.zeros(d)
        self._profiles: dict[int, tuple[int, np.ndarray]] = {}
        super().fit(interactions, catalog)
        if self.params.warm_start and interactions is not None and len(interactions):
            users = interactions["user_id"].to_numpy(np.int64)
            pos = interactions["item"].to_numpy(np.int64)
            neg = self.rng.integers(0, len(catalog), size=len(pos))
            prof = np.vstack([self.profile(int(u)) for u in users])
            for items, r in ((pos, 1.0), (neg, 0.0)):
                X = self._features(prof, items)
                self.A += X.T @ X
                self.b += r * X.sum(axis=0)
        self._dirty = True

    def profile(self, user_id: int | None) -> np.ndarray:
        """The user's genre distribution (times the number of genres, so ~1 per genre)."""
        hist = self.histories.get(int(user_id), []) if user_id is not None else []
        cached = self._profiles.get(user_id)
        if cached is not None and cached[0] == len(hist):
            return cached[1]
        gd = self.catalog.genre_dist
        p = gd[hist].sum(axis=0) if hist else np.ones(self.G)
        p = p / max(p.sum(), 1e-12) * self.G
        self._profiles[user_id] = (len(hist), p)
        return p

    def _features(self, profiles: np.ndarray, items: np.ndarray) -> np.ndarray:
        s = self._static[items]
        return np.hstack([s[:, : self.G] * profiles, s])

    def _solve(self) -> None:
        if self._dirty:
            self.A_inv = np.linalg.inv(self.A)
            self.theta = self.A_inv @ self.b
            self._dirty = False

    def item_scores(self, request: SlateRequest, candidates: np.ndarray) -> np.ndarray:
        self._solve()
        X = self._features(self.profile(request.user_id)[None, :], candidates)
        bonus = np.sqrt(((X @ self.A_inv) * X).sum(axis=1).clip(min=0))
        return X @ self.theta + self.params.alpha * bonus

    def update(self, feedback: Feedback) -> None:
        items = np.asarray(feedback.slate.items, dtype=np.int64)
        if len(items):
            r = np.zeros(len(items))
            r[np.asarray(feedback.clicked, dtype=np.int64)] = 1.0
            X = self._features(self.profile(feedback.user_id)[None, :], items)
            self.A += X.T @ X
            self.b += X.T @ r
            self._dirty = True
        super().update(feedback)
