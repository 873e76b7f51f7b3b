"""Holdout splits: each user's later ratings kept out of the world, for evaluation.

A split divides a ratings table into the *history*, the only part a world may use (users'
profiles and ``seen`` sets, catalog popularity and quality, the recommender's warm start,
every fitted weight), and the *held-out* part, kept for evaluation (``recworld fidelity``)
and never passed to a built world.

Two ways to split:

- ``by: fraction`` (the default, as in Agent4Rec): each user's ratings sorted by time (ties
  by item id); the first ``1 - fraction`` of them are history, the rest is held out.
- ``by: time``: every rating at or after ``cutoff`` (Unix seconds, or a ``YYYY-MM-DD`` UTC
  date) is held out; without a cutoff, the time that holds out ``fraction`` of all ratings.

Tags (``tags.csv`` rows with ``userId`` and ``timestamp``) made at or after a user's cut
time are dropped too (``filter_tags``): a tag is a trace of an interaction, so a tag from the
held-out period would tell the world about it.

The split is deterministic: it needs no random numbers, so a scenario and ``recworld
fidelity`` given the same settings cut the same ratings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

BY = ("fraction", "time")


@dataclass(frozen=True)
class Holdout:
    """How to split ratings (see the module's text).  ``min_history``: a ``by: fraction``
    split keeps at least this many ratings of each user in the history."""
    by: str = "fraction"
    fraction: float = 0.2
    cutoff: int | str | None = None
    min_history: int = 1

    def __post_init__(self):
        if self.by not in BY:
            raise ValueError(f"holdout.by must be one of {', '.join(BY)} (got {self.by!r})")
        if not 0 < float(self.fraction) < 1:
            raise ValueError(f"holdout.fraction must be between 0 and 1, exclusive (got {self.fraction!r})")
        if int(self.min_history) < 1:
            raise ValueError(f"holdout.min_history must be at least 1 (got {self.min_history!r})")
        if self.cutoff is not None:
            cutoff_seconds(self.cutoff)          # raises on a bad value

    @classmethod
    def of(cls, spec: Any) -> "Holdout | None":
        """A ``Holdout`` from None, a ``Holdout``, a dict, or any object with the same
        attributes (the scenario's ``data.holdout`` section)."""
        if spec is None or isinstance(spec, Holdout):
            return spec
        if isinstance(spec, dict):
            return cls(**spec)
        return cls(**{k: getattr(spec, k) for k in ("by", "fraction", "cutoff", "min_history") if hasattr(spec, k)})

    def describe(self) -> str:
        if self.by == "fraction":
            return (f"each user's last {self.fraction:.0%} of ratings by time held out "
                    f"(at least {self.min_history} kept)")
        if self.cutoff is not None:
            return f"ratings at or after {self.cutoff} held out"
        return f"the latest {self.fraction:.0%} of all ratings held out (a global time cutoff)"


def cutoff_seconds(cutoff: int | float | str) -> int:
    """A cutoff as Unix seconds: a number, a string of digits, or a ``YYYY-MM-DD`` (UTC) date
    (also ``YYYY-MM-DDTHH:MM:SS``)."""
    if isinstance(cutoff, (date, datetime)):
        cutoff = cutoff.isoformat()
    if isinstance(cutoff, bool):
        raise ValueError(f"holdout.cutoff must be Unix seconds or a date YYYY-MM-DD (got {cutoff!r})")
    if isinstance(cutoff, (int, np.integer)):
        return int(cutoff)
    if isinstance(cutoff, float):
        if not math.isfinite(cutoff):
            raise ValueError(f"holdout.cutoff must be a finite number (got {cutoff!r})")
        return int(cutoff)
    text = str(cutoff).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"holdout.cutoff {text!r} is neither Unix seconds nor a date YYYY-MM-DD") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def _columns(ratings: pd.DataFrame) -> tuple[str, str]:
    """(user column, item column) of a MovieLens ratings table or an interactions table."""
    if {"user_id", "item_id"} <= set(ratings.columns):
        return "user_id", "item_id"
    if {"userId", "movieId"} <= set(ratings.columns):
        return "userId", "movieId"
    raise ValueError("a ratings table needs the columns userId, movieId (or user_id, item_id) and timestamp "
                     f"(it has {', '.join(map(str, ratings.columns[:8]))})")


@dataclass
class Split:
    """A ratings table cut in two.  ``cut_time``: per user id, the time from which that user's
    ratings are held out (a user with nothing held out has none)."""
    history: pd.DataFrame
    heldout: pd.DataFrame
    holdout: Holdout
    cut_time: pd.Series
    cutoff: int | None = None          # ``by: time``: the global cutoff (Unix seconds)

    def __repr__(self) -> str:
        return f"Split({len(self.history)} history, {len(self.heldout)} held-out ratings; {self.holdout.describe()})"


def time_cutoff(ratings: pd.DataFrame, holdout: Holdout) -> int | None:
    """The global cutoff of a ``by: time`` split (None for ``by: fraction`` or no ratings)."""
    if holdout.by != "time":
        return None
    if holdout.cutoff is not None:
        return cutoff_seconds(holdout.cutoff)
    n = len(ratings)
    if n == 0:
        return None
    srt = np.sort(ratings["timestamp"].to_numpy(np.int64), kind="stable")
    return int(srt[min(n - 1, int(math.floor(n * (1 - holdout.fraction) + 1e-9)))])


def held_out_mask(ratings: pd.DataFrame, holdout: Holdout) -> np.ndarray:
    """Boolean per row of ``ratings``: True if the split holds it out."""
    ucol, icol = _columns(ratings)
    if "timestamp" not in ratings.columns:
        raise ValueError("a holdout split needs the ratings' timestamp column")
    n = len(ratings)
    if n == 0:
        return np.zeros(0, dtype=bool)
    ts = ratings["timestamp"].to_numpy(np.int64)
    if holdout.by == "time":
        return ts >= time_cutoff(ratings, holdout)
    users = ratings[ucol].to_numpy(np.int64)
    items = ratings[icol].to_numpy(np.int64)
    order = np.lexsort((items, ts, users))                    # by user, then time, then item id
    u_sorted = users[order]
    starts = np.flatnonzero(np.r_[True, u_sorted[1:] != u_sorted[:-1]])
    counts = np.diff(np.r_[starts, n])
    keep = np.floor(counts * (1 - holdout.fraction) + 1e-9).astype(np.int64)
    keep = np.minimum(counts, np.maximum(keep, holdout.min_history))
    rank = np.arange(n) - np.repeat(starts, counts)           # position within the user's sorted ratings
    mask = np.empty(n, dtype=bool)
    mask[order] = rank >= np.repeat(keep, counts)
    return mask


def split_ratings(ratings: pd.DataFrame, holdout: Holdout | dict | Any) -> Split:
    """``ratings`` (MovieLens columns or an interactions table) cut into history and held-out
    parts; both keep the input's columns and row order."""
    h = Holdout.of(holdout)
    if h is None:
        raise ValueError("split_ratings needs a holdout")
    ucol, _ = _columns(ratings)
    mask = held_out_mask(ratings, h)
    history, heldout = ratings[~mask], ratings[mask]
    cut_time = heldout.groupby(ucol)["timestamp"].min() if len(heldout) else pd.Series(dtype="int64")
    return Split(history.reset_index(drop=True), heldout.reset_index(drop=True), h, cut_time,
                 time_cutoff(ratings, h))


def filter_tags(tags: pd.DataFrame | None, split: Split) -> pd.DataFrame | None:
    """``tags`` without those made at or after the cut: a user's cut time (needs the tags'
    ``userId`` and ``timestamp`` columns) or a ``by: time`` split's cutoff (needs
    ``timestamp``).  Tags without those columns are returned as they are."""
    if tags is None or "timestamp" not in tags.columns:
        return tags
    ts = pd.to_numeric(tags["timestamp"], errors="coerce")
    drop = np.zeros(len(tags), dtype=bool)
    if split.cutoff is not None:
        drop |= (ts.notna() & (ts >= split.cutoff)).to_numpy()
    if not split.cut_time.empty and "userId" in tags.columns:
        cut = pd.to_numeric(tags["userId"], errors="coerce").map(split.cut_time)
        drop |= (cut.notna() & ts.notna() & (ts >= cut)).to_numpy()
    return tags[~drop].reset_index(drop=True) if drop.any() else tags
