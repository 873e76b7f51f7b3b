"""Personalised recommenders: ``mf`` (implicit ALS), ``itemknn`` and ``content`` (TF-IDF).

All three keep each user's consumed items, keyed by public user id: the warm-start
interactions from ``fit`` plus what users watch in the world (``update``).  ``mf`` and
``itemknn`` refit their model on that history every ``refit_minutes`` of simulated time
(0 = never); ``content`` updates a user's profile at once.  A user the model has never
seen gets the items most consumed overall.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from recworld.simulator.protocols import Feedback, SlateRequest

from .base import BaseRecommender, Params


class PersonalRecommender(BaseRecommender):
    """Base: per-user histories, popularity fallback, refits on simulated time."""

    class Params(Params):
        refit_minutes: float = Field(1440.0, ge=0, le=525_600, description="refit interval; 0 = never refit")

    def fit(self, interactions, catalog) -> None:
        super().fit(interactions, catalog)
        self.histories: dict[int, list[int]] = {}
        if interactions is not None and len(interactions):
            for uid, items in interactions.groupby("user_id", sort=True)["item"]:
                self.histories[int(uid)] = items.astype(int).tolist()
        self._new_since_fit = 0
        self._fitted_at = 0.0
        self.refit()

    def history(self, request: SlateRequest) -> list[int]:
        return self.histories.get(int(request.user_id), []) if request.user_id is not None else []

    def counts(self) -> np.ndarray:
        c = np.zeros(len(self.catalog))
        for items in self.histories.values():
            np.add.at(c, items, 1.0)
        return c

    def refit(self) -> None:
        """(Re)build the model from ``self.histories``."""
        self.popular = self.counts()

    def user_scores(self, request: SlateRequest) -> np.ndarray | None:
        """Scores over the whole catalog for this user, or None if the model does not know them."""
        raise NotImplementedError

    def item_scores(self, request: SlateRequest, candidates: np.ndarray) -> np.ndarray:
        p = self.params
        if p.refit_minutes and self._new_since_fit and request.time - self._fitted_at >= p.refit_minutes:
            self.refit()
            self._fitted_at, self._new_since_fit = request.time, 0
        s = self.user_scores(request)
        if s is None:
            s = self.popular
        return s[candidates]

    def update(self, feedback: Feedback) -> None:
        if feedback.user_id is None or len(feedback.clicked) == 0:
            return
        items = np.asarray(feedback.slate.items)[np.asarray(feedback.clicked, dtype=np.int64)]
        self.histories.setdefault(int(feedback.user_id), []).extend(int(i) for i in items)
        self._new_since_fit += len(items)


def _user_item_matrix(histories: dict[int, list[int]], n_items: int):
    from scipy import sparse

    users = sorted(histories)
    rows = np.concatenate([np.full(len(histories[u]), k) for k, u in enumerate(users)]) if users else np.empty(0)
    cols = np.concatenate([histories[u] for u in users]) if users else np.empty(0)
    m = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows.astype(np.int64), cols.astype(np.int64))),
                          shape=(len(users), n_items))
    m.data[:] = 1.0                        # repeated consumption counts once
    return users, m


class MatrixFactorization(PersonalRecommender):
    """Implicit-feedback ALS (the ``implicit`` library) on who consumed what."""

    name: ClassVar[str] = "mf"

    class Params(PersonalRecommender.Params):
        factors: int = Field(64, ge=1, le=1024)
        regularization: float = Field(0.05, ge=0, le=100)
        iterations: int = Field(15, ge=1, le=500)
        alpha: float = Field(10.0, gt=0, le=1e4, description="confidence weight of an observed interaction")

    def refit(self) -> None:
        super().refit()
        self.model = None
        users, m = _user_item_matrix(self.histories, len(self.catalog))
        if m.nnz == 0:
            return
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        p = self.params
        with threadpool_limits(1, "blas"):     # implicit asks for single-threaded BLAS (it checks on creation)
            als = AlternatingLeastSquares(factors=p.factors, regularization=p.regularization, iterations=p.iterations,
                                          alpha=p.alpha, random_state=int(self.rng.integers(2**31 - 1)), num_threads=1)
            als.fit(m, show_progress=False)
        self.model = als
        self._row = {u: k for k, u in enumerate(users)}

    def user_scores(self, request):
        if self.model is None or request.user_id is None or int(request.user_id) not in self._row:
            return None
        k = self._row[int(request.user_id)]
        return self.model.item_factors @ self.model.user_factors[k]


class ItemKNN(PersonalRecommender):
    """Item-based neighbours: cosine similarity of who consumed the items, top-``neighbors`` kept
    per item; a user's score for an item sums its similarity to the user's items."""

    name: ClassVar[str] = "itemknn"

    class Params(PersonalRecommender.Params):
        neighbors: int = Field(50, ge=1, le=10_000)
        history: int = Field(200, ge=1, le=100_000, description="most recent items of a user used to score")

    def refit(self) -> None:
        super().refit()
        from scipy import sparse

        _, m = _user_item_matrix(self.histories, len(self.catalog))
        n = m.shape[1]
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=0)).ravel())
        xn = (m @ sparse.diags(1.0 / np.maximum(norms, 1e-12))).tocsc()
        k = min(self.params.neighbors, max(n - 1, 1))
        rows, cols, vals = [], [], []
        for lo in range(0, n, 1024):                       # top-k neighbours, a block of items at a time
            hi = min(n, lo + 1024)
            block = (xn[:, lo:hi].T @ xn).toarray()
            block[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
            top = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (hi - lo, 1))
            v = np.take_along_axis(block, top, axis=1)
            keep = v > 0
            rows.append(np.repeat(np.arange(lo, hi), k)[keep.ravel()])
            cols.append(top.ravel()[keep.ravel()])
            vals.append(v.ravel()[keep.ravel()])
        self.sim = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))

    def user_scores(self, request):
        hist = self.history(request)[-self.params.history:]
        if not hist:
            return None
        return np.asarray(self.sim[hist].sum(axis=0)).ravel()


class ContentBased(PersonalRecommender):
    """TF-IDF over item text (scikit-learn); a user's profile is the mean vector of what they
    consumed, and items are scored by cosine similarity to it."""

    name: ClassVar[str] = "content"

    class Params(PersonalRecommender.Params):
        history: int = Field(100, ge=1, le=100_000, description="most recent items in the profile")
        max_features: int = Field(20_000, ge=10, le=1_000_000)

    def fit(self, interactions, catalog) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(stop_words="english", sublinear_tf=True, max_features=self.params.max_features)
        self.tfidf = vec.fit_transform(catalog.items["text"].astype(str)).tocsr()     # rows L2-normalised
        self._profiles: dict[int, tuple[int, np.ndarray]] = {}
        super().fit(interactions, catalog)

    def user_scores(self, request):
        hist = self.history(request)
        if not hist:
            return None
        uid = int(request.user_id)
        cached = self._profiles.get(uid)
        if cached is None or cached[0] != len(hist):
            prof = np.asarray(self.tfidf[hist[-self.params.history:]].mean(axis=0)).ravel()
            prof /= max(np.linalg.norm(prof), 1e-12)
            self._profiles[uid] = cached = (len(hist), prof)
        return self.tfidf @ cached[1]
