"""The parametric brain: a calibrated choice model, no LLM.

Per page the user repeatedly picks from a multinomial logit over the slate plus a no-click
option (utility = taste x genres + conformity-weighted popularity + quality + heard-of
bonus + diversity seeking - position decay; the no-click utility grows with fatigue), then
leaves, searches or goes to the next page.  Ratings are 1-5 around the user's mean, shifted
by item quality and the user's genre affinity.  On MovieLens the weights on taste,
popularity and quality come from the population's calibration (see
``recworld.simulator.data.sources.population_from_ratings``) times the multipliers below.

**The fitted user.**  When the population carries the user model fitted to its rating history
(``recworld.simulator.data.calibration``: ``Population.calibration`` has the ``slate_*`` and
``rating_*`` numbers, ``Population.fitted`` the arrays; worlds on MovieLens fit it by
default), the brain chooses and rates with it: the slate-likelihood weights (times the
multipliers below) plus a collaborative score (user x item factors), the fitted no-click
utility, after-pick step, fatigue, stay chance and picks per page, and ratings drawn on each
user's own star grid (half stars for users who give them) by the fitted rating model.  A
parameter set explicitly (a key in the scenario) wins over its fitted number; ``fitted:
false`` keeps the hand-set model.  Synthetic populations carry no fit: nothing changes there.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from itertools import accumulate
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recworld.simulator.data.catalog import Catalog
from recworld.simulator.data.population import Population
from recworld.simulator.gym.batch import LEAVE, NEXT, SEARCH, BatchSessionBrain, LaneDraws
from recworld.simulator.protocols import (ActivityChoice, Brain, Consumption, Dialogue, PageChoice, Post,
                                          PostDraft, PostReaction, UserState)

FEELINGS = {1: "hated it", 2: "was disappointed", 3: "found it okay", 4: "enjoyed it", 5: "loved it"}
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")


_max = np.maximum.reduce
_count = np.add.reduce          # of a bool array along an axis: how many are true


def _draw(cdf: np.ndarray, rng: np.random.Generator) -> int:
    """Index drawn with probabilities proportional to the increments of an (unnormalised) CDF."""
    return min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)


class ActivityMix(BaseModel):
    model_config = ConfigDict(extra="forbid")
    browse: float = Field(0.70, ge=0)
    search: float = Field(0.12, ge=0)
    chat: float = Field(0.08, ge=0)
    post: float = Field(0.06, ge=0)
    idle: float = Field(0.04, ge=0)

    @model_validator(mode="after")
    def _positive(self):
        if self.browse + self.search + self.chat + self.post + self.idle <= 0:
            raise ValueError("activity weights must not all be zero")
        return self


class ParametricBrain(Brain, BatchSessionBrain):
    name: ClassVar[str] = "parametric"
    oracle: ClassVar[bool] = True          # it knows each user's true click probabilities

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        calibrate: bool = Field(True, description="use weights fitted on the data when it has them")
        fitted: bool = Field(True, description=(
            "choose and rate with the user model fitted to the rating history when the population carries "
            "one (MovieLens worlds fit it unless a brain says fitted: false); false: the hand-set model"))
        taste_weight: float = Field(1.0, ge=0, le=50)
        popularity_weight: float = Field(1.0, ge=-50, le=50)
        quality_weight: float = Field(1.0, ge=-50, le=50)
        position_decay: float = Field(0.3, ge=0, le=10, description="utility lost per log(1+position)")
        no_click_utility: float = Field(1.0, ge=-50, le=50, description=(
            "utility of watching nothing, relative to the user's top-1% item (its 99th-percentile utility)"))
        fatigue: float = Field(0.5, ge=0, le=20, description="no-click utility added per page seen")
        max_watch_per_page: int = Field(2, ge=1, le=200, description=(
            "most items watched from one page (fitted users: the page size unless set)"))
        heard_of_bonus: float = Field(1.5, ge=0, le=50)
        diversity_weight: float = Field(0.5, ge=0, le=20)
        continue_bias: float = Field(1.5, ge=-20, le=20, description="logit of staying after a page")
        search_rate: float = Field(0.1, ge=0, le=1, description="chance a staying user searches instead of paging")
        rating_noise: float = Field(0.6, ge=0, le=5, description="rating noise as a share of the user's rating spread")
        interest_rate: float = Field(0.6, ge=0, le=1)
        repost_rate: float = Field(0.25, ge=0, le=1)
        chat_turns: int = Field(4, ge=2, le=40)
        activity: ActivityMix = Field(default_factory=ActivityMix)

    def __init__(self, params: "ParametricBrain.Params | dict | None" = None, *, catalog: Catalog,
                 population: Population, rng: np.random.Generator | None = None, llm=None):
        super().__init__(params, catalog=catalog, population=population, rng=rng, llm=llm)
        p = self.params
        cal = population.calibration if p.calibrate else {}
        self.b_taste = p.taste_weight * cal.get("choice_taste", 1.0)
        self.b_pop = p.popularity_weight * cal.get("choice_popularity", 2.0)
        self.b_quality = p.quality_weight * cal.get("choice_quality", 1.0)
        self.r_quality = cal.get("rating_quality", 1.0)
        self.r_affinity = cal.get("rating_affinity", 1.0)
        prof = population.profiles
        self.conformity = prof["conformity"].to_numpy(np.float64)
        self.diversity = prof["diversity"].to_numpy(np.float64)
        self.r_mean = prof["rating_mean"].to_numpy(np.float64)
        self.r_std = prof["rating_std"].to_numpy(np.float64)
        self.taste = population.taste.astype(np.float64)
        self.raff = population.rating_affinity.astype(np.float64)
        self.gdist = catalog.genre_dist.astype(np.float64)
        a = p.activity
        w = np.array([a.browse, a.search, a.chat, a.post, a.idle])
        self._mix_cdf = np.cumsum(w / w.sum())
        self._mix_cdf_list = self._mix_cdf.tolist()
        self._mix = ("browse", "search", "chat", "post", "idle")
        self.short_titles = [_YEAR.sub("", t) for t in catalog.titles]
        # hot-path constants: the item-only part of utility, each user's popularity weight,
        # the position penalty per slot
        self._item_base = self.b_quality * catalog.quality
        self._pop = catalog.popularity
        self._user_pop = self.b_pop * (0.5 + self.conformity)
        self._taste_b = self.b_taste * self.taste
        # the choice and rating model's constants: hand-set, or fitted (``_use_fit``)
        self._decay = p.position_decay
        self._fatigue = p.fatigue
        self._after_pick = math.exp(p.fatigue + 1.0)     # a second film on one page is much less likely
        self._max_watch = p.max_watch_per_page
        self._continue = p.continue_bias
        self._pick_stay = 0.8                            # staying logit lost per item watched on the page
        self._uf = self._vf = None                       # collaborative factors (fitted users)
        self._ratings = None                             # the fitted rating model (RatingEmitter)
        self._stay: np.ndarray | None = None             # the batch path's stay chances (_stay_table)
        self.fitted = self._use_fit(p, cal, population.fitted)
        self._position = -self._decay * np.log1p(np.arange(512))
        self.reference = self._reference_utility(rng if rng is not None else np.random.default_rng(0))
        if self.fitted and "no_click_utility" not in p.model_fields_set:
            self._u0 = np.full(len(population), float(cal["slate_no_click"]))
        else:
            self._u0 = self.reference + p.no_click_utility
        # the per-page and per-watch scalars as Python floats (the same numbers, without a numpy
        # scalar per lookup), and the rating model's genre term with its weight applied
        self._u0_l = self._u0.tolist()
        self._user_pop_l = self._user_pop.tolist()
        self._r_mean_l, self._r_std_l = self.r_mean.tolist(), self.r_std.tolist()
        self._quality_l, self._duration_l = catalog.quality.tolist(), catalog.duration.tolist()
        self._raff_g = self.r_affinity * self.gdist

    @classmethod
    def uses_fitted_users(cls, params: ParametricBrain.Params) -> bool:
        """Whether a brain with these parameters chooses and rates with the fitted user model
        (so a world on rating data fits it for them)."""
        return bool(params.calibrate and params.fitted)

    def _use_fit(self, p: ParametricBrain.Params, cal: dict, fitted: dict) -> bool:
        """Take the fitted model's numbers where the population has them; True if it does.
        A parameter set explicitly keeps its value."""
        if not (p.fitted and "slate_no_click" in cal and fitted):
            return False
        from recworld.simulator.data.calibration import RatingEmitter

        given = p.model_fields_set
        self.b_taste = p.taste_weight * cal["slate_taste"]
        self.b_pop = p.popularity_weight * cal["slate_popularity"]
        self.b_quality = p.quality_weight * cal["slate_quality"]
        self._uf = cal["slate_cf"] * fitted["user_factors"].astype(np.float64)
        self._vf = fitted["item_factors"].astype(np.float64)
        self._item_base = self.b_quality * self.catalog.quality
        self._user_pop = self.b_pop * (0.5 + self.conformity)
        self._taste_b = self.b_taste * self.taste
        if "position_decay" not in given:
            self._decay = cal["slate_position_decay"]
        if "fatigue" not in given:
            self._fatigue = cal["slate_fatigue"]
        self._after_pick = math.exp(cal["slate_after_pick"])
        if "max_watch_per_page" not in given:
            self._max_watch = int(cal["slate_max_picks"])
        if "continue_bias" not in given:
            # the fitted chance of staying is per page, whatever was watched on it; an explicit
            # continue_bias brings back the hand-set exit (each item watched lowers the stay logit)
            self._continue = cal["slate_continue"]
            self._pick_stay = 0.0
        if "rating_noise" not in given:
            self._ratings = RatingEmitter(fitted["rating_levels"], fitted["rating_allowed"], fitted["rating_prices"],
                                          cal["rating_temperature"])
            self._item_dev = cal["rating_tilt_item_bias"] * fitted["item_rating_bias"]
            self._raff_dev = cal["rating_tilt_affinity"]
            self._cf_dev = cal["rating_tilt_cf"] / cal["slate_cf"] if cal["slate_cf"] else 0.0
        return True

    def _reference_utility(self, rng: np.random.Generator, n_sample: int = 1000) -> np.ndarray:
        """Per user, the 99th percentile of item utility over a sample of the catalog: the scale
        the no-click option is set against, so one default fits any catalog and calibration."""
        n = len(self.catalog)
        items = rng.choice(n, size=min(n, n_sample), replace=False)
        g = self.gdist[items]
        base = self.b_quality * self.catalog.quality[items]
        pop = self.catalog.popularity[items]
        out = np.empty(len(self.population))
        for lo in range(0, len(out), 2048):
            hi = min(len(out), lo + 2048)
            u = (self.b_taste * (self.taste[lo:hi] @ g.T) + base
                 + self.b_pop * (0.5 + self.conformity[lo:hi, None]) * pop)
            if self._uf is not None:
                u += self._uf[lo:hi] @ self._vf[items].T
            out[lo:hi] = np.quantile(u, 0.99, axis=1)
        return out

    # ------------------------------------------------------------------ the choice model

    def utilities(self, state: UserState, items: np.ndarray) -> np.ndarray:
        """Deterministic utility of each item in slate order (position effect included)."""
        u = state.index
        if type(items) is not np.ndarray or items.dtype != np.int64:
            items = np.asarray(items, dtype=np.int64)
        n = len(items)
        g = self.gdist.take(items, axis=0)
        util = g @ self._taste_b[u] + self._user_pop_l[u] * self._pop.take(items) + self._item_base.take(items)
        if self._uf is not None:
            util += self._vf[items] @ self._uf[u]
        util += self._position[:n] if n <= len(self._position) else self._position_for(n)
        heard, seen = state.heard_of, state.seen
        listed = items.tolist() if heard or seen else ()
        # the bonus and the penalty are added only where some item has them (adding zeros changes nothing)
        if heard and not heard.keys().isdisjoint(listed):
            util += self.params.heard_of_bonus * np.fromiter((i in heard for i in listed), bool, n)
        watched = state.session_watched
        if watched and self.params.diversity_weight:
            # the genres not yet watched this session, kept until the session's list grows
            cached = state.extra.get("_new_genres")
            if cached is None or cached[0] is not watched or cached[1] != len(watched):
                cached = (watched, len(watched), ~(self.gdist[watched].sum(axis=0) > 0))
                state.extra["_new_genres"] = cached
            novelty = g @ cached[2]          # share of the item's genres new in this session
            util += self.params.diversity_weight * self.diversity[u] * novelty
        if seen and not seen.isdisjoint(listed):
            util -= 4.0 * np.fromiter((i in seen for i in listed), bool, n)
        return util

    def no_click_utility(self, state: UserState) -> float:
        return self._u0_l[state.index] + self._fatigue * max(0, state.pages_seen - 1)

    def click_probabilities(self, state: UserState, items: np.ndarray) -> np.ndarray:
        """The true probability that the user's first pick on this page is each item
        (the remainder, ``1 - sum``, is the no-click probability)."""
        util = self.utilities(state, items)
        z = np.concatenate(([self.no_click_utility(state)], util))
        z = np.exp(z - z.max())
        return z[1:] / z.sum()

    def slate_click_probability(self, state: UserState, items: np.ndarray) -> float:
        """True probability that the user picks something from this slate (1 - no-click)."""
        return float(self.click_probabilities(state, items).sum())

    def best_click_probability(self, state: UserState, k: int, allowed: np.ndarray) -> float:
        """The oracle: the highest click probability any slate of ``k`` allowed items can have.
        With a position penalty that grows with the slot, that slate is the ``k`` items of
        highest utility, best first."""
        if len(allowed) == 0:
            return 0.0
        base = self.utilities(state, allowed) - self._position_for(len(allowed))   # undo slot penalties
        top = np.sort(np.partition(base, len(base) - min(k, len(base)))[len(base) - min(k, len(base)):])[::-1]
        util = top + self._position_for(len(top))
        z = np.concatenate(([self.no_click_utility(state)], util))
        z = np.exp(z - z.max())
        return float(z[1:].sum() / z.sum())

    def _position_for(self, n: int) -> np.ndarray:
        return self._position[:n] if n <= len(self._position) else -self._decay * np.log1p(np.arange(n))

    # ------------------------------------------------------------------ decisions

    def choose_activity(self, state: UserState, now: float) -> ActivityChoice:
        cdf = self._mix_cdf_list             # _draw on a list: the same index, without numpy per call
        kind = self._mix[min(bisect_right(cdf, state.rng.random() * cdf[-1]), len(cdf) - 1)]
        if kind == "post" and self.postable_item(state) is None:
            kind = "browse"
        if kind == "browse" and state.heard_of and state.rng.random() < 0.3:
            kind = "search"
        return ActivityChoice(kind)

    def search_query(self, state: UserState, now: float) -> str:
        rng = state.rng
        if state.heard_of and rng.random() < 0.7:
            heard = list(state.heard_of)
            return self.short_titles[heard[int(rng.integers(len(heard)))]]
        t = self.taste[state.index]
        p = np.exp(t - t.max())
        return self.catalog.genre_names[_draw(np.cumsum(p), rng)]

    def choose_from_slate(self, state: UserState, items: np.ndarray, page: int, now: float) -> PageChoice:
        rng = state.rng
        p = self.params
        util = self.utilities(state, items)
        u0 = self.no_click_utility(state)
        top = max(u0, float(_max(util))) if len(util) else u0
        w = np.exp(util - top).tolist()             # choice weights; picked items drop to 0
        w0 = math.exp(u0 - top)
        after_pick = self._after_pick               # each pick makes watching nothing more attractive
        picks: list[int] = []
        while len(picks) < min(self._max_watch, len(w)):
            cdf = list(accumulate(w))               # np.cumsum's running sum, in plain floats
            r = rng.random() * (w0 + cdf[-1])
            if r < w0:
                break
            j = min(bisect_right(cdf, r - w0), len(w) - 1)
            picks.append(j)
            w[j] = 0.0
            w0 *= after_pick
        stay = self._continue - self._fatigue * state.pages_seen - self._pick_stay * len(picks)
        if rng.random() >= 1.0 / (1.0 + math.exp(-stay)):
            return PageChoice(picks, "leave")
        if rng.random() < p.search_rate:
            return PageChoice(picks, "search", self.search_query(state, now))
        return PageChoice(picks, "next")

    def rating_deviation(self, u: int, item: int) -> float:
        """The fitted rating model's predicted deviation of user row ``u`` on ``item`` (item
        bias, genre affinity, collaborative score), which tilts the user's star distribution."""
        return (float(self._item_dev[item]) + self._raff_dev * float(self.gdist[item] @ self.raff[u])
                + self._cf_dev * float(self._vf[item] @ self._uf[u]))

    def expected_rating(self, state: UserState, item: int) -> float:
        u = state.index
        if self._ratings is not None:
            return self._ratings.expected(u, self.rating_deviation(u, item))
        return self._r_mean_l[u] + self.r_quality * self._quality_l[item] + float(self._raff_g[item] @ self.raff[u])

    def consume(self, state: UserState, item: int, now: float) -> Consumption:
        rng = state.rng
        if self._ratings is not None:
            rating = self._ratings.emit(state.index, self.rating_deviation(state.index, item), rng.random())
        else:
            noisy = self.expected_rating(state, item) + rng.normal(0, self.params.rating_noise * self._r_std_l[state.index])
            rating = float(min(max(round(float(noisy)), 1), 5))     # np.clip(np.rint(noisy), 1, 5): halves to even
        share = 1.0 if rating >= 3 else float(rng.uniform(0.15, 0.7))     # disliked items are abandoned
        return Consumption(self._duration_l[item] * share, rating, FEELINGS[max(1, int(rating))])

    # ------------------------------------------------------------------ many users at once

    # The vectorised Session env's path: the same numbers as ``choose_from_slate`` and ``consume``
    # (the same numpy operations, element by element), the same draws in the same order per user.

    def max_picks(self, slate_size: int) -> int:
        return min(self._max_watch, slate_size)

    def choose_batch(self, users: np.ndarray, items: np.ndarray, pages_seen: np.ndarray,
                     session_genres: np.ndarray, watched_any: np.ndarray, draws: LaneDraws):
        p = self.params
        n, S = items.shape
        g = self.gdist[items]
        util = (np.matmul(g, self._taste_b[users][:, :, None])[:, :, 0]
                + self._user_pop[users][:, None] * self._pop[items] + self._item_base[items])
        if self._uf is not None:
            util += np.matmul(self._vf[items], self._uf[users][:, :, None])[:, :, 0]
        util += self._position_for(S)
        if p.diversity_weight and watched_any.any():
            # rows that watched something this session (all of them, most steps of a long episode)
            rows = slice(None) if watched_any.all() else watched_any.nonzero()[0]
            novelty = np.matmul(g[rows], ~session_genres[rows][:, :, None])[:, :, 0]
            util[rows] += (p.diversity_weight * self.diversity[users[rows]])[:, None] * novelty
        u0 = self._u0[users] + self._fatigue * np.maximum(0, pages_seen - 1)
        top = np.maximum(u0, _max(util, axis=1))
        w = np.exp(util - top[:, None])
        w0 = np.array(list(map(math.exp, (u0 - top).tolist())))
        after_pick = self._after_pick
        W = self.max_picks(S)
        picks = np.full((n, W), -1, dtype=np.int64)
        active = None                                 # None: every row (no copy of w on the first round)
        for k in range(W):
            wa, w0a = (w, w0) if active is None else (w[active], w0[active])
            cdf = wa.cumsum(axis=1)
            r = draws.random(np.arange(n) if active is None else active) * (w0a + cdf[:, -1])
            go = (r >= w0a).nonzero()[0]
            active = go if active is None else active[go]
            if not len(active):
                break
            j = np.minimum(_count(cdf[go] <= (r[go] - w0a[go])[:, None], axis=1), S - 1)
            picks[active, k] = j
            w[active, j] = 0.0
            w0[active] *= after_pick
        n_picks = _count(picks >= 0, axis=1)
        p_stay = self._stay_table(int(_max(pages_seen)), W)[pages_seen, n_picks]
        nxt = np.full(n, LEAVE, dtype=np.int64)
        staying = (draws.random(np.arange(n)) < p_stay).nonzero()[0]
        if len(staying):
            search = draws.random(staying) < p.search_rate
            nxt[staying] = np.where(search, SEARCH, NEXT)
            if search.any():            # search_query's draw (nobody has heard of an item here)
                draws.random(staying[search])
        return picks, nxt

    def _stay_table(self, max_pages: int, W: int) -> np.ndarray:
        """choose_from_slate's stay chance (its math.exp numbers) for every (pages seen, picks)
        up to ``max_pages`` and ``W`` picks, made once and grown when a session gets longer."""
        table = self._stay
        if table is None or table.shape[0] <= max_pages or table.shape[1] <= W:
            rows, cols = max(max_pages + 1, 64), W + 1
            table = np.array([[1.0 / (1.0 + math.exp(-(self._continue - self._fatigue * pages - self._pick_stay * k)))
                               for k in range(cols)] for pages in range(rows)])
            self._stay = table
        return table

    def consume_batch(self, users: np.ndarray, items: np.ndarray, draws: LaneDraws):
        n = len(users)
        if self._ratings is not None:
            # the fitted rating model, one rating at a time (consume's numbers exactly; few items a step)
            u01 = draws.random(np.arange(n)).tolist()
            rating = np.array([self._ratings.emit(u, self.rating_deviation(u, i), d)
                               for u, i, d in zip(users.tolist(), items.tolist(), u01)])
        else:
            rating = self._hand_set_ratings(users, items, draws)
        minutes = self.catalog.duration[items].astype(np.float64, copy=False)     # a copy (fancy indexing)
        low = (rating < 3).nonzero()[0]
        if len(low):               # disliked items are abandoned part way
            minutes[low] *= draws.uniform(low, 0.15, 0.7)
        return rating, minutes

    def _hand_set_ratings(self, users: np.ndarray, items: np.ndarray, draws: LaneDraws) -> np.ndarray:
        n = len(users)
        expected = (self.r_mean[users] + self.r_quality * self.catalog.quality[items]
                    + np.matmul((self.r_affinity * self.gdist[items])[:, None, :], self.raff[users][:, :, None])[:, 0, 0])
        noisy = expected + draws.normal(np.arange(n), self.params.rating_noise * self.r_std[users])
        return np.minimum(np.maximum(np.rint(noisy), 1), 5)      # np.clip without its wrapper

    def liked(self, state: UserState) -> list[tuple[int, float]]:
        """Items the user liked in this run, most recent first."""
        return [(i, r) for i, r in reversed(state.watched) if r >= 4]

    def favourites(self, state: UserState) -> list[tuple[int, float]]:
        """Liked items of this run, then the best-rated items from before the run."""
        fav = self.liked(state)
        items, ratings = self.population.history[state.index], self.population.history_ratings[state.index]
        if len(ratings):
            top = np.argsort(-ratings, kind="stable")[:5]
            fav += [(int(items[j]), float(ratings[j])) for j in top if ratings[j] >= 4]
        return fav

    def postable_item(self, state: UserState) -> int | None:
        posted = state.extra.setdefault("posted", set())
        for i, _ in self.liked(state):
            if i not in posted:
                return i
        return None

    def chat(self, state: UserState, partner: UserState, now: float) -> Dialogue:
        lines: list[tuple[int, str]] = []
        mentioned: dict[int, int] = {}
        speakers = (state, partner)
        offers = [self.favourites(s) for s in speakers]
        for turn in range(self.params.chat_turns):
            s = speakers[turn % 2]
            liked = offers[turn % 2]
            if liked:
                item, r = liked.pop(0)
                mentioned.setdefault(item, s.index)
                lines.append((s.user_id, f"I watched {self.catalog.titles[item]} and gave it {r:g}/5, you should see it."))
            elif turn < 2:
                lines.append((s.user_id, "I haven't seen anything great lately. Any tips?"))
            else:
                lines.append((s.user_id, "Thanks, I'll look for it."))
        return Dialogue(lines, mentioned)

    def write_post(self, state: UserState, now: float) -> PostDraft | None:
        item = self.postable_item(state)
        if item is None:
            return None
        state.extra["posted"].add(item)
        rating = next(r for i, r in reversed(state.watched) if i == item)
        return PostDraft(item, f"Just watched {self.catalog.titles[item]}: {FEELINGS[int(rating)]} ({rating:g}/5).")

    def read_post(self, state: UserState, post: Post, now: float) -> PostReaction:
        rng = state.rng
        affinity = float(self.gdist[post.item] @ self.taste[state.index])
        p_interest = self.params.interest_rate / (1 + np.exp(-affinity))
        interested = bool(rng.random() < 2 * p_interest * (0.5 + self.conformity[state.index]) / 2)
        repost = interested and bool(rng.random() < self.params.repost_rate * self.conformity[state.index])
        return PostReaction(interested, repost)
