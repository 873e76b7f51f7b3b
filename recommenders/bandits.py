"""``slate_ts``: slate Thompson sampling with a hierarchical prior by item group.

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

Position effects are not modelled: every impression counts the same.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from simulator.protocols import Feedback, SlateRequest

from .base import CACHED_PAGES, BaseRecommender, Params


class SlateThompsonSampling(BaseRecommender):
    name: ClassVar[str] = "slate_ts"

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
        orders = np.argsort(-self.rng.beta(a, b, size=(S, len(candidates))), axis=1, kind="stable")
        want = len(candidates) if n is None else min(n, len(candidates))
        out: list[int] = []
        placed: set[int] = set()
        for r in range(len(candidates)):            # rank-major over the S samples
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
