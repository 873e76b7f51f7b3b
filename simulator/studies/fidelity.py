"""Fidelity: how much simulated users resemble the real ones they were built from.

``recworld fidelity`` runs the Agent4Rec protocol (Table 1 style) on a MovieLens folder:

1. Each user's ratings are split by time (``data.holdout``, by default the last 20% of each
   user's ratings); the users, the catalog's popularity and quality and every fitted weight
   come from the history only (``recworld.simulator.data.holdout``).
2. Positives: a user's held-out items rated at least ``like`` (4 stars).  Negatives: ``m``
   times as many items the user never rated (neither in the history nor held out), drawn
   uniformly from the catalog, for each ratio 1:m.
3. Positives and negatives, shuffled, are shown to the user's brain in pages of
   ``page_size`` items (``choose_from_slate``; every page is the first page of a fresh
   session: no fatigue, nothing watched yet).  The items it picks are its predictions.
4. Scores: accuracy, precision, recall and F1, pooled over users (micro) and averaged per
   user, with bootstrap intervals over users; the AUC of the brain's utility where the
   brain exposes one (``utilities``); and the same figures for three baselines given the
   same number of picks per user: random, popularity (the history's rating counts) and
   genre affinity (the user's genre tastes from the history).
5. Ratings: the brain rates each held-out item (``consume`` for the parametric brain; one
   short LLM request for LLM brains); MAE, RMSE and correlation against the real ratings,
   next to the user-mean, item-mean and global-mean predictors, and the histogram of
   simulated vs real ratings on the half-star grid with its total-variation distance.

The public API behind it works without a world: ``SimulatedUsers`` builds users from given
histories (``from_histories``) or from a MovieLens folder (``from_movielens``), asks their
brain to choose from a given list of items (``choose``, ``choose_many``) and to rate a given
item (``rate``, ``rate_many``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - types only; the module loads light (the CLI builds its parser from it)
    import pandas as pd
    from pydantic import BaseModel

    from recworld.simulator.data.catalog import Catalog
    from recworld.simulator.data.population import Population
    from recworld.simulator.protocols import Brain, UserState

log = logging.getLogger("recworld")

#: the half-star grid ratings are compared on
GRID = np.arange(1, 11) / 2.0
#: files of a fidelity output folder (``--overwrite`` may replace exactly these)
FILES = {"fidelity.json", "fidelity.md", "fidelity_users.csv", "scenario.yaml", "llm_calls.jsonl", "error.txt"}
#: LLM brains rate at most this many held-out items per user unless told otherwise
LLM_RATE_MAX = 10
#: named seed streams of a fidelity run (adding one never shifts the others)
STREAMS = ("population", "brain", "users", "sample", "negatives", "baselines", "bootstrap", "groups", "positives")


def _register_kind() -> None:
    from recworld.simulator.output.folders import register_kind

    register_kind("fidelity", FILES, {"plots": ("*.png", "*.svg")})


_register_kind()


# ----------------------------------------------------------------------------- the API


def _rating_answer():
    """The schema of an LLM user's rating of one item (``RatingAnswer``), built on first use."""
    if "RatingAnswer" not in globals():
        from pydantic import BaseModel, Field

        class RatingAnswer(BaseModel):
            """An LLM user's rating of one item."""
            rating: float = Field(ge=0.5, le=5)
            feeling: str = Field("", max_length=60)
        globals()["RatingAnswer"] = RatingAnswer
    return globals()["RatingAnswer"]


RATE_PROMPT = ("You just watched {item}.\nHow many stars do you give it, from 0.5 to 5 in half stars "
               "(5 = loved it, 0.5 = hated it), and how did it make you feel? Answer as JSON with the keys "
               "rating and feeling.")


def _page_state(index: int, user_id: int, rng: np.random.Generator, seen: set[int]) -> UserState:
    """A user at the first page of a fresh session: nothing watched, heard of or searched yet."""
    from recworld.simulator.protocols import UserState

    st = UserState(index, user_id, rng, seen=set(seen))
    st.session, st.pages_seen = 1, 1
    return st


