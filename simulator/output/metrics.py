"""Run metrics and time series, computed from the event log (the same table users analyse)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recworld.simulator.data.catalog import Catalog


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = equal, -> 1 = concentrated)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / total).sum()) / n)


def lorenz(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(np.asarray(x, dtype=np.float64))
    cum = np.concatenate(([0.0], np.cumsum(x)))
    share = cum / cum[-1] if cum[-1] > 0 else cum
    return np.linspace(0, 1, len(cum)), share


def entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    if p.size == 0:
        return 0.0
    p = p / p.sum()
    return float(-(p * np.log2(p)).sum())


def impressions(events: pd.DataFrame) -> pd.DataFrame:
    """One row per item shown in a slate: time, user_id, slate_id, page, position, item_id.

    Built with numpy from the slates' item arrays (one concatenation and one gather of the
    slates' rows), not with ``DataFrame.explode``, which makes a Python object per
    impression: a run's impressions are about ten times its slates."""
    cols = ["time", "user_id", "slate_id", "page"]
    sl = events.loc[events["kind"] == "slate", [*cols, "items"]]
    if sl.empty or sl["items"].isna().any():
        return _impressions_explode(sl)              # no slates, or a slate without items: the general path
    lists = sl["items"].tolist()
    try:
        lens = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        items = np.concatenate(lists).astype(np.int64, copy=False) if lens.sum() else np.empty(0, np.int64)
    except (TypeError, ValueError):
        return _impressions_explode(sl)
    ids = sl["slate_id"]
    if ids.isna().any() or not ids.is_unique:       # positions count within slate_id: the general path
        return _impressions_explode(sl)
    out = sl[cols].take(np.repeat(np.arange(len(sl)), lens)).reset_index(drop=True)
    out["item_id"] = items
    starts = np.repeat(np.cumsum(lens) - lens, lens)
    out["position"] = np.arange(len(items), dtype=np.int64) - starts
    return out


def _impressions_explode(sl: pd.DataFrame) -> pd.DataFrame:
    if sl.empty:
        return pd.DataFrame(columns=["time", "user_id", "slate_id", "page", "item_id", "position"])
    ex = sl.explode("items").dropna(subset=["items"]).rename(columns={"items": "item_id"})
    ex["item_id"] = ex["item_id"].astype("int64")
    ex["position"] = ex.groupby("slate_id").cumcount()
    return ex.reset_index(drop=True)


def _genre_entropy_per_user(watches: pd.DataFrame, catalog: Catalog) -> pd.Series:
    if watches.empty:
        return pd.Series(dtype=float)
    idx = catalog.indices_of(watches["item_id"].to_numpy())
    g = catalog.genre_dist[idx]
    df = pd.DataFrame(g, index=watches["user_id"].to_numpy())
    return df.groupby(level=0).sum().apply(lambda r: entropy_bits(r.to_numpy()), axis=1)


def compute_metrics(events: pd.DataFrame, catalog: Catalog, n_users: int, duration_minutes: float,
                    imp: pd.DataFrame | None = None) -> dict:
    """The run's summary numbers; ``imp``: ``impressions(events)`` if the caller has it already."""
    kind = events["kind"]
    if imp is None:
        imp = impressions(events)
    watches = events[kind == "watch"]
    slate_watches = watches[watches["slate_id"].notna()]
    rates = events.loc[kind == "rate", "value"]
    posts = events[kind == "post"]
    reads = events[kind == "read_post"]
    n_imp = len(imp)
    n_slates = int((kind == "slate").sum())
    shown_counts = np.bincount(catalog.indices_of(imp["item_id"].to_numpy()), minlength=len(catalog)) if n_imp else np.zeros(len(catalog))
    watched_items = watches["item_id"].dropna().astype("int64").unique()
    per_user_entropy = _genre_entropy_per_user(watches[["user_id", "item_id"]].astype("int64"), catalog)
    reach = (reads.groupby("root_id")["user_id"].nunique() if len(reads) else pd.Series(dtype=float))
    original = posts[posts["value"] == 0]
    reach = reach.reindex(original["post_id"].astype("int64").unique(), fill_value=0)
    sessions = int((kind == "session_start").sum())
    slates = events[kind == "slate"]
    regret = {}
    if "p_oracle" in events and slates["p_oracle"].notna().any():
        r = (slates["p_oracle"] - slates["p_click"]).dropna()
        regret = {"regret_total": float(r.sum()), "regret_per_slate": float(r.mean()),
                  "p_click_mean": float(slates["p_click"].mean()), "p_oracle_mean": float(slates["p_oracle"].mean())}
    return regret | {
        "users": int(n_users),
        "active_users": int(events.loc[kind == "session_start", "user_id"].nunique()),
        "simulated_minutes": float(duration_minutes),
        "events": int(len(events)),
        "sessions": sessions,
        "slates_shown": n_slates,
        "impressions": int(n_imp),
        "ctr": float(len(slate_watches) / n_imp) if n_imp else 0.0,
        "slate_ctr": float(slate_watches["slate_id"].nunique() / n_slates) if n_slates else 0.0,
        "watches": int(len(watches)),
        "watch_minutes": float(watches["value"].sum()),
        "mean_rating": float(rates.mean()) if len(rates) else None,
        "searches": int((kind == "search").sum()),
        "catalog_coverage": float((shown_counts > 0).mean()),
        "watched_coverage": float(len(watched_items) / len(catalog)),
        "exposure_gini": gini(shown_counts),
        "genre_entropy_per_user": float(per_user_entropy.mean()) if len(per_user_entropy) else 0.0,
        "chats": int((kind == "chat").sum()),
        "heard_of": int((kind == "heard").sum()),
        "posts": int(len(original)),
        "reposts": int((posts["value"] > 0).sum()),
        "post_reads": int(len(reads)),
        "post_reach_mean": float(reach.mean()) if len(reach) else 0.0,
        "post_reach_max": int(reach.max()) if len(reach) else 0,
    }


