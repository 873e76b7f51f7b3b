"""Bandit recommenders: ``slate_ts`` and ``linucb``.

``slate_ts``: slate Thompson sampling after Eide, Leslie & Frigessi (FINN.no slates).

The model scores user u's preference for item i on the logit scale,

    s(u, i) = b + mu[group(i)] + delta[i] + sum_g w[i, g] * beta[u, g]

with a global level ``b``, an effect ``mu`` per item group (the item's first genre), each
item's deviation ``delta`` from its group (the hierarchical prior: an item never shown scores
as its group has earned) and the user's affinity ``beta`` for each genre, weighted by the
item's genre shares ``w``.  Feedback enters through the slate-choice likelihood the paper
uses: on a page the user's first pick is item j with probability
``exp(s_j) / (1 + sum_k exp(s_k))`` over the slate, and nothing with ``1 / (1 + ...)``.
The posterior is Gaussian with a diagonal precision, updated after every page by a Laplace
step (a few Newton iterations on the page's parameters, then the Hessian's diagonal is
added to their precisions), as in Chapelle & Li's online Bayesian logistic regression.

Sampling (``sampling``):

- ``in_slate`` (default): draw S posterior samples (S = slate size) and fill the slots
  rank-major across them (each sample's best item, then each sample's second best, ...),
  skipping items already placed;
- ``single``: one posterior sample, best first (plain Thompson sampling);
- ``greedy``: the posterior mean, best first (no exploration).

The samples are drawn with the posterior's standard deviations scaled by ``exploration``
(default 0.3).  With the plain posterior (1.0) in-slate sampling explored so much that its
regret stayed above the greedy variant's in ``scenarios/compare_recommenders.yaml``; at 0.3
it is below greedy from the first days on (see the README's figures).

Position effects are not modelled.  Per-slot propensities of a sampled slate have no closed
form, so sampled slates carry none (the greedy variant's slots have propensity 1).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from recworld.simulator.protocols import Feedback, SlateRequest

from .base import CACHED_PAGES, BaseRecommender, Params
from .personal import PersonalRecommender


def _pick_probabilities(s: np.ndarray) -> np.ndarray:
    """Slate-choice probabilities of each item given scores ``s``, against a no-click option
    of score 0 (computed stably)."""
    top = max(0.0, float(s.max()))
    e = np.exp(s - top)
    return e / (math.exp(-top) + e.sum())


class SlateThompsonSampling(BaseRecommender):
    name: ClassVar[str] = "slate_ts"

    @property
    def deterministic(self) -> bool:          # only the greedy variant is
        return self.params.sampling == "greedy"

    class Params(Params):
        sampling: Literal["in_slate", "single", "greedy"] = "in_slate"
        prior_ctr: float = Field(0.05, gt=0, lt=1, description="an item's click rate assumed before any feedback")
        group_sd: float = Field(1.0, gt=0, le=100, description="prior sd of a group's effect (logit scale)")
        item_sd: float = Field(0.5, gt=0, le=100, description="prior sd of an item's deviation from its group")
        user_sd: float = Field(1.0, ge=0, le=100, description="prior sd of a user's affinity per genre; 0 = no "
                                                              "personalisation")
        exploration: float = Field(0.3, ge=0, le=10, description="scale of the posterior sd when sampling "
                                                                  "(1 = the posterior itself; < 1 tempers exploration)")
        newton_steps: int = Field(3, ge=1, le=50, description="Newton iterations per Laplace update")

    def fit(self, interactions, catalog) -> None:
        super().fit(interactions, catalog)
        n = len(catalog)
        gm = catalog.genre_matrix
        self.group = np.where(gm.any(axis=1), gm.argmax(axis=1), 0).astype(np.int64)
        self.G = gm.shape[1]
        self.W = np.asarray(catalog.genre_dist, dtype=np.float64)
        p = self.params
        # posterior means and precisions: [b], mu (G), delta (n); beta per user (G each)
        self.m_b = math.log(p.prior_ctr / (1 - p.prior_ctr))
        self.q_b = 1.0
        self.m_mu, self.q_mu = np.zeros(self.G), np.full(self.G, 1 / p.group_sd ** 2)
        self.m_delta, self.q_delta = np.zeros(n), np.full(n, 1 / p.item_sd ** 2)
        self._users: dict[int, int] = {}
        self.m_beta = np.zeros((0, self.G))
        self.q_beta = np.zeros((0, self.G))

    # --------------------------------------------------------------- posterior

    def _user_row(self, user: int | None, create: bool = False) -> int | None:
        if user is None or self.params.user_sd == 0:
            return None
        row = self._users.get(int(user))
        if row is None and create:
            row = self._users[int(user)] = len(self._users)
            if row >= len(self.m_beta):           # grow by doubling
                extra = max(16, len(self.m_beta))
                self.m_beta = np.vstack([self.m_beta, np.zeros((extra, self.G))])
                self.q_beta = np.vstack([self.q_beta, np.full((extra, self.G), 1 / self.params.user_sd ** 2)])
        return row

    def posterior(self, items: np.ndarray, user: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the score s(user, item) of ``items`` (logit scale)."""
        items = np.asarray(items, dtype=np.int64)
        g = self.group[items]
        mean = self.m_b + self.m_mu[g] + self.m_delta[items]
        var = 1 / self.q_b + 1 / self.q_mu[g] + 1 / self.q_delta[items]
        row = self._user_row(user)
        w = self.W[items]
        if row is not None:
            mean = mean + w @ self.m_beta[row]
            var = var + (w * w) @ (1 / self.q_beta[row])
        elif self.params.user_sd > 0:
            var = var + (w * w).sum(axis=1) * self.params.user_sd ** 2
        return mean, var

    def _sample_scores(self, user: int | None, items: np.ndarray, size: int) -> np.ndarray:
        """``size`` posterior samples of the scores of ``items``: the parameters are drawn, so
        items that share a group or genre move together within one sample."""
        rng, g, c = self.rng, self.group[items], self.params.exploration
        b = self.m_b + c * rng.standard_normal((size, 1)) / math.sqrt(self.q_b)
        mu = self.m_mu + c * rng.standard_normal((size, self.G)) / np.sqrt(self.q_mu)
        delta = self.m_delta[items] + c * rng.standard_normal((size, len(items))) / np.sqrt(self.q_delta[items])
        s = b + mu[:, g] + delta
        if self.params.user_sd > 0:
            row = self._user_row(user)
            if row is None:
                beta = c * rng.standard_normal((size, self.G)) * self.params.user_sd
            else:
                beta = self.m_beta[row] + c * rng.standard_normal((size, self.G)) / np.sqrt(self.q_beta[row])
            s = s + beta @ self.W[items].T
        return s

    def item_scores(self, request: SlateRequest, candidates: np.ndarray) -> np.ndarray:
        if self.params.sampling == "greedy":
            return self.posterior(candidates, request.user)[0]
        return self._sample_scores(request.user, candidates, 1)[0]

    def rank_candidates(self, request: SlateRequest, candidates: np.ndarray, n: int | None = None) -> np.ndarray:
        """Candidates best first; in-slate sampling interleaves S samples rank-major."""
        if self.params.sampling != "in_slate" or len(candidates) == 0:
            return candidates[np.argsort(-self.item_scores(request, candidates), kind="stable")]
        S = max(1, request.k)
        want = len(candidates) if n is None else min(n, len(candidates))
        samples = self._sample_scores(request.user, candidates, S)
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
        """Laplace step on the page's slate-choice likelihood (the user's first pick, or none)."""
        items = np.asarray(feedback.slate.items, dtype=np.int64)
        k = len(items)
        if k == 0:
            return
        clicked = np.asarray(feedback.clicked, dtype=np.int64)
        chosen = int(clicked[0]) if len(clicked) else -1
        groups = np.unique(self.group[items])
        row = self._user_row(feedback.user, create=True)
        # the page's parameters, in one vector: [b, mu[groups], delta[items], beta[row]]
        G = self.G if row is not None else 0
        ng = len(groups)
        d = 1 + ng + k + G
        X = np.zeros((k, d))
        X[:, 0] = 1.0
        X[np.arange(k), 1 + np.searchsorted(groups, self.group[items])] = 1.0
        X[np.arange(k), 1 + ng + np.arange(k)] = 1.0
        m = np.concatenate(([self.m_b], self.m_mu[groups], self.m_delta[items]))
        q = np.concatenate(([self.q_b], self.q_mu[groups], self.q_delta[items]))
        if row is not None:
            X[:, 1 + ng + k:] = self.W[items]
            m = np.concatenate((m, self.m_beta[row]))
            q = np.concatenate((q, self.q_beta[row]))
        y = np.zeros(k)
        if chosen >= 0:
            y[chosen] = 1.0
        w = m.copy()
        for _ in range(self.params.newton_steps):
            p = _pick_probabilities(X @ w)
            grad = q * (w - m) - X.T @ (y - p)
            xp = X.T @ p
            H = np.diag(q) + (X.T * p) @ X - np.outer(xp, xp)
            w = w - np.linalg.solve(H, grad)
        p = _pick_probabilities(X @ w)
        xp = X.T @ p
        q_new = q + ((X * X).T @ p - xp * xp)
        self.m_b, self.q_b = float(w[0]), float(q_new[0])
        self.m_mu[groups], self.q_mu[groups] = w[1:1 + ng], q_new[1:1 + ng]
        self.m_delta[items], self.q_delta[items] = w[1 + ng:1 + ng + k], q_new[1 + ng:1 + ng + k]
        if row is not None:
            self.m_beta[row], self.q_beta[row] = w[1 + ng + k:], q_new[1 + ng + k:]


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
