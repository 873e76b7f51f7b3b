"""Fitting the parametric user to rating histories: the choice model on slates, a collaborative
signal, and a rating model that emits ratings on each user's own star grid.

Everything here is fitted on the interactions table it is given (a world passes the history
of its holdout split, so nothing held out is seen), by an *inner* split of each user's
history: the first ``1 - inner_fraction`` of their ratings by time build the user (tastes,
rating habits, collaborative factors, catalog statistics), the rest are the ratings the model
must explain.  The fitted numbers go to ``Population.calibration`` (scalars, keys
``slate_*`` and ``rating_*``) and ``Population.fitted`` (arrays, rebuilt from the whole
history for the users of the population).

**Choice (slate likelihood).**  MovieLens has no impressions, so slates are built the way
the fidelity protocol builds them: the user's next rated items mixed with ``m`` times as many
items they never rated (m = 1, 3, 9), shuffled, in pages of ``page_size``.  On each page the
user picks items one after another, each pick from a multinomial logit over the items left
and a no-click option, until the no-click option wins (the items they rated, in the order
they rated them); every further pick makes the no-click option ``exp(slate_after_pick)``
times more attractive.  Utility = ``slate_taste`` x genre taste + ``slate_popularity`` x
(0.5 + conformity) x popularity + ``slate_quality`` x quality + ``slate_cf`` x collaborative
score - ``position_decay`` x log(1 + slot); the no-click utility is ``slate_no_click``.  The
weights, the no-click utility and the after-pick step are fitted together by maximum
likelihood (L-BFGS; the ``slate_mle_*`` keys).  The collaborative score is the dot product of
user and item factors of an implicit-feedback ALS (the ``implicit`` library) on who rated what.

**Sharpness.**  A chooser that draws from the likelihood's probabilities agrees with what a user
actually picks less often than one that picks the items it rates highest: the likelihood
spreads its doubt about the user over the choice itself.  So the weights are multiplied by a
sharpness factor (``slate_sharpness``; no-click, after-pick and fatigue fitted again by
likelihood for each factor), and the least sharp factor whose simulated picks on the slates
agree with the users' (F1, averaged over the ratios) within 0.005 of the best is kept: the
``slate_*`` weights are the sharpened ones, ``slate_agreement_*`` the agreement of each factor.

**Fatigue and exit.**  Fatigue (no-click utility added per page already seen in a session,
``slate_fatigue``) is fitted by the same likelihood, each user's pages of one ratio forming a
session; as these slates carry no order effect, the data puts it near zero.  ``slate_continue``
is the logit of staying for another page: a rating session (ratings at most 30 minutes apart)
of n ratings at the slates' picks per page lasts about n / picks pages.

**Ratings.**  A user's rating distribution over the half-star grid (their history, recent
ratings weighing more: half-life ``rating_half_life`` ratings; half stars only for users who
ever gave one) is tilted by the item's predicted deviation: P(r) ~ h_u(r) x exp(r x dev),
dev = ``rating_tilt_item_bias`` x the item's user-centred mean residual + ``rating_tilt_affinity``
x the user's genre affinity + ``rating_tilt_cf`` x the collaborative score, fitted by maximum
likelihood.  A rating is then drawn so that the ratings the model emits have the history's
distribution and stay close to what the user would give: each star level s costs the
expected distance E|r - s| under P, minus a price per level (``rating_prices``, fitted by
Sinkhorn iterations so that the emitted histogram matches the later ratings of the inner
split), and a level is drawn with probability ~ exp(-(cost - price) / ``rating_temperature``);
the temperature is the one whose emitted ratings are closest to the real ones (MAE) while their
histogram stays within 0.05 total-variation distance of the real one (``rating_mae_*`` and
``rating_tv_*`` for each candidate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recworld.simulator.data.catalog import Catalog, popularity_quality

#: the half-star grid ratings live on
LEVELS = np.arange(1, 11) / 2.0
#: |a - b| between grid levels (the expected distance of a level is P @ DISTANCE)
DISTANCE = np.abs(LEVELS[:, None] - LEVELS[None, :])
HALF = np.arange(0, 10, 2)          # indices of 0.5, 1.5, ..., 4.5 on the grid

#: the choice model's features, in the order of the fitted weights
CHOICE_FEATURES = ("taste", "popularity", "quality", "cf")
RATING_FEATURES = ("item_bias", "affinity", "cf")


@dataclass(frozen=True)
class FitSettings:
    inner_fraction: float = 0.2       # share of each user's history the fit predicts
    page_size: int = 10
    ratios: tuple[int, ...] = (1, 3, 9)
    position_decay: float = 0.3       # the brain's default slot penalty (not identifiable here)
    factors: int = 16                 # ALS factors of the collaborative signal
    als_regularization: float = 0.05
    als_alpha: float = 10.0
    als_iterations: int = 15
    max_fit_users: int = 3000         # users whose slates enter the fit (a random sample above)
    max_fit_targets: int = 5000       # rated items the choice fit predicts (users sampled up to it)
    item_bias_shrink: float = 5.0     # pseudo-ratings at 0 residual in an item's mean residual
    half_lives: tuple[float, ...] = (25.0, 50.0, 100.0, math.inf)   # candidates for rating_half_life
    temperatures: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.1)   # candidates for rating_temperature
    max_tv: float = 0.05              # the emitted histogram's largest distance from the real one in the fit
    seed: int = 0                     # the fit's random draws (negatives, ALS starts, the users sampled)
    session_gap_s: int = 1800         # ratings further apart start a new rating session


# ----------------------------------------------------------------------------- pieces


def inner_split(inter: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(inner history, inner targets) of an interactions table: each user's last ``fraction``
    of ratings by time (ties by item id) are targets; every user keeps at least one rating."""
    from recworld.simulator.data.holdout import Holdout, split_ratings

    s = split_ratings(inter, Holdout("fraction", fraction, min_history=1))
    return s.history, s.heldout


