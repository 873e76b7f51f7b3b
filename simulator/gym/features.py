"""What a recommender (or an RL policy) may observe: fixed-shape float32 features.

Candidates are indexed by position, never by item id.  Every feature is clipped to
[-1, 1], the bounds of the observation space.
"""

from __future__ import annotations

import numpy as np

from recworld.simulator.data.catalog import Catalog
from recworld.simulator.data.population import Population
from recworld.simulator.protocols import UserState


class Featurizer:
    def __init__(self, catalog: Catalog, population: Population, n_candidates: int, history: int):
        self.catalog, self.population = catalog, population
        self.C, self.H = n_candidates, history
        self.G = len(catalog.genre_names)
        self.user_dim = self.G + 5
        self.item_dim = self.G + 4
        self.gdist = catalog.genre_dist.astype(np.float32)
        self.pop = catalog.popularity.astype(np.float32)
        self.quality = np.clip(catalog.quality / 2.0, -1, 1).astype(np.float32)
        prof = population.profiles
        self.taste = np.clip(population.taste / 3.0, -1, 1).astype(np.float32)
        self.traits = np.column_stack([
            prof["conformity"], prof["diversity"], prof["rating_mean"] / 5.0,
            np.log1p(prof["activity"]) / np.log1p(prof["activity"].max() + 1e-9),
        ]).clip(-1, 1).astype(np.float32)
        self.user_static = np.column_stack([self.taste, self.traits]).astype(np.float32)
        # per item: genres, popularity, quality (the columns that do not depend on the user)
        self.item_static = np.column_stack([self.gdist, self.pop, self.quality]).astype(np.float32)

    def space(self):
        from gymnasium import spaces

        box = lambda *shape: spaces.Box(-1.0, 1.0, shape=shape, dtype=np.float32)  # noqa: E731
        return spaces.Dict({"user": box(self.user_dim), "candidates": box(self.C, self.item_dim),
                            "history": box(max(self.H, 1), self.G)})

    def observe(self, state: UserState, candidates: np.ndarray) -> dict[str, np.ndarray]:
        u, G = state.index, self.G
        user = np.empty(self.user_dim, dtype=np.float32)
        user[:-1] = self.user_static[u]
        user[-1] = min(state.pages_seen / 10.0, 1.0)
        cand = np.empty((len(candidates), self.item_dim), dtype=np.float32)
        cand[:, : G + 2] = self.item_static[candidates]
        # taste in [-1, 1] and genre rows summing to 1 keep the affinity in [-1, 1]
        cand[:, G + 2] = cand[:, :G] @ self.user_static[u, :G]
        if state.heard_of:
            cand[:, G + 3] = [i in state.heard_of for i in candidates.tolist()]
        else:
            cand[:, G + 3] = 0.0
        return {"user": user, "candidates": cand, "history": self.history(state)}

    def history(self, state: UserState) -> np.ndarray:
        """Genres of the last H watched items (this run first, then the user's prior history)."""
        key = (state.index, len(state.watched))
        cached = state.extra.get("_history_obs")
        if cached is not None and cached[0] == key:
            return cached[1].copy()
        hist = np.zeros((max(self.H, 1), self.G), dtype=np.float32)
        if self.H:
            recent = [i for i, _ in state.watched[-self.H:]]
            if len(recent) < self.H:
                before = self.population.history[state.index]
                if len(before):
                    recent = before[max(0, len(before) - (self.H - len(recent))):].tolist() + recent
            if recent:
                hist[-len(recent):] = self.gdist[recent]
        state.extra["_history_obs"] = (key, hist)
        return hist.copy()


def sample_candidates(rng: np.random.Generator, n_items: int, seen: set, k: int,
                      first: np.ndarray | None = None) -> np.ndarray:
    """``k`` distinct unseen items: ``first`` (e.g. search matches) in order, then uniform random ones."""
    if first is None:                     # fast path: k draws that collide with nothing (the usual case)
        draw = rng.integers(0, n_items, size=k)
        items = draw.tolist()
        if len(set(items)) == k and (not seen or not any(i in seen for i in items)):
            return draw
    out: list[int] = []
    taken: set[int] = set()
    if first is not None:
        for i in first.tolist():
            if i not in seen and i not in taken:
                out.append(i)
                taken.add(i)
                if len(out) == k:
                    return np.asarray(out, dtype=np.int64)
    if n_items - len(seen) - len(taken) < k - len(out):
        raise ValueError(f"the catalog has too few unseen items ({n_items - len(seen)}) for {k} candidates")
    while len(out) < k:
        for i in rng.integers(0, n_items, size=2 * (k - len(out)) + 4).tolist():
            if i not in seen and i not in taken:
                out.append(i)
                taken.add(i)
                if len(out) == k:
                    break
    return np.asarray(out, dtype=np.int64)


def slate_from_action(action, n_candidates: int) -> np.ndarray:
    """Candidate positions of a slate from a ``MultiDiscrete([C] * S)`` action.

    Duplicate rule: a position already on the slate is replaced by the lowest-numbered
    candidate not yet on it, so a slate always holds S distinct candidates.
    """
    action = np.asarray(action)
    pos = action.ravel().tolist()
    if len(set(pos)) == len(pos) and min(pos) >= 0 and max(pos) < n_candidates:
        return action.astype(np.int64, copy=False).ravel()
    used: set[int] = set()
    out = []
    spare = iter(range(n_candidates))
    for a in pos:
        if a in used or not 0 <= a < n_candidates:
            a = next(c for c in spare if c not in used)
        used.add(a)
        out.append(a)
    return np.asarray(out, dtype=np.int64)