class SimulatedUsers:
    """Users built from given histories, with their brain(s), usable without a world.

    ``population`` row ``u`` is the user ``population.ids[u]``; ``brains`` is one brain or a
    list with each user's brain.  Every user has a random generator of their own (from
    ``seed``), so the same calls in the same order give the same answers.  Items are public
    item ids (``catalog.ids``) in and out.  Brains that need an LLM get ``llm`` (an
    ``LLMService``); their requests are answered together (``choose_many``, ``rate_many``).
    """

    def __init__(self, catalog: Catalog, population: Population, brains: Brain | Sequence[Brain],
                 llm: Any = None, seed: int | np.random.SeedSequence = 0):
        self.catalog, self.population, self.llm = catalog, population, llm
        n = len(population)
        self.brains = list(brains) if isinstance(brains, (list, tuple)) else [brains] * n
        if len(self.brains) != n:
            raise ValueError(f"{len(self.brains)} brains for {n} users")
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self._rngs = [np.random.default_rng(s) for s in ss.spawn(n)]
        self._row = {int(u): k for k, u in enumerate(population.ids)}
        self._seen = [set(h.tolist()) for h in population.history]

    # ------------------------------------------------------------------ building

    @classmethod
    def from_histories(cls, catalog: Catalog, histories: pd.DataFrame, users: Sequence[int] | None = None, *,
                       brain: str | type[Brain] = "parametric", params: dict | BaseModel | None = None,
                       llm: Any = None, seed: int = 0) -> "SimulatedUsers":
        """Users built from ``histories`` (columns user_id, item_id, rating, timestamp; one row
        per rating, of items in ``catalog``): all of them, or the ``users`` named (in that
        order).  ``brain``: a registered brain name or a Brain class, with its ``params``."""
        from recworld.simulator import registry
        from recworld.simulator.data.sources import population_from_ratings

        inter = interactions_table(catalog, histories)
        if users is None:
            users = np.sort(inter["user_id"].unique())
        ss = np.random.SeedSequence(seed)
        s_pop, s_brain, s_users = ss.spawn(3)
        pop = population_from_ratings(catalog, inter, rng=np.random.default_rng(s_pop), users=users)
        bcls = registry.load("brains", brain) if isinstance(brain, str) else brain
        b = bcls(params, catalog=catalog, population=pop, rng=np.random.default_rng(s_brain),
                 llm=llm if bcls.needs_llm else None)
        return cls(catalog, pop, b, llm=llm, seed=s_users)

    @classmethod
    def from_movielens(cls, path, users: Sequence[int] | None = None, *, holdout: Any = None,
                       brain: str | type[Brain] = "parametric", params: dict | BaseModel | None = None,
                       llm: Any = None, seed: int = 0, n_tags: int = 10) -> "SimulatedUsers":
        """Users of a MovieLens folder built from their ratings, or from their history only
        when ``holdout`` is given (the held-out ratings are then in ``.heldout``)."""
        from recworld.simulator.data.sources import load_movielens

        ml = load_movielens(path, n_tags=n_tags, holdout=holdout)
        out = cls.from_histories(ml.catalog, ml.ratings, users, brain=brain, params=params, llm=llm, seed=seed)
        out.heldout = ml.heldout
        return out

    heldout: pd.DataFrame | None = None

    # ------------------------------------------------------------------ asking

    def row(self, user_id: int) -> int:
        try:
            return self._row[int(user_id)]
        except KeyError:
            raise KeyError(f"user {user_id} is not among these users") from None

    def state(self, user_id: int) -> UserState:
        """The user at the first page of a fresh session (their history as ``seen``)."""
        u = self.row(user_id)
        return _page_state(u, int(self.population.ids[u]), self._rngs[u], self._seen[u])

    def choose(self, user_id: int, items: Sequence[int]) -> list[int]:
        """The item ids the user picks from ``items`` (shown as one page, in that order)."""
        return self.choose_many([(user_id, items)])[0]

    def choose_many(self, pages: Sequence[tuple[int, Sequence[int]]],
                    pages_seen: Sequence[int] | None = None) -> list[list[int]]:
        """``choose`` for many (user id, items) pages; LLM requests of all pages go together.
        ``pages_seen``: per page, how many pages the user has seen in this session including
        it (default 1: each page opens a fresh session, so no fatigue)."""
        from recworld.simulator.protocols import PageChoice

        decisions, shown = [], []
        for k, (uid, items) in enumerate(pages):
            idx = self.catalog.indices_of(items) if len(items) else np.empty(0, dtype=np.int64)
            st = self.state(uid)
            if pages_seen is not None:
                st.pages_seen = int(pages_seen[k])
            brain = self.brains[st.index]
            decisions.append(brain.choose_from_slate(st, idx, 0, 0.0))
            shown.append(idx)
        out = []
        for idx, choice in zip(shown, resolve_all(decisions, self.llm)):
            if not isinstance(choice, PageChoice):
                raise TypeError(f"choose_from_slate gave {type(choice).__name__}, not a PageChoice")
            pos = [int(p) for p in choice.watch if 0 <= int(p) < len(idx)]
            out.append([int(self.catalog.ids[idx[p]]) for p in dict.fromkeys(pos)])
        return out

    def scores(self, user_id: int, items: Sequence[int]) -> np.ndarray | None:
        """The brain's utility of each item for the user, free of position effects, or None when
        the brain exposes none (a method ``utilities(state, items)``)."""
        u = self.row(user_id)
        brain = self.brains[u]
        if not callable(getattr(brain, "utilities", None)):
            return None
        idx = self.catalog.indices_of(items)
        st = _page_state(u, int(self.population.ids[u]), np.random.default_rng(0), self._seen[u])
        # one item per call would be free of the slot penalty too; one call and the penalty given back is faster
        util = np.asarray(brain.utilities(st, idx), dtype=np.float64)
        decay = getattr(getattr(brain, "params", None), "position_decay", 0.0)
        return util + decay * np.log1p(np.arange(len(idx)))

    def rate(self, user_id: int, item: int) -> float:
        """The user's rating of ``item`` (as if they had just watched it)."""
        return self.rate_many([(user_id, item)])[0]

    def rate_many(self, pairs: Sequence[tuple[int, int]]) -> list[float]:
        """``rate`` for many (user id, item id) pairs; LLM requests go together."""
        decisions = []
        for uid, item in pairs:
            st = self.state(uid)
            decisions.append(self._rating(self.brains[st.index], st, self.catalog.index_of(item)))
        return [float(r) for r in resolve_all(decisions, self.llm)]

    def _rating(self, brain: Brain, st: UserState, item: int):
        """A rating, or a ``Think`` for an LLM brain (a short request with the user's persona)."""
        from recworld.simulator.protocols import Think

        if brain.needs_llm and callable(getattr(brain, "persona", None)):
            from recworld.simulator.llm.service import LLMRequest

            c = self.catalog
            genres = ", ".join(c.genre_lists[item])
            line = f"{c.titles[item]}" + (f" [{genres}]" if genres else "")
            messages = [{"role": "system", "content": brain.persona(st)},
                        {"role": "user", "content": RATE_PROMPT.format(item=line)}]
            req = LLMRequest(messages, _rating_answer(), int(st.rng.integers(2**31 - 1)),
                             {"user": st.user_id, "purpose": "rate"})

            def then(results):
                r = results[0]
                brain.decisions += 1
                if r.ok and r.parsed is not None:
                    return float(np.clip(np.round(r.parsed.rating * 2) / 2, 0.5, 5.0))
                brain.fallbacks += 1
                fb = getattr(brain, "fallback", None)
                return fb.consume(st, item, 0.0).rating if fb is not None else float("nan")
            return Think([req], then)
        return brain.consume(st, item, 0.0).rating