def item_statistics(inter: pd.DataFrame, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(popularity, quality) of every item from ``inter``, as ``Catalog`` computes them."""
    n = np.bincount(inter["item"].to_numpy(np.int64), minlength=n_items).astype(np.float64)
    s = np.bincount(inter["item"].to_numpy(np.int64), inter["rating"].to_numpy(np.float64), n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return popularity_quality(n, mean)


def item_rating_bias(inter: pd.DataFrame, n_items: int, shrink: float) -> np.ndarray:
    """Each item's mean of (rating - the rater's mean rating), shrunk towards 0."""
    u = inter["user_id"].to_numpy(np.int64)
    r = inter["rating"].to_numpy(np.float64)
    _, inv = np.unique(u, return_inverse=True)
    mu = np.bincount(inv, r) / np.bincount(inv)
    items = inter["item"].to_numpy(np.int64)
    return np.bincount(items, r - mu[inv], n_items) / (np.bincount(items, minlength=n_items) + shrink)


def collaborative_factors(inter: pd.DataFrame, n_items: int, users: np.ndarray, rng: np.random.Generator,
                          s: FitSettings) -> tuple[np.ndarray, np.ndarray]:
    """(user factors of ``users`` (ids; zeros for users without ratings), item factors) of an
    implicit-feedback ALS on who rated what in ``inter``."""
    from implicit.cpu.als import AlternatingLeastSquares
    from scipy import sparse
    from threadpoolctl import threadpool_limits

    ids, inv = np.unique(inter["user_id"].to_numpy(np.int64), return_inverse=True)
    m = sparse.csr_matrix((np.ones(len(inter), dtype=np.float32), (inv, inter["item"].to_numpy(np.int64))),
                          shape=(len(ids), n_items))
    m.data[:] = 1.0                              # a repeated rating counts once
    with threadpool_limits(1, "blas"):           # implicit wants single-threaded BLAS; one thread: reproducible
        als = AlternatingLeastSquares(factors=s.factors, regularization=s.als_regularization,
                                      iterations=s.als_iterations, alpha=s.als_alpha,
                                      random_state=int(rng.integers(2**31 - 1)), num_threads=1)
        als.fit(m, show_progress=False)
    uf = np.asarray(als.user_factors, dtype=np.float32)
    vf = np.asarray(als.item_factors, dtype=np.float32)
    pos = np.searchsorted(ids, users)
    found = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == users)
    out = np.zeros((len(users), uf.shape[1]), dtype=np.float32)
    out[found] = uf[pos[found]]
    return out, vf


def rating_levels(ratings: list[np.ndarray], half_life: float, eps: float = 0.5, off_grid: float = 0.01) -> np.ndarray:
    """Each user's rating distribution over the half-star grid (rows of 10 shares): their
    ratings (in time order), the recent ones weighing more (``half_life`` ratings), plus
    ``eps`` pseudo-ratings spread over the levels of the grid the user uses (whole stars, and
    half stars only for users who gave one; ``off_grid`` pseudo-ratings over half stars for the
    others, as a user may start giving them)."""
    out = np.zeros((len(ratings), len(LEVELS)))
    for k, r in enumerate(ratings):
        r = np.asarray(r, dtype=np.float64)
        if not len(r):
            out[k, 1::2] = 1.0
            out[k, 0::2] = off_grid
        else:
            lv = np.clip(np.rint(r * 2).astype(np.int64) - 1, 0, len(LEVELS) - 1)
            w = np.ones(len(r)) if not math.isfinite(half_life) else 0.5 ** (np.arange(len(r))[::-1] / half_life)
            out[k] = np.bincount(lv, w * (len(r) / w.sum()), len(LEVELS))
            out[k, 1::2] += eps / 5
            out[k, 0::2] += (eps if (lv % 2 == 0).any() else off_grid) / 5
    return out / out.sum(axis=1, keepdims=True)


def _logsumexp(z: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(z, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return (m + np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))).squeeze(axis)


def rating_distribution(levels: np.ndarray, dev: np.ndarray) -> np.ndarray:
    """P(rating level) per row: the user's distribution ``levels`` tilted by ``dev``."""
    with np.errstate(divide="ignore"):
        z = np.log(levels) + LEVELS[None, :] * np.asarray(dev, dtype=np.float64)[:, None]
    z -= _logsumexp(z)[:, None]
    return np.exp(z)