def _entropy_by_bin(watches: pd.DataFrame, catalog: Catalog, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over users of the genre entropy (bits) of what they watched in each bin, and of
    everything they watched up to the end of each bin."""
    ent, cum = np.full(n_bins, np.nan), np.full(n_bins, np.nan)
    if watches.empty:
        return ent, cum
    users, uidx = np.unique(watches["user_id"].to_numpy(np.int64), return_inverse=True)
    g = catalog.genre_dist[catalog.indices_of(watches["item_id"].to_numpy())].astype(np.float64)
    mass = np.zeros((len(users), n_bins, g.shape[1]))
    np.add.at(mass, (uidx, watches["bin"].to_numpy(np.int64)), g)

    def mean_entropy(m):
        tot = m.sum(axis=-1)                                   # (users, bins)
        p = np.divide(m, tot[..., None], out=np.zeros_like(m), where=tot[..., None] > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=-1)
        h[tot == 0] = np.nan
        with np.errstate(invalid="ignore"):
            return np.array([np.nanmean(col) if np.isfinite(col).any() else np.nan for col in h.T])

    return mean_entropy(mass), mean_entropy(np.cumsum(mass, axis=1))


def choose_bin(duration_minutes: float) -> float:
    """A bin width (minutes) giving at most 36 bins: hours for a day, days for a month."""
    for b in (15, 60, 180, 360, 720, 1440, 7 * 1440):
        if duration_minutes / b <= 36:
            return float(b)
    return 30.0 * 1440


def time_series(events: pd.DataFrame, catalog: Catalog, duration_minutes: float,
                bin_minutes: float | None = None, imp: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per time bin: sessions, slates, impressions, watches, CTR, mean rating, genre entropy, chats, posts.
    ``imp``: ``impressions(events)`` if the caller has it already."""
    b = bin_minutes or choose_bin(duration_minutes)
    edges = np.arange(0, duration_minutes + b, b)
    n = len(edges) - 1
    bins = pd.Index(np.arange(n), name="bin")
    ev = events.assign(bin=np.minimum((events["time"] // b).astype("int64"), n - 1))
    count = lambda k: ev[ev["kind"] == k].groupby("bin").size().reindex(bins, fill_value=0)  # noqa: E731
    if imp is None:
        imp = impressions(events)
    imp_bins = np.minimum((imp["time"] // b).astype("int64"), n - 1) if len(imp) else pd.Series(dtype="int64")
    n_imp = pd.Series(1, index=imp_bins).groupby(level=0).size().reindex(bins, fill_value=0) if len(imp) else pd.Series(0, index=bins)
    # a slate's watches count in its slate's bin (a user may watch its items one after another
    # into the next bin): each bin's CTR is of the items shown in it, at most 1
    sw = ev[(ev["kind"] == "watch") & ev["slate_id"].notna()]
    slate_bin = ev.loc[ev["kind"] == "slate", ["slate_id", "bin"]].drop_duplicates("slate_id").set_index("slate_id")["bin"]
    w_bin = sw["slate_id"].map(slate_bin).fillna(sw["bin"]).astype("int64")
    w = w_bin.groupby(w_bin).size().reindex(bins, fill_value=0) if len(sw) else pd.Series(0, index=bins)
    ratings = ev[ev["kind"] == "rate"].groupby("bin")["value"].mean().reindex(bins)
    ent, cum = _entropy_by_bin(ev[ev["kind"] == "watch"], catalog, n)
    sl = ev[ev["kind"] == "slate"]
    regret = (sl["p_oracle"] - sl["p_click"]).groupby(sl["bin"]).sum().reindex(bins, fill_value=0.0) \
        if "p_oracle" in ev and sl["p_oracle"].notna().any() else pd.Series(np.nan, index=bins)
    ts = pd.DataFrame({
        "start_minute": edges[:-1],
        "sessions": count("session_start"),
        "slates": count("slate"),
        "impressions": n_imp,
        "watches": count("watch"),
        "ctr": (w / n_imp.replace(0, np.nan)),
        "mean_rating": ratings,
        "genre_entropy": ent,
        "genre_entropy_cumulative": cum,
        "chats": count("chat"),
        "posts": count("post"),
        "regret": regret,
        "regret_cumulative": regret.cumsum(),
    }, index=bins)
    ts.attrs["bin_minutes"] = b
    return ts