def interactions_table(catalog: Catalog, histories: pd.DataFrame) -> pd.DataFrame:
    """Histories (user_id or userId, item_id or movieId, rating, timestamp) as an interactions
    table over ``catalog`` (with the catalog index ``item``), sorted by user and time."""
    import pandas as pd

    df = histories.rename(columns={"userId": "user_id", "movieId": "item_id"})
    missing = [c for c in ("user_id", "item_id", "rating") if c not in df.columns]
    if missing:
        raise ValueError(f"histories need the columns user_id, item_id, rating (and timestamp); missing {missing}")
    known = df["item_id"].isin(catalog.ids)
    if not known.all():
        bad = df.loc[~known, "item_id"].iloc[0]
        raise ValueError(f"histories name {int((~known).sum())} items that are not in the catalog (e.g. {bad})")
    ts = df["timestamp"].to_numpy(np.int64) if "timestamp" in df.columns else np.arange(len(df), dtype=np.int64)
    out = pd.DataFrame({"user_id": df["user_id"].to_numpy(np.int64), "item_id": df["item_id"].to_numpy(np.int64),
                        "item": catalog.indices_of(df["item_id"].to_numpy()),
                        "rating": df["rating"].to_numpy(np.float64), "timestamp": ts})
    return out.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)


def resolve_all(decisions: list, llm) -> list:
    """Decisions with every ``Think`` answered by ``llm``, all pending requests in one batch per round."""
    from recworld.simulator.protocols import Think

    out = list(decisions)
    for _ in range(50):
        pending = [k for k, d in enumerate(out) if isinstance(d, Think)]
        if not pending:
            return out
        if llm is None:
            raise RuntimeError("a brain asked for an LLM: give an LLM service (llm=...)")
        requests = [r for k in pending for r in out[k].requests]
        results = llm.complete_many(requests)
        at = 0
        for k in pending:
            n = len(out[k].requests)
            out[k] = out[k].then(results[at:at + n])
            at += n
    raise RuntimeError("more than 50 chained LLM steps in one decision")