def emission_weights(P: np.ndarray, prices: np.ndarray, temperature: float, allowed: np.ndarray,
                     cost: np.ndarray | None = None) -> np.ndarray:
    """Probability of emitting each level: ~ exp(-(E|r - level| - price) / temperature), only on
    ``allowed`` levels (the user's grid).  ``cost``: ``P @ DISTANCE`` if already known."""
    c = P @ DISTANCE if cost is None else cost
    z = np.where(allowed, (np.asarray(prices)[None, :] - c) / temperature, -np.inf)
    z -= z.max(axis=1, keepdims=True)
    w = np.exp(z)
    return w / w.sum(axis=1, keepdims=True)


def emit_ratings(levels: np.ndarray, dev: np.ndarray, prices: np.ndarray, temperature: float,
                 allowed: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Ratings the fitted model emits, one per row: ``levels`` (rows of a user's distribution),
    ``dev`` the item's predicted deviation, ``allowed`` the user's grid, ``u`` uniform draws."""
    w = emission_weights(rating_distribution(levels, dev), prices, temperature, allowed)
    cdf = np.cumsum(w, axis=1)
    k = (cdf < (np.asarray(u, dtype=np.float64) * cdf[:, -1])[:, None]).sum(axis=1)
    return LEVELS[np.minimum(k, len(LEVELS) - 1)]


class RatingEmitter:
    """The fitted rating model for one rating at a time (the world's hot path): the same
    numbers as ``emit_ratings`` and ``expected_ratings`` with less numpy overhead per call."""

    def __init__(self, levels: np.ndarray, allowed: np.ndarray, prices: np.ndarray, temperature: float):
        with np.errstate(divide="ignore"):
            self.log_levels = np.log(levels)
        self.blocked = np.where(allowed, 0.0, -np.inf)       # -inf on levels off the user's grid
        self.prices = np.asarray(prices, dtype=np.float64)
        self.inv_t = 1.0 / temperature

    def distribution(self, u: int, dev: float) -> np.ndarray:
        z = self.log_levels[u] + LEVELS * dev
        z = np.exp(z - z.max())
        return z / z.sum()

    def expected(self, u: int, dev: float) -> float:
        return float(self.distribution(u, dev) @ LEVELS)

    def emit(self, u: int, dev: float, draw: float) -> float:
        """A rating for user row ``u`` of an item with deviation ``dev``; ``draw`` uniform in [0, 1)."""
        z = (self.prices - DISTANCE @ self.distribution(u, dev)) * self.inv_t + self.blocked[u]
        w = np.exp(z - z.max()).cumsum()
        k = int((w < draw * w[-1]).sum())
        return float(LEVELS[min(k, len(LEVELS) - 1)])


def expected_ratings(levels: np.ndarray, dev: np.ndarray) -> np.ndarray:
    """The mean of the fitted rating distribution, one per row."""
    return rating_distribution(levels, dev) @ LEVELS


def fit_prices(P: np.ndarray, allowed: np.ndarray, target: np.ndarray, temperature: float,
               iters: int = 400) -> np.ndarray:
    """Prices per level so that the emitted ratings' histogram matches ``target`` (Sinkhorn)."""
    prices = np.zeros(len(LEVELS))
    target = np.maximum(np.asarray(target, dtype=np.float64), 1e-6)
    target /= target.sum()
    cost = P @ DISTANCE
    for _ in range(iters):
        cur = emission_weights(P, prices, temperature, allowed, cost).mean(axis=0)
        step = temperature * (np.log(target) - np.log(np.maximum(cur, 1e-12)))
        prices += step
        if np.abs(step).max() < 1e-6:
            break
    return prices - prices.mean()


# ----------------------------------------------------------------------------- choice: slates


@dataclass
class _Slates:
    X: np.ndarray          # (pages, size, features) item features
    offset: np.ndarray     # (pages, size) position penalty; -inf on empty slots
    stage_page: np.ndarray
    stage_avail: np.ndarray   # (stages, size) bool
    stage_t: np.ndarray       # picks made before the stage
    stage_pages_seen: np.ndarray   # pages seen before this one in the session
    stage_chosen: np.ndarray  # slot picked, -1 = nothing more
    page_target: np.ndarray | None = None   # (pages, size) bool: the slot holds an item the user rated
    page_seen: np.ndarray | None = None     # (pages,) pages before it in its session
    page_ratio: np.ndarray | None = None    # (pages,) negatives per target of its session

    def __post_init__(self):
        self._fixed = None                                                      # (weights, utilities) cache
        self.stage_X = self.X[self.stage_page]                                  # (stages, size, F)
        self.stage_offset = np.where(self.stage_avail, self.offset[self.stage_page], -np.inf)
        hit = np.flatnonzero(self.stage_chosen >= 0)
        self.chosen_X_sum = self.stage_X[hit, self.stage_chosen[hit]].sum(axis=0)


def _build_slates(feats_for, users: list[tuple[int, np.ndarray]], n_items: int, rated: dict[int, np.ndarray],
                  rng: np.random.Generator, s: FitSettings) -> _Slates:
    """Pages of each user's targets mixed with never-rated items; picks in time order."""
    size, F = s.page_size, len(CHOICE_FEATURES)
    Xs, offs, sp, sa, st, sps, sc, pt, pseen, pratio = [], [], [], [], [], [], [], [], [], []
    pos_pen = -s.position_decay * np.log1p(np.arange(size))
    n_pages = 0
    all_items = np.arange(n_items)
    for row, targets in users:
        if not len(targets):
            continue
        pool = None
        for m in s.ratios:
            k = m * len(targets)
            if pool is None:
                pool = np.setdiff1d(all_items, rated[row], assume_unique=False)
            neg = rng.choice(pool, size=min(k, len(pool)), replace=False)
            cand = np.concatenate([targets, neg])
            order_of = np.concatenate([np.arange(len(targets)), np.full(len(neg), -1)])
            perm = rng.permutation(len(cand))
            cand, order_of = cand[perm], order_of[perm]
            f = feats_for(row, cand)                                  # (n, F)
            for p_i, lo in enumerate(range(0, len(cand), size)):
                it = cand[lo:lo + size]
                n = len(it)
                X = np.zeros((size, F))
                X[:n] = f[lo:lo + n]
                off = np.full(size, -np.inf)
                off[:n] = pos_pen[:n]
                Xs.append(X)
                offs.append(off)
                tgt = np.zeros(size, dtype=bool)
                tgt[:n] = order_of[lo:lo + n] >= 0
                pt.append(tgt)
                pseen.append(p_i)
                pratio.append(m)
                picks = np.flatnonzero(order_of[lo:lo + n] >= 0)
                picks = picks[np.argsort(order_of[lo:lo + n][picks], kind="stable")]
                avail = np.zeros(size, dtype=bool)
                avail[:n] = True
                for t, j in enumerate(list(picks) + [-1]):
                    sp.append(n_pages)
                    sa.append(avail.copy())
                    st.append(t)
                    sps.append(p_i)
                    sc.append(j)
                    if j >= 0:
                        avail[j] = False
                n_pages += 1
    return _Slates(np.array(Xs), np.array(offs), np.array(sp, dtype=np.int64), np.array(sa, dtype=bool),
                   np.array(st, dtype=np.float64), np.array(sps, dtype=np.float64), np.array(sc, dtype=np.int64),
                   np.array(pt, dtype=bool), np.array(pseen, dtype=np.float64), np.array(pratio, dtype=np.int64))


def _slate_nll(theta: np.ndarray, d: _Slates, l2: float, beta: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Negative log-likelihood of the picks and its gradient; theta = (weights..., no-click,
    after-pick, fatigue), or only (no-click, after-pick, fatigue) with the weights ``beta`` fixed."""
    F = d.X.shape[2]
    full = theta if beta is None else np.concatenate([beta, theta])
    b, c0, a, fat = full[:F], full[F], full[F + 1], full[F + 2]
    if beta is None:
        u = d.stage_X @ b + d.stage_offset                             # (stages, size); -inf: not on offer
    else:                                                              # fixed weights: utilities computed once
        key = beta.tobytes()
        if d._fixed is None or d._fixed[0] != key:
            d._fixed = (key, d.stage_X @ beta + d.stage_offset)
        u = d._fixed[1]
    u0 = c0 + a * d.stage_t + fat * d.stage_pages_seen
    m = np.maximum(u0, u.max(axis=1))
    e = np.exp(u - m[:, None])
    e0 = np.exp(u0 - m)
    z = e0 + e.sum(axis=1)
    hit = d.stage_chosen >= 0
    picked = np.where(hit, u[np.arange(len(u)), np.maximum(d.stage_chosen, 0)], u0)
    nll = -(picked - m - np.log(z)).sum() + 0.5 * l2 * (theta ** 2).sum()
    nc = (~hit).astype(np.float64) - e0 / z
    g_rest = np.array([nc.sum(), (nc * d.stage_t).sum(), (nc * d.stage_pages_seen).sum()])
    if beta is not None:
        return nll, -g_rest + l2 * theta
    p = e / z[:, None]
    g_beta = d.chosen_X_sum - np.einsum("sk,skf->f", p, d.stage_X)
    return nll, -np.concatenate([g_beta, g_rest]) + l2 * theta


def simulate_picks(d: _Slates, beta: np.ndarray, c0: float, a: float, fat: float, max_picks: int,
                   rng: np.random.Generator) -> np.ndarray:
    """(pages, size) bool: what the sequential chooser picks on each page of ``d``."""
    u = d.X @ beta + d.offset
    n, size = u.shape
    m = u.max(axis=1)
    w = np.exp(u - m[:, None])                         # 0 on empty slots
    w0 = np.exp(c0 + fat * d.page_seen - m)
    picked = np.zeros((n, size), dtype=bool)
    active = np.ones(n, dtype=bool)
    step = math.exp(a)
    for _ in range(min(max_picks, size)):
        tot = w0 + w.sum(axis=1)
        r = rng.random(n) * tot
        go = active & (r >= w0) & (w.sum(axis=1) > 0)
        cdf = np.cumsum(w, axis=1)
        j = np.minimum((cdf <= (r - w0)[:, None]).sum(axis=1), size - 1)
        rows = np.flatnonzero(go)
        picked[rows, j[rows]] = True
        w[rows, j[rows]] = 0.0
        w0 = np.where(go, w0 * step, w0)
        active = go
        if not active.any():
            break
    return picked


def _agreement(d: _Slates, picked: np.ndarray) -> float:
    """Mean over the slates' ratios of the F1 of the picks against the items rated."""
    f1 = []
    for m in np.unique(d.page_ratio):
        k = d.page_ratio == m
        tp = (picked[k] & d.page_target[k]).sum()
        f1.append(2 * tp / max(picked[k].sum() + d.page_target[k].sum(), 1))
    return float(np.mean(f1))


def fit_slates(d: _Slates, rng: np.random.Generator, sharpness: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0),
               max_picks: int = 10, l2: float = 1e-2, tolerance: float = 0.005) -> dict:
    """Maximum-likelihood weights, no-click utility, after-pick step and fatigue of slates ``d``;
    then the sharpness: the weights times each candidate factor, with no-click, after-pick and
    fatigue fitted again by likelihood, and the factor whose picks agree best with what the users
    rated (F1, averaged over the ratios) kept: the least sharp one within ``tolerance`` of the best."""
    from scipy.optimize import minimize

    F = d.X.shape[2]
    # fitted on standardised features (better conditioned), reported on the features' own scale
    scale = d.stage_X.reshape(-1, F)[np.isfinite(d.stage_offset).ravel()].std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = _Slates(d.X / scale, d.offset, d.stage_page, d.stage_avail, d.stage_t, d.stage_pages_seen, d.stage_chosen,
                d.page_target, d.page_seen, d.page_ratio)
    theta0 = np.zeros(F + 3)
    theta0[F] = 1.0
    bounds = [(None, None)] * (F + 2) + [(0.0, None)]               # fatigue cannot refresh
    res = minimize(_slate_nll, theta0, args=(z, l2), jac=True, method="L-BFGS-B", bounds=bounds)
    beta = res.x[:F] / scale
    out = {f"slate_mle_{name}": float(beta[k]) for k, name in enumerate(CHOICE_FEATURES)}
    out.update(slate_mle_no_click=float(res.x[F]), slate_mle_after_pick=float(res.x[F + 1]),
               slate_mle_fatigue=float(res.x[F + 2]), slate_loglik=float(-res.fun / max(len(d.stage_page), 1)),
               slate_stages=int(len(d.stage_page)))
    tried = []
    seed = int(rng.integers(2**31 - 1))
    for kappa in sharpness:
        b = kappa * beta
        if kappa == 1.0:
            rest = res.x[F:]
        else:
            r2 = minimize(_slate_nll, res.x[F:], args=(d, l2, b), jac=True, method="L-BFGS-B",
                          bounds=[(None, None), (None, None), (0.0, None)])
            rest = r2.x
        picked = simulate_picks(d, b, rest[0], rest[1], rest[2], max_picks, np.random.default_rng(seed))
        score = _agreement(d, picked)
        out[f"slate_agreement_{kappa:g}"] = score
        tried.append((score, kappa, b, rest))
    # the least sharp chooser within ``tolerance`` of the best agreement: as much of the users'
    # randomness as agreeing with them allows
    top = max(t[0] for t in tried)
    _, kappa, b, rest = next(t for t in tried if t[0] >= top - tolerance)
    out.update({f"slate_{name}": float(b[k]) for k, name in enumerate(CHOICE_FEATURES)})
    out.update(slate_sharpness=float(kappa), slate_no_click=float(rest[0]), slate_after_pick=float(rest[1]),
               slate_fatigue=float(rest[2]))
    return out


def session_continue(inter: pd.DataFrame, gap_s: int, page_picks: float) -> float:
    """Logit of staying for another page: a session of n ratings at about ``page_picks`` picks
    per page lasts n / page_picks pages, so the chance of leaving after a page is one over
    the mean number of pages."""
    u = inter["user_id"].to_numpy(np.int64)
    t = inter["timestamp"].to_numpy(np.int64)
    new = np.r_[True, (u[1:] != u[:-1]) | (np.diff(t) > gap_s)]
    sizes = np.diff(np.r_[np.flatnonzero(new), len(u)])
    pages = max(1.0, float(np.mean(sizes)) / max(page_picks, 1e-3))
    stay = 1.0 - 1.0 / pages
    stay = min(max(stay, 0.02), 0.98)
    return float(math.log(stay / (1 - stay)))


# ----------------------------------------------------------------------------- ratings


def _rating_nll(theta: np.ndarray, logh: np.ndarray, F: np.ndarray, obs: np.ndarray, l2: float):
    dev = F @ theta
    z = logh + LEVELS[None, :] * dev[:, None]
    lz = _logsumexp(z)
    p = np.exp(z - lz[:, None])
    ll = z[np.arange(len(z)), obs] - lz
    resid = LEVELS[obs] - p @ LEVELS
    return -ll.sum() + 0.5 * l2 * (theta ** 2).sum(), -(F * resid[:, None]).sum(axis=0) + l2 * theta


def fit_rating_model(levels: np.ndarray, feats: np.ndarray, ratings: np.ndarray, l2: float = 1e-2):
    """(weights, mean log-likelihood) of P(r) ~ levels(r) exp(r x feats @ weights)."""
    from scipy.optimize import minimize

    obs = np.clip(np.rint(np.asarray(ratings) * 2).astype(np.int64) - 1, 0, len(LEVELS) - 1)
    with np.errstate(divide="ignore"):
        logh = np.log(levels)
    res = minimize(_rating_nll, np.zeros(feats.shape[1]), args=(logh, feats, obs, l2), jac=True, method="L-BFGS-B")
    return res.x, float(-res.fun / max(len(obs), 1))


# ----------------------------------------------------------------------------- the whole fit


@dataclass
class Fitted:
    calibration: dict            # scalars: slate_* and rating_* (see the module's text)
    arrays: dict                 # user_factors, item_factors, rating_levels, rating_allowed, item_rating_bias


def genre_tastes(catalog: Catalog, items: np.ndarray, ratings: np.ndarray, base: np.ndarray,
            rating_mean: float) -> tuple[np.ndarray, np.ndarray]:
    """(choice taste, rating affinity) per genre of a user who rated ``items`` with ``ratings``:
    the smoothed log ratio of their genre shares to the catalog's (``base``), clipped to +-3,
    and their mean rating deviation per genre (3 pseudo-ratings at 0)."""
    gd = catalog.genre_dist[items].astype(np.float64)
    share = gd.sum(axis=0)
    # choice affinity: smoothed log ratio of the user's genre share to the catalog's
    choice = np.log((share + 2 * base) / (share.sum() + 2) / base)
    dev = ((ratings - rating_mean)[:, None] * gd).sum(axis=0) / (gd.sum(axis=0) + 3.0)
    return np.clip(choice, -3, 3), dev


def _tastes_of(catalog: Catalog, items: np.ndarray, ratings: np.ndarray, base: np.ndarray):
    return genre_tastes(catalog, items, ratings, base, float(ratings.mean()))


#: recent fits by their data: worlds built again from the same history (a comparison, a sweep,
#: the tests) reuse them, whatever their seed or users
_FITS: dict[str, "_Model"] = {}
_MAX_FITS = 4


@dataclass
class _Model:
    """A fit of one history: the scalars, the item arrays, and every user's arrays."""
    calibration: dict
    user_ids: np.ndarray          # sorted
    user_factors: np.ndarray
    item_factors: np.ndarray
    rating_levels: np.ndarray
    rating_allowed: np.ndarray
    item_rating_bias: np.ndarray
    rating_prices: np.ndarray


def _fit_key(catalog: Catalog, inter: pd.DataFrame, settings: FitSettings) -> str:
    import hashlib

    h = hashlib.sha256()
    for col in ("user_id", "item", "rating", "timestamp"):
        h.update(np.ascontiguousarray(inter[col].to_numpy()).tobytes())
    h.update(np.ascontiguousarray(catalog.ids).tobytes())
    h.update(np.ascontiguousarray(catalog.genre_dist).tobytes())
    h.update(repr(settings).encode())
    return h.hexdigest()


def fit_parametric(catalog: Catalog, inter: pd.DataFrame, users: np.ndarray,
                   settings: FitSettings | None = None) -> Fitted:
    """Fit the choice and rating models on ``inter`` (the history) and give the arrays the
    fitted brain needs for ``users`` (ids, the population's rows).  The fit depends on the data
    alone (its random draws come from ``settings.seed``), and runs on single-threaded BLAS:
    the same numbers on any machine, and no threads spinning against each other on a busy one."""
    from threadpoolctl import threadpool_limits

    s = settings or FitSettings()
    users = np.asarray(users, dtype=np.int64)
    key = _fit_key(catalog, inter, s)
    model = _FITS.get(key)
    if model is None:
        with threadpool_limits(1):
            model = _fit(catalog, inter, np.random.default_rng(s.seed), s)
        if len(_FITS) >= _MAX_FITS:
            _FITS.pop(next(iter(_FITS)))
        _FITS[key] = model
    pos = np.searchsorted(model.user_ids, users)
    found = (pos < len(model.user_ids)) & (model.user_ids[np.minimum(pos, len(model.user_ids) - 1)] == users)
    if not found.all():
        raise ValueError(f"user {int(users[~found][0])} has no ratings in the data the model was fitted on")
    arrays = {"user_factors": model.user_factors[pos].copy(), "item_factors": model.item_factors.copy(),
              "rating_levels": model.rating_levels[pos].copy(), "rating_allowed": model.rating_allowed[pos].copy(),
              "item_rating_bias": model.item_rating_bias.copy(), "rating_prices": model.rating_prices.copy()}
    return Fitted(dict(model.calibration), arrays)


def _fit(catalog: Catalog, inter: pd.DataFrame, rng: np.random.Generator, s: FitSettings) -> _Model:
    n_items = len(catalog)
    base = catalog.genre_dist.mean(axis=0).astype(np.float64) + 1e-6
    gd = catalog.genre_dist.astype(np.float64)

    # --- the inner split: users built from the first part of their history, the rest predicted
    inner, target = inner_split(inter, s.inner_fraction)
    pop_in, qual_in = item_statistics(inner, n_items)
    bias_in = item_rating_bias(inner, n_items, s.item_bias_shrink)
    fit_ids = np.unique(target["user_id"].to_numpy(np.int64))
    if len(fit_ids) > s.max_fit_users:
        fit_ids = np.sort(rng.choice(fit_ids, size=s.max_fit_users, replace=False))
    uf_in, vf_in = collaborative_factors(inner, n_items, fit_ids, rng, s)
    item_mean_in = inner.groupby("item")["rating"].mean()
    inner_by = {int(u): g for u, g in inner[inner["user_id"].isin(fit_ids)].groupby("user_id")}
    target_by = {int(u): g for u, g in target[target["user_id"].isin(fit_ids)].groupby("user_id")}
    all_rated = {int(u): g.to_numpy(np.int64) for u, g in inter[inter["user_id"].isin(fit_ids)].groupby("user_id")["item"]}
    taste_in = np.zeros((len(fit_ids), gd.shape[1]))
    raff_in = np.zeros((len(fit_ids), gd.shape[1]))
    conf_in = np.zeros(len(fit_ids))
    inner_ratings = []
    for k, uid in enumerate(fit_ids.tolist()):
        g = inner_by[uid]
        items, r = g["item"].to_numpy(np.int64), g["rating"].to_numpy(np.float64)
        taste_in[k], raff_in[k] = _tastes_of(catalog, items, r, base)
        conf_in[k] = 1 - min(1.0, float(np.abs(r - item_mean_in.reindex(items).to_numpy()).mean()) / 1.5)
        inner_ratings.append(r)

    def choice_features(k: int, items: np.ndarray) -> np.ndarray:
        return np.column_stack([gd[items] @ taste_in[k], (0.5 + conf_in[k]) * pop_in[items], qual_in[items],
                                vf_in[items] @ uf_in[k]])

    # the choice fit: users in random order until max_fit_targets rated items are to be predicted
    order, budget, slate_users = rng.permutation(len(fit_ids)), 0, []
    for k in order.tolist():
        if budget >= s.max_fit_targets:
            break
        items = target_by[int(fit_ids[k])]["item"].to_numpy(np.int64)
        slate_users.append((k, items))
        budget += len(items)
    slates = _build_slates(choice_features, slate_users, n_items,
                           {k: all_rated[u] for k, u in enumerate(fit_ids.tolist())}, rng, s)
    cal = fit_slates(slates, rng, max_picks=s.page_size)
    cal["slate_max_picks"] = int(s.page_size)
    picks_per_page = float((slates.stage_chosen >= 0).sum() / max(len(slates.X), 1))
    cal["slate_continue"] = session_continue(inter, s.session_gap_s, max(picks_per_page, 1.0))
    cal["slate_position_decay"] = s.position_decay

    # --- ratings: tilted user distributions, fitted on the inner targets
    rows, t_items, t_real = [], [], []
    for k, uid in enumerate(fit_ids.tolist()):
        g = target_by[uid]
        rows.append(np.full(len(g), k))
        t_items.append(g["item"].to_numpy(np.int64))
        t_real.append(g["rating"].to_numpy(np.float64))
    rows, t_items, t_real = np.concatenate(rows), np.concatenate(t_items), np.concatenate(t_real)
    feats = np.column_stack([bias_in[t_items], np.einsum("ij,ij->i", gd[t_items], raff_in[rows]),
                             np.einsum("ij,ij->i", vf_in[t_items], uf_in[rows])])
    best = None
    for hl in s.half_lives:
        lv = rating_levels(inner_ratings, hl)[rows]
        w, ll = fit_rating_model(lv, feats, t_real)
        if best is None or ll > best[2]:
            best = (hl, w, ll, lv)
    half_life, w_r, ll_r, lv = best
    P = rating_distribution(lv, feats @ w_r)
    allowed_in = np.array([(np.rint(r * 2) % 2 == 1).any() for r in inner_ratings])[rows]
    allowed = np.ones((len(rows), len(LEVELS)), dtype=bool)
    allowed[np.ix_(~allowed_in, HALF)] = False
    target_hist = np.bincount(np.clip(np.rint(t_real * 2).astype(np.int64) - 1, 0, 9), minlength=10) / len(t_real)
    # the temperature: the emitted ratings closest to the real ones (MAE) among those whose
    # histogram stays within max_tv of the real one
    draw = np.random.default_rng(int(rng.integers(2**31 - 1))).random(len(P))
    best_t = None
    for temp in s.temperatures:
        pr = fit_prices(P, allowed, target_hist, temp)
        w = emission_weights(P, pr, temp, allowed)
        emitted = LEVELS[np.minimum((np.cumsum(w, axis=1) < draw[:, None]).sum(axis=1), len(LEVELS) - 1)]
        hist = np.bincount(np.rint(emitted * 2).astype(np.int64) - 1, minlength=10) / len(emitted)
        mae, tv = float(np.abs(emitted - t_real).mean()), float(0.5 * np.abs(hist - target_hist).sum())
        cal[f"rating_mae_{temp:g}"], cal[f"rating_tv_{temp:g}"] = mae, tv
        if tv <= s.max_tv and (best_t is None or mae < best_t[0]):
            best_t = (mae, temp, pr)
    if best_t is None:                                   # none close enough: the most faithful histogram
        temp = max(s.temperatures)
        best_t = (None, temp, fit_prices(P, allowed, target_hist, temp))
    _, temperature, prices = best_t
    cal.update({f"rating_tilt_{name}": float(w_r[k]) for k, name in enumerate(RATING_FEATURES)})
    cal.update(rating_half_life=float(half_life) if math.isfinite(half_life) else -1.0,
               rating_temperature=float(temperature), rating_loglik=float(ll_r))
    for k, p in enumerate(prices):
        cal[f"rating_price_{LEVELS[k]:g}"] = float(p)

    # --- every user's arrays, from the whole history
    users = np.unique(inter["user_id"].to_numpy(np.int64))
    uf, vf = collaborative_factors(inter, n_items, users, rng, s)
    by_user = {int(u): g.to_numpy(np.float64) for u, g in inter.groupby("user_id")["rating"]}
    hist_r = [by_user[int(u)] for u in users]
    levels = rating_levels(hist_r, half_life)
    user_allowed = np.ones((len(users), len(LEVELS)), dtype=bool)
    half_users = np.array([(np.rint(r * 2) % 2 == 1).any() for r in hist_r], dtype=bool)
    user_allowed[np.ix_(~half_users, HALF)] = False
    return _Model(cal, users, uf, vf, levels, user_allowed, item_rating_bias(inter, n_items, s.item_bias_shrink),
                  prices)
