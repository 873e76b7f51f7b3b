"""Users of a world: profiles (traits), genre tastes and what they saw before the run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PROFILE_COLUMNS = (
    "user_id",          # public id written to the event log
    "activity",         # expected sessions per simulated day (heavy-tailed across users)
    "conformity",       # 0..1, weight on what is popular / how close ratings stay to the crowd
    "diversity",        # 0..1, normalised genre entropy of the user's taste
    "rating_mean",      # the user's mean rating (1-5 scale)
    "rating_std",       # spread of the user's ratings
    "n_history",        # items seen before the run
)


@dataclass
class Population:
    profiles: pd.DataFrame
    taste: np.ndarray                 # (n_users, n_genres) choice affinity per genre
    rating_affinity: np.ndarray       # (n_users, n_genres) rating deviation per genre
    history: list[np.ndarray]         # item indices seen before the run, per user
    calibration: dict = field(default_factory=dict)   # fitted choice/rating coefficients
    history_ratings: list[np.ndarray] | None = None   # ratings of ``history`` (NaN-free), if known

    def __post_init__(self):
        missing = [c for c in PROFILE_COLUMNS if c not in self.profiles.columns]
        if missing:
            raise ValueError(f"population profiles miss columns {missing}")
        n = len(self.profiles)
        if self.taste.shape[0] != n or self.rating_affinity.shape[0] != n or len(self.history) != n:
            raise ValueError("population arrays disagree on the number of users")
        self.ids = self.profiles["user_id"].to_numpy(dtype=np.int64)
        if self.history_ratings is None:
            self.history_ratings = [np.empty(0) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.profiles)

    def __repr__(self) -> str:
        return f"Population({len(self)} users)"


def heavy_tailed_activity(n: int, rng: np.random.Generator, median: float, tail_index: float,
                          maximum: float) -> np.ndarray:
    """Sessions per day drawn from a Pareto law with the given median and tail index."""
    xm = median / 2 ** (1.0 / tail_index)
    u = rng.random(n)
    return np.minimum(xm * (1.0 - u) ** (-1.0 / tail_index), maximum)


def normalised_entropy(p: np.ndarray) -> np.ndarray:
    """Row-wise Shannon entropy of distributions, divided by its maximum (0..1)."""
    p = np.asarray(p, dtype=np.float64)
    s = p.sum(axis=-1, keepdims=True)
    p = np.divide(p, s, out=np.zeros_like(p), where=s > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)
    k = p.shape[-1]
    return h / np.log(k) if k > 1 else np.zeros_like(h)