# ----------------------------------------------------------------------------- metrics


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half); NaN without both."""
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    allv = np.concatenate([pos, neg])
    from scipy.stats import rankdata

    ranks = rankdata(allv)
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _scores(tp, fp, fn, tn) -> dict:
    tp, fp, fn, tn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn, tn))
    n = tp + fp + fn + tn
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = (tp + tn) / n
        prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        rec = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return {"accuracy": acc, "precision": prec, "recall": rec, "f1": f1}


def classification(counts: np.ndarray, rng: np.random.Generator, n_boot: int = 1000) -> dict:
    """Micro (pooled) and per-user accuracy, precision, recall, F1 from per-user counts
    (rows tp, fp, fn, tn), each with a 95% bootstrap interval over users."""
    counts = np.asarray(counts, dtype=np.float64)
    n = len(counts)
    micro = {k: float(v) for k, v in _scores(*counts.sum(axis=0)).items()}
    per = _scores(*counts.T)
    per_user = {k: float(np.mean(v)) for k, v in per.items()}
    out = {"micro": micro, "per_user": per_user}
    if n_boot and n > 1:
        idx = rng.integers(0, n, size=(n_boot, n))
        boot_micro = _scores(*counts[idx].sum(axis=1).T)
        ci_micro = {k: [float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))] for k, v in boot_micro.items()}
        ci_user = {k: [float(np.quantile(v[idx].mean(axis=1), 0.025)), float(np.quantile(v[idx].mean(axis=1), 0.975))]
                   for k, v in per.items()}
        out["micro_ci"], out["per_user_ci"] = ci_micro, ci_user
    return out


def rating_errors(pred: np.ndarray, real: np.ndarray, users: np.ndarray, rng: np.random.Generator,
                  n_boot: int = 1000) -> dict:
    """MAE, RMSE and Pearson correlation of ``pred`` against ``real`` (pooled over ratings),
    with 95% bootstrap intervals over users for MAE and RMSE."""
    pred, real = np.asarray(pred, dtype=np.float64), np.asarray(real, dtype=np.float64)
    ok = np.isfinite(pred)
    pred, real, users = pred[ok], real[ok], np.asarray(users)[ok]
    if not len(pred):
        return {"n": 0}
    err = pred - real
    corr = float(np.corrcoef(pred, real)[0, 1]) if len(pred) > 1 and pred.std() > 0 and real.std() > 0 else float("nan")
    out = {"n": int(len(pred)), "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
           "corr": corr}
    if n_boot:
        uniq, inv = np.unique(users, return_inverse=True)
        if len(uniq) > 1:
            abs_sum = np.bincount(inv, np.abs(err), len(uniq))
            sq_sum = np.bincount(inv, err ** 2, len(uniq))
            cnt = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
            idx = rng.integers(0, len(uniq), size=(n_boot, len(uniq)))
            c = cnt[idx].sum(axis=1)
            out["mae_ci"] = np.quantile(abs_sum[idx].sum(axis=1) / c, [0.025, 0.975]).tolist()
            out["rmse_ci"] = np.quantile(np.sqrt(sq_sum[idx].sum(axis=1) / c), [0.025, 0.975]).tolist()
    return out


def histogram(ratings: np.ndarray) -> np.ndarray:
    """Share of ratings on each half star 0.5 .. 5 (ratings rounded to the nearest half star)."""
    r = np.asarray(ratings, dtype=np.float64)
    r = r[np.isfinite(r)]
    if not len(r):
        return np.zeros(len(GRID))
    k = np.clip(np.rint(r * 2).astype(int) - 1, 0, len(GRID) - 1)
    return np.bincount(k, minlength=len(GRID)) / len(r)


def tv_distance(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


# ----------------------------------------------------------------------------- the protocol


@dataclass
class FidelitySettings:
    ratios: tuple[int, ...] = (1, 3, 9)
    like: float = 4.0                 # held-out ratings at or above this are positives
    page_size: int = 10
    users: int | None = None          # sample this many users (None: every eligible user)
    min_history: int = 5              # users need this many history ratings
    rate_max: int | None = None       # held-out items rated per user (None: all; LLM brains: LLM_RATE_MAX)
    bootstrap: int = 1000
    seed: int = 0
    progress: bool = False
    session: bool = False             # a user's pages one after another in one session (fatigue applies)
    max_positives: int | None = None  # keep at most this many held-out positives per user (None: all)


@dataclass
class _User:
    row: int
    user_id: int
    positives: np.ndarray             # catalog indices
    rated: np.ndarray                 # held-out items (catalog indices) and their real ratings
    real: np.ndarray
    excluded: np.ndarray              # every item the user rated (history and held out)
    picks: dict = field(default_factory=dict)


def _streams(seed: int) -> dict[str, np.random.SeedSequence]:
    return dict(zip(STREAMS, np.random.SeedSequence(seed).spawn(len(STREAMS))))


def run_fidelity(scenario, settings: FidelitySettings | None = None, llm=None, out: Path | None = None,
                 brain_class: type[Brain] | None = None) -> dict:
    """The protocol (see the module's text) on ``scenario``'s MovieLens data, brain(s),
    page size and LLM; returns the results as a dict (what ``fidelity.json`` holds).
    ``brain_class`` replaces the scenario's brain class (its parameters still apply)."""
    from recworld.simulator import registry
    from recworld.simulator.build import Parts, make_brains
    from recworld.simulator.data.holdout import Holdout
    from recworld.simulator.data.sources import bundled_movielens_path, load_movielens, population_from_ratings
    from recworld.simulator.output.progress import progress_bar

    s = settings or FidelitySettings()
    if scenario.data.source != "movielens":
        raise ValueError("recworld fidelity needs MovieLens data (data.source: movielens): it compares simulated "
                         "users with the real users' later ratings")
    if not s.ratios or any(int(m) < 1 for m in s.ratios):
        raise ValueError("ratios must be whole numbers of at least 1 (e.g. 1,3,9)")
    t0 = time.perf_counter()
    seeds = _streams(s.seed)
    d = scenario.data
    holdout = Holdout.of(d.holdout) or Holdout()
    ml = load_movielens(d.path or bundled_movielens_path(), n_tags=d.n_tags, holdout=holdout)
    catalog, history, heldout = ml.catalog, ml.ratings, ml.heldout
    counts = history.groupby("user_id").size()
    liked_users = set(heldout.loc[heldout["rating"] >= s.like, "user_id"].unique().tolist())
    eligible = np.array(sorted(u for u in counts[counts >= s.min_history].index.tolist() if u in liked_users),
                        dtype=np.int64)
    if not len(eligible):
        raise ValueError(f"no user has {s.min_history} history ratings and a held-out rating of {s.like:g} or more")
    if s.users is not None and s.users < len(eligible):
        chosen = np.sort(np.random.default_rng(seeds["sample"]).choice(eligible, size=s.users, replace=False))
    else:
        chosen = eligible
    from recworld.simulator.build import fits_users

    pop = population_from_ratings(catalog, history, rng=np.random.default_rng(seeds["population"]), users=chosen,
                                  fit=brain_class is not None or fits_users(scenario))
    if brain_class is not None:
        cfg = scenario.population.brain
        brains = brain_class(brain_class.Params.model_validate(cfg.params), catalog=catalog, population=pop,
                             rng=np.random.default_rng(seeds["brain"]), llm=llm if brain_class.needs_llm else None)
        brains = [brains] * len(pop)
    else:
        for name in {scenario.population.brain.name, *(g.brain.name for g in scenario.population.groups)}:
            registry.load("brains", name)
        brains = make_brains(scenario, Parts(catalog, pop, history, None), llm)
        brains = brains if isinstance(brains, list) else [brains] * len(pop)
    users_api = SimulatedUsers(catalog, pop, brains, llm=llm, seed=seeds["users"])

    # who is who: positives, held-out ratings, everything rated
    users: list[_User] = []
    held_by = dict(tuple(heldout.groupby("user_id")))
    pos_rngs = [np.random.default_rng(x) for x in seeds["positives"].spawn(len(pop))]
    hist_by = {int(u): g for u, g in history[history["user_id"].isin(chosen)].groupby("user_id")}
    for k, uid in enumerate(pop.ids.tolist()):
        h = held_by[uid]
        items, real = h["item"].to_numpy(np.int64), h["rating"].to_numpy(np.float64)
        rated = np.concatenate([hist_by[uid]["item"].to_numpy(np.int64), items])
        positives = items[real >= s.like]
        if s.max_positives is not None and len(positives) > s.max_positives:
            # a budget for LLM brains: a random subset, in held-out order
            positives = positives[np.sort(pos_rngs[k].choice(len(positives), size=s.max_positives, replace=False))]
        users.append(_User(k, uid, positives, items, real, np.unique(rated)))

    # --- choices, ratio by ratio
    n_items = len(catalog)
    pop_score = catalog.items["n_ratings"].to_numpy(np.float64)
    genre_score = pop.taste.astype(np.float64) @ catalog.genre_dist.astype(np.float64).T  # (users, items)
    ratios_out = {}
    per_user_rows = []
    neg_seq = seeds["negatives"].spawn(len(s.ratios))
    base_seq = seeds["baselines"].spawn(len(s.ratios))
    boot_rng = np.random.default_rng(seeds["bootstrap"])
    for r_i, m in enumerate(int(x) for x in s.ratios):
        neg_rngs = [np.random.default_rng(x) for x in neg_seq[r_i].spawn(len(users))]
        base_rngs = [np.random.default_rng(x) for x in base_seq[r_i].spawn(len(users))]
        shown, pages, owners, seen_count = [], [], [], []
        for us, rng in zip(users, neg_rngs):
            pool = np.setdiff1d(np.arange(n_items), us.excluded, assume_unique=True)
            k = min(len(pool), m * len(us.positives))
            neg = rng.choice(pool, size=k, replace=False)
            cand = np.concatenate([us.positives, neg])
            cand = cand[rng.permutation(len(cand))]
            shown.append((cand, np.isin(cand, us.positives)))
            for n_page, lo in enumerate(range(0, len(cand), s.page_size)):
                pages.append((us.user_id, catalog.ids[cand[lo:lo + s.page_size]]))
                owners.append(us.row)
                seen_count.append(n_page + 1 if s.session else 1)
        picked_ids: list[list[int]] = []
        bar = progress_bar(total=len(pages), desc=f"1:{m} pages", enabled=s.progress, leave=False,
                           dynamic_ncols=True)
        step = 512 if llm is None else 64
        for lo in range(0, len(pages), step):
            picked_ids += users_api.choose_many(pages[lo:lo + step], seen_count[lo:lo + step])
            bar.update(min(step, len(pages) - lo))
        bar.close()
        picked_by_user: dict[int, set] = {}
        for row, ids in zip(owners, picked_ids):
            picked_by_user.setdefault(row, set()).update(catalog.indices_of(ids).tolist() if ids else [])
        methods = ("brain", "random", "popularity", "genre")
        counts_by = {mth: np.zeros((len(users), 4)) for mth in methods}
        aucs = {mth: [] for mth in ("brain", "popularity", "genre")}
        n_picks = np.zeros(len(users))
        for us, (cand, pos), brng in zip(users, shown, base_rngs):
            picked = np.isin(cand, np.fromiter(picked_by_user.get(us.row, ()), dtype=np.int64))
            kpick = int(picked.sum())
            n_picks[us.row] = kpick
            tie = brng.random(len(cand))
            preds = {"brain": picked,
                     "random": _top(brng.random(len(cand)), kpick),
                     "popularity": _top(np.lexsort((tie, pop_score[cand])).argsort(), kpick),
                     "genre": _top(np.lexsort((tie, genre_score[us.row, cand])).argsort(), kpick)}
            for mth, pr in preds.items():
                counts_by[mth][us.row] = [(pr & pos).sum(), (pr & ~pos).sum(), (~pr & pos).sum(), (~pr & ~pos).sum()]
            sc = users_api.scores(us.user_id, catalog.ids[cand])
            if sc is not None:
                aucs["brain"].append(auc(sc[pos], sc[~pos]))
            aucs["popularity"].append(auc(pop_score[cand][pos], pop_score[cand][~pos]))
            aucs["genre"].append(auc(genre_score[us.row, cand][pos], genre_score[us.row, cand][~pos]))
            per_user_rows.append({"ratio": m, "user_id": us.user_id, "brain": brains[us.row].name,
                                  "shown": len(cand), "positives": int(pos.sum()), "picks": kpick,
                                  "hits": int((picked & pos).sum()),
                                  "auc": aucs["brain"][-1] if sc is not None else float("nan")})
        res = {}
        for mth in methods:
            res[mth] = classification(counts_by[mth], boot_rng, s.bootstrap)
            if mth in aucs and aucs[mth]:
                res[mth]["auc"] = float(np.nanmean(aucs[mth]))
        res["random"]["auc"] = 0.5
        shown_total = sum(len(c) for c, _ in shown)
        res["brain"]["pick_rate"] = float(n_picks.sum() / max(shown_total, 1))
        res["positive_share"] = float(sum(p.sum() for _, p in shown) / max(shown_total, 1))
        res["shown"] = int(shown_total)
        ratios_out[f"1:{m}"] = res

    # --- ratings
    pairs, real, owner_rows = [], [], []
    llm_brains = any(b.needs_llm for b in brains)
    rate_max = s.rate_max if s.rate_max is not None else (LLM_RATE_MAX if llm_brains else None)
    for us in users:
        take = np.arange(len(us.rated)) if rate_max is None else np.arange(min(rate_max, len(us.rated)))
        pairs += [(us.user_id, int(catalog.ids[i])) for i in us.rated[take]]
        real.append(us.real[take])
        owner_rows += [us.row] * len(take)
    real = np.concatenate(real) if real else np.empty(0)
    owner_rows = np.asarray(owner_rows, dtype=np.int64)
    sim = []
    step = 4096 if llm is None else 64
    for lo in progress_bar(range(0, len(pairs), step), desc="ratings", enabled=s.progress, leave=False):
        sim += users_api.rate_many(pairs[lo:lo + step])
    sim = np.asarray(sim, dtype=np.float64)
    items_rated = catalog.indices_of([p[1] for p in pairs]) if pairs else np.empty(0, dtype=np.int64)
    user_mean = np.array([pop.history_ratings[r].mean() for r in owner_rows]) if len(owner_rows) else np.empty(0)
    gmean = float(history["rating"].mean())
    item_stats = history.groupby("item")["rating"].agg(["sum", "size"])
    isum = item_stats["sum"].reindex(items_rated).fillna(0).to_numpy()
    isize = item_stats["size"].reindex(items_rated).fillna(0).to_numpy()
    item_mean = (isum + 5 * gmean) / (isize + 5)                    # shrunk towards the global mean
    predictors = {"brain": sim, "user_mean": user_mean, "item_mean": item_mean,
                  "global_mean": np.full(len(real), gmean)}
    expected = [b for b in {id(b): b for b in brains}.values() if callable(getattr(b, "expected_rating", None))]
    if len(expected) == 1 and len({id(b) for b in brains}) == 1 and not llm_brains:
        b = expected[0]
        predictors["brain_expected"] = np.array([
            b.expected_rating(_page_state(r, int(pop.ids[r]), np.random.default_rng(0), set()), int(i))
            for r, i in zip(owner_rows.tolist(), items_rated.tolist())])
    rating_users = pop.ids[owner_rows] if len(owner_rows) else np.empty(0, dtype=np.int64)
    ratings_out = {k: rating_errors(v, real, rating_users, boot_rng, s.bootstrap) for k, v in predictors.items()}
    h_sim, h_real = histogram(sim), histogram(real)
    ratings_out["histogram"] = {"stars": GRID.tolist(), "simulated": h_sim.tolist(), "real": h_real.tolist(),
                                "tv_distance": tv_distance(h_sim, h_real),
                                "half_star_share": {"simulated": float(h_sim[0::2].sum()),
                                                    "real": float(h_real[0::2].sum())}}
    ratings_out["mean"] = {"simulated": float(np.nanmean(sim)) if len(sim) else None,
                           "real": float(real.mean()) if len(real) else None}

    brain_names = sorted({b.name for b in brains})
    result = {
        "protocol": "agent4rec-table1",
        "data": {"path": str(d.path or "bundled sample"), "holdout": holdout.describe(), "items": len(catalog),
                 "history_ratings": int(len(history)), "heldout_ratings": int(len(heldout)),
                 "eligible_users": int(len(eligible)), "users": int(len(users))},
        "brain": {"names": brain_names, "class": brain_class.__name__ if brain_class is not None else None,
                  "fitted": any(getattr(b, "fitted", False) for b in brains),
                  "params": scenario.population.brain.params,
                  "calibration": {k: v for k, v in pop.calibration.items() if isinstance(v, (int, float, str))}},
        "settings": {"ratios": [int(x) for x in s.ratios], "like": s.like, "page_size": s.page_size,
                     "session": s.session,
                     "min_history": s.min_history, "rate_max": rate_max, "bootstrap": s.bootstrap, "seed": s.seed,
                     "max_positives": s.max_positives},
        "ratios": ratios_out,
        "ratings": ratings_out,
        "seconds": round(time.perf_counter() - t0, 2),
        "per_user": per_user_rows,
    }
    if llm_brains:
        result["llm"] = {"decisions": sum(b.decisions for b in {id(b): b for b in brains}.values()),
                         "fallbacks": sum(b.fallbacks for b in {id(b): b for b in brains}.values())}
        if llm is not None and callable(getattr(llm, "metrics", None)):
            result["llm"]["service"] = llm.metrics()
    return result


def _top(score: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` highest scores."""
    out = np.zeros(len(score), dtype=bool)
    if k > 0:
        out[np.argsort(-score, kind="stable")[:k]] = True
    return out


# ----------------------------------------------------------------------------- writing

#: Agent4Rec's figures as reproduced publicly (1,000 LLM avatars, per-user averages)
from recworld.simulator.output.studies import AGENT4REC_F1  # noqa: E402 - the published figures, shown by the page too


def _f(v, d: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{d}f}"


def _ci(c) -> str:
    return f" [{c[0]:.3f}, {c[1]:.3f}]" if c else ""


def markdown(result: dict) -> str:
    """``fidelity.md``: the tables of a result."""
    d, st = result["data"], result["settings"]
    lines = [f"# Fidelity: {', '.join(result['brain']['names'])}"
             + (f" ({result['brain']['class']})" if result["brain"].get("class") else "")
             + (" (fitted user model)" if result["brain"].get("fitted") else ""), "",
             f"Data: {d['path']} — {d['holdout']}; {d['users']} users "
             f"(of {d['eligible_users']} with {st['min_history']}+ history ratings and a held-out "
             f"{st['like']:g}+ rating), {d['items']} items. Pages of {st['page_size']}"
             f"{' in one session each' if st.get('session') else ', each a fresh session'}, seed {st['seed']}. "
             f"Intervals: 95% bootstrap over users ({st['bootstrap']} resamples).", "",
             "## Choices (held-out liked items vs never-rated items at 1:m)", "",
             "| ratio | chooser | accuracy | precision | recall | F1 (micro) | F1 per user | AUC |",
             "|---|---|---|---|---|---|---|---|"]
    for ratio, res in result["ratios"].items():
        for mth in ("brain", "popularity", "genre", "random"):
            r = res[mth]
            mi, pu = r["micro"], r["per_user"]
            name = "**brain**" if mth == "brain" else f"{mth} (same picks)"
            lines.append(f"| {ratio} | {name} | {_f(mi['accuracy'])} | {_f(mi['precision'])} | {_f(mi['recall'])} | "
                         f"{_f(mi['f1'])}{_ci(r.get('micro_ci', {}).get('f1'))} | "
                         f"{_f(pu['f1'])}{_ci(r.get('per_user_ci', {}).get('f1'))} | {_f(r.get('auc'))} |")
        if ratio in AGENT4REC_F1:
            lines.append(f"| {ratio} | Agent4Rec (public reproduction, per user) | | | | | {AGENT4REC_F1[ratio]:.3f} | |")
    lines += ["", "Pick rate of the brain (share of shown items it watched): "
              + ", ".join(f"{k} {_f(v['brain']['pick_rate'])} (positives {_f(v['positive_share'])})"
                          for k, v in result["ratios"].items()), ""]
    rt = result["ratings"]
    lines += ["## Ratings of the held-out items", "", "| predictor | MAE | RMSE | correlation | ratings |",
              "|---|---|---|---|---|"]
    names = {"brain": "**brain (emitted ratings)**", "brain_expected": "brain's expected rating",
             "user_mean": "user's history mean", "item_mean": "item's history mean (shrunk)",
             "global_mean": "global history mean"}
    for k, label in names.items():
        if k in rt and rt[k].get("n"):
            r = rt[k]
            lines.append(f"| {label} | {_f(r['mae'])}{_ci(r.get('mae_ci'))} | {_f(r['rmse'])}{_ci(r.get('rmse_ci'))} | "
                         f"{_f(r['corr'])} | {r['n']} |")
    h = rt["histogram"]
    lines += ["", f"Rating histogram (share per star; total-variation distance {h['tv_distance']:.3f}; "
              f"half stars: simulated {h['half_star_share']['simulated']:.1%}, real {h['half_star_share']['real']:.1%}):",
              "", "| stars | " + " | ".join(f"{x:g}" for x in h["stars"]) + " |",
              "|---|" + "---|" * len(h["stars"]),
              "| simulated | " + " | ".join(f"{x:.3f}" for x in h["simulated"]) + " |",
              "| real | " + " | ".join(f"{x:.3f}" for x in h["real"]) + " |", ""]
    if "llm" in result:
        lines += [f"LLM: {result['llm']['decisions']} decisions, {result['llm']['fallbacks']} fell back to the "
                  "parametric brain.", ""]
    lines.append(f"Took {result['seconds']:.1f} s.")
    return "\n".join(lines) + "\n"


def plots(result: dict, folder: Path) -> dict[str, str]:
    """F1 by ratio (brain and baselines, with intervals) and the rating histograms."""
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    ratios = list(result["ratios"])
    methods = ("brain", "popularity", "genre", "random")
    for key, title in (("per_user", "F1 per user"), ("micro", "F1 (micro)")):
        fig = Figure(figsize=(7, 3.6))
        ax = fig.subplots()
        w = 0.8 / (len(methods) + 1)
        x = np.arange(len(ratios))
        for j, mth in enumerate(methods):
            vals = [result["ratios"][r][mth][key]["f1"] for r in ratios]
            ci = [result["ratios"][r][mth].get(f"{key}_ci", {}).get("f1") for r in ratios]
            err = None
            if all(c is not None for c in ci):
                err = np.array([[v - c[0] for v, c in zip(vals, ci)], [c[1] - v for v, c in zip(vals, ci)]])
            ax.bar(x + (j - len(methods) / 2) * w, vals, w, yerr=err, capsize=2, label=mth)
        if key == "per_user":
            ax.bar(x + (len(methods) - len(methods) / 2) * w, [AGENT4REC_F1.get(r, np.nan) for r in ratios], w,
                   label="Agent4Rec (repr.)", color="0.6")
        ax.set_xticks(x, ratios)
        ax.set_ylabel(title)
        ax.set_xlabel("positives : negatives")
        ax.legend(fontsize=7, ncol=3)
        fig.tight_layout()
        name = f"f1_{key}.png"
        fig.savefig(folder / name, dpi=110)
        made[name] = title
    h = result["ratings"]["histogram"]
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    x = np.asarray(h["stars"])
    ax.bar(x - 0.11, h["real"], 0.22, label="real (held out)")
    ax.bar(x + 0.11, h["simulated"], 0.22, label="simulated")
    ax.set_xticks(x)
    ax.set_xlabel("stars")
    ax.set_ylabel("share of ratings")
    ax.set_title(f"total-variation distance {h['tv_distance']:.3f}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "rating_histogram.png", dpi=110)
    made["rating_histogram.png"] = "rating histogram"
    return made


def write_fidelity(result: dict, out: Path, scenario=None) -> Path:
    """``fidelity.json``, ``fidelity.md``, ``fidelity_users.csv`` and ``plots/`` in ``out``
    (prepared by the caller with ``prepare_out(out, overwrite, "fidelity")``)."""
    import pandas as pd

    out = Path(out)
    per_user = result.get("per_user", [])
    pd.DataFrame(per_user).to_csv(out / "fidelity_users.csv", index=False)
    body = {k: v for k, v in result.items() if k != "per_user"}
    body["plots"] = plots(result, out / "plots")
    try:
        from recworld.simulator.output.provenance import provenance

        body["provenance"] = provenance(scenario)
    except Exception:  # noqa: BLE001 - provenance is a courtesy, never a failure
        pass
    (out / "fidelity.json").write_text(json.dumps(body, indent=2, default=_json_default) + "\n", encoding="utf-8")
    (out / "fidelity.md").write_text(markdown(result), encoding="utf-8")
    if scenario is not None:
        (out / "scenario.yaml").write_text(scenario.to_yaml(), encoding="utf-8")
    return out


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"cannot write {type(v).__name__} as JSON")


# ----------------------------------------------------------------------------- the command


def add_fidelity_arguments(p) -> None:
    """Arguments of ``recworld fidelity``."""
    p.add_argument("scenario", nargs="?", help="scenario YAML (its MovieLens data, brain(s), page size, llm and "
                                               "data.holdout); or give --data")
    p.add_argument("--data", metavar="PATH", help="a MovieLens folder (ml-latest-small layout) instead of a scenario")
    p.add_argument("--brain", help="brain name (default: the scenario's, else parametric)")
    p.add_argument("--ratios", default="1,3,9", help="negatives per positive, comma-separated (default 1,3,9)")
    p.add_argument("--users", type=int, help="evaluate a random sample of this many users (default: all eligible)")
    p.add_argument("--seed", type=int, help="seed (default: the scenario's, else 0)")
    p.add_argument("--like", type=float, default=4.0, help="held-out ratings at or above this are positives (4)")
    p.add_argument("--min-history", type=int, default=5, help="users need this many history ratings (5)")
    p.add_argument("--rate-max", type=int, help=f"held-out items each user rates (default: all; LLM brains "
                                                f"{LLM_RATE_MAX})")
    p.add_argument("--max-positives", type=int,
                   help="keep at most this many held-out positives per user, a random subset (default: all); "
                        "bounds an LLM brain's pages per user")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals (1000)")
    p.add_argument("--session", action="store_true",
                   help="show a user's pages one after another in one session (fatigue applies); default: each "
                        "page opens a fresh session")
    p.add_argument("--out", help="output folder (default: runs/fidelity-NAME-TIMESTAMP)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier fidelity output in --out (only a folder RecWorld wrote)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field, e.g. --set population.brain.no_click_utility=-2 (repeatable)")


def fidelity_scenario(scenario: str | None, data: str | None, brain: str | None, overrides: list[str]):
    """The scenario a fidelity run uses: the file given, or a default one on ``data``."""
    from recworld.simulator.scenario import load_scenario

    if scenario and data:
        raise ValueError("give a scenario or --data, not both (the scenario names its data: data.path)")
    if scenario:
        scn = load_scenario(scenario, list(overrides))
    else:
        raw = {"name": "fidelity", "data": {"source": "movielens", "path": str(Path(data).expanduser()) if data else None}}
        scn = load_scenario(raw, list(overrides))
    if brain:
        scn = load_scenario(scn, [f"population.brain.name={brain}"] + list(overrides))
    return scn


#: ``--brain`` names kept for earlier commands: ``parametric_fitted`` is the parametric brain (fitted by default)
BRAIN_ALIASES: dict[str, str] = {"parametric_fitted": "parametric"}


def cmd_fidelity(args) -> int:
    """``recworld fidelity``: run the protocol and write the output folder; exit code."""
    from recworld.simulator.output.folders import check_out, default_out, discard_if_unused, prepare_out
    from recworld.simulator.scenario import validate_plugins

    brain = BRAIN_ALIASES.get(args.brain, args.brain)
    scn = fidelity_scenario(args.scenario, args.data, brain, args.overrides)
    validate_plugins(scn, args.scenario, data=False)
    try:
        ratios = tuple(int(x) for x in str(args.ratios).split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--ratios takes whole numbers separated by commas, e.g. 1,3,9 (got {args.ratios!r})") from None
    if args.users is not None and args.users < 1:
        raise ValueError("--users must be positive")
    if args.min_history < 1 or args.bootstrap < 0 or (args.rate_max is not None and args.rate_max < 1) \
            or (args.max_positives is not None and args.max_positives < 1):
        raise ValueError("--min-history, --rate-max and --max-positives must be positive, --bootstrap at least 0")
    settings = FidelitySettings(ratios=ratios, like=args.like, page_size=scn.session.page_size, users=args.users,
                                min_history=args.min_history, rate_max=args.rate_max, bootstrap=args.bootstrap,
                                seed=scn.seed if args.seed is None else args.seed, progress=not args.no_progress,
                                session=args.session, max_positives=args.max_positives)
    label = brain or scn.population.brain.name
    out = Path(args.out) if args.out else default_out("fidelity", f"{scn.name}-{label}")
    check_out(out, args.overwrite)
    existed = out.exists()
    out = prepare_out(out, args.overwrite, "fidelity")
    from recworld.simulator.build import needs_llm

    llm = None
    try:
        if needs_llm(scn):
            from recworld.simulator.llm.service import service_from_scenario

            llm = service_from_scenario(scn.llm, log_path=out / "llm_calls.jsonl")
            llm.preflight()
        result = run_fidelity(scn, settings, llm=llm)
    except BaseException:
        if llm is not None:
            llm.close()
        discard_if_unused(out, existed=existed)
        raise
    if llm is not None:
        llm.close()
    write_fidelity(result, out, scn)
    print(markdown(result), end="")
    print(f"written to {out / 'fidelity.json'} (report: {out / 'fidelity.md'})")
    return 0


def __getattr__(name: str):
    if name == "RatingAnswer":
        return _rating_answer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
