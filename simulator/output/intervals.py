"""Intervals over seeds: the t interval of a mean, and per-time-bin bands over seeds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

LEVEL = 0.95


def interval(values, level: float = LEVEL) -> dict:
    """``n``, ``mean``, ``std`` and the t interval (``low``, ``high``) of the mean of ``values``."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not pd.isna(v)], dtype=np.float64)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "low": math.nan, "high": math.nan}
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": math.nan, "low": math.nan, "high": math.nan}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def band(frames: list[pd.DataFrame], column: str, key: str = "start_minute", level: float = LEVEL) -> pd.DataFrame:
    """Per ``key`` (time bin) over the frames (seeds): ``n``, ``mean``, ``low``, ``high`` of
    ``column`` (no interval where one seed has the bin)."""
    from scipy import stats

    parts = [f[[key, column]] for f in frames if f is not None and column in f.columns and f[column].notna().any()]
    if not parts:
        return pd.DataFrame(columns=[key, "n", "mean", "low", "high"])
    g = pd.concat(parts, ignore_index=True).groupby(key)[column]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
    n = out["n"].to_numpy(dtype=float)
    tq = np.where(n > 1, stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)), np.nan)
    half = tq * out["std"].to_numpy(dtype=float) / np.sqrt(np.maximum(n, 1))
    out["low"], out["high"] = out["mean"] - half, out["mean"] + half
    return out[[key, "n", "mean", "low", "high"]]
