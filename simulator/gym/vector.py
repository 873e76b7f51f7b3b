"""``recworld/Session-v0`` natively vectorised: N users stepped at once in numpy.

    envs = gymnasium.make_vec("recworld/Session-v0", num_envs=64, vectorization_mode="vector_entry_point",
                              scenario="scenarios/rl_session.yaml")

Same observations, actions, rewards and episode ends as the single env (``SessionEnv``), for
a batch of sub-envs: observations are the single env's with a leading ``num_envs`` axis.
The brain's choice model runs on arrays (``BatchSessionBrain``; the parametric brain has it).

Random streams (``rng``):

- ``"shared"`` (default): one generator for the whole batch, seeded by ``reset(seed=s)`` like
  the single env's.  Each stage of a step draws for all sub-envs at once.  With
  ``num_envs=1`` it gives the single env's trajectory for the same seed exactly; with more,
  the same dynamics from a different interleaving of one stream.
- ``"per_env"``: one generator per sub-env, seeded ``s, s+1, ...`` (or a list of seeds), as
  ``SyncVectorEnv`` seeds its copies.  Trajectories are exactly those of ``SyncVectorEnv``
  over ``Session-v0`` with the same seeds (and of ``recworld train``'s SB3 ``DummyVecEnv``);
  it is slower, since each sub-env draws on its own.

Autoreset (gymnasium 1.x, ``autoreset_mode``): ``NEXT_STEP`` (default, as ``SyncVectorEnv``:
the step after an episode ends resets that sub-env, ignores its action and returns reward 0),
``SAME_STEP`` (the ending step returns the next episode's first observation; the final one is
in ``info["final_obs"]`` and its info in ``info["final_info"]``) or ``DISABLED`` (reset ended
sub-envs yourself with ``reset(options={"reset_mask": mask})``).

Infos are arrays over sub-envs with a ``_key`` mask (gymnasium's vector convention):
``user_id``; after a step also ``clicks``, ``watch_minutes``, ``slate`` (``(N, S)`` item
indices) and ``clicked`` (``(N, W)`` slate positions in pick order, -1 = none).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recworld.simulator.gym.batch import LEAVE, BatchSessionBrain
from recworld.simulator.gym.features import slate_from_action

RNG_MODES = ("shared", "per_env")


class _SharedDraws:
    """All sub-envs draw from one generator, batch by batch."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def random(self, rows):
        return self.rng.random(len(rows)) if len(rows) else np.empty(0)

    def normal(self, rows, scale):
        return self.rng.normal(0.0, scale) if len(rows) else np.empty(0)

    def uniform(self, rows, low, high):
        return self.rng.uniform(low, high, size=len(rows)) if len(rows) else np.empty(0)

    def integers(self, lanes, high: int, size: int | None):
        if not len(lanes):
            return np.empty((0,) if size is None else (0, size), dtype=np.int64)
        return self.rng.integers(0, high, size=len(lanes) if size is None else (len(lanes), size))

    def generator(self, lane: int) -> np.random.Generator:
        return self.rng


class _LaneDraws:
    """Each sub-env draws from its own generator (``lanes`` maps the batch's rows to sub-envs)."""

    def __init__(self, gens: list, lanes: np.ndarray):
        self.gens, self.lanes = gens, lanes

    def _each(self, rows):
        lanes = self.lanes
        return [self.gens[lanes[r]] for r in rows.tolist()]

    def random(self, rows):
        return np.array([g.random() for g in self._each(rows)], dtype=np.float64)

    def normal(self, rows, scale):
        return np.array([g.normal(0, s) for g, s in zip(self._each(rows), np.asarray(scale).tolist())], dtype=np.float64)

    def uniform(self, rows, low, high):
        return np.array([g.uniform(low, high) for g in self._each(rows)], dtype=np.float64)

    def integers(self, lanes, high: int, size: int | None):
        if size is None:
            return np.array([int(self.gens[i].integers(high)) for i in lanes.tolist()], dtype=np.int64)
        out = np.empty((len(lanes), size), dtype=np.int64)
        for row, i in enumerate(lanes.tolist()):
            out[row] = self.gens[i].integers(0, high, size=size)
        return out

    def generator(self, lane: int) -> np.random.Generator:
        return self.gens[lane]


class SessionVectorEnv(VectorEnv):
    """``recworld/Session-v0`` for ``num_envs`` users at once; see the module docstring."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, scenario=None, overrides: list[str] | None = None, flatten: bool = False,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, rng: str = "shared",
                 render_mode: str | None = None):
        from recworld.simulator.gym.envs import SessionEnv

        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        if rng not in RNG_MODES:
            raise ValueError(f"rng must be one of {RNG_MODES}, got {rng!r}")
        if render_mode is not None:
            raise ValueError("the vectorised Session env does not render; use vectorization_mode='sync' for that")
        self.single = single = SessionEnv(scenario, overrides, flatten)
        brain = single.brain
        if not isinstance(brain, BatchSessionBrain) or not brain.batch_consistent():
            raise ValueError(f"brain {brain.name!r} cannot decide for many users at once (it does not implement "
                             "BatchSessionBrain); use vectorization_mode='sync' or 'async'")
        self.brain = brain
        self.num_envs = N = int(num_envs)
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = dict(self.metadata, autoreset_mode=self.autoreset_mode)
        self.render_mode = None
        self.rng_mode = rng
        self.scenario, self.parts = single.scenario, single.parts
        self.flatten = flatten
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(self.single_observation_space, N)
        self.action_space = batch_space(self.single_action_space, N)
        self._dict_space = single._dict_space
        self.C, self.S, self.horizon, self.think = single.C, single.S, single.horizon, single.think
        self.reward_kind = self.scenario.env.reward
        self.W = brain.max_picks(self.S)

        f = single.featurizer
        self._f = f
        self.G, self.H = f.G, f.H
        self._gdist_pad = np.vstack([f.gdist, np.zeros((1, self.G), dtype=np.float32)])   # row n = no item
        # an item's observation row with its user-dependent columns zero, and the users' tastes
        self._item_obs = np.zeros((len(f.item_static), f.item_dim), dtype=np.float32)
        self._item_obs[:, : self.G + 2] = f.item_static
        self._user_taste = np.ascontiguousarray(f.user_static[:, : self.G])
        pop, cat = self.parts.population, self.parts.catalog
        self.n_items, self.n_users = len(cat), len(pop)
        # prior histories as one flat array (CSR) and each user's last H items (n = none)
        hist = pop.history
        self._h_len = np.array([len(h) for h in hist], dtype=np.int64)
        self._h_off = np.concatenate([[0], np.cumsum(self._h_len)])
        self._h_flat = np.concatenate([np.asarray(h, dtype=np.int64) for h in hist]) if len(hist) else np.zeros(0, np.int64)
        self._last_h = np.full((self.n_users, self.H), self.n_items, dtype=np.int64)
        for u, h in enumerate(hist):
            k = min(self.H, len(h))
            if k:
                self._last_h[u, self.H - k:] = h[len(h) - k:]
        self._history = hist
        self._h_distinct = np.array([len(np.unique(h)) for h in hist], dtype=np.int64)
        self._genre_on = cat.genre_dist > 0

        self._gens: list = [None] * N                    # per_env: one generator per sub-env
        self._shared: _SharedDraws | None = None        # shared: the draws of the current generator
        self._all = np.arange(N)
        self.users = np.zeros(N, dtype=np.int64)
        self.user_ids = np.zeros(N, dtype=np.int64)
        self.t = np.zeros(N, dtype=np.int64)             # pages seen this episode
        self.clock = np.zeros(N)                         # simulated minutes into the session
        self.candidates = np.zeros((N, self.C), dtype=np.int64)
        self._seen = np.zeros((N, self.n_items), dtype=bool)
        self._watched: list[list[int]] = [[] for _ in range(N)]         # items watched this episode
        self._n_seen = np.zeros(N, dtype=np.int64)                      # distinct items in _seen's row
        self._session_genres = np.zeros((N, self.G), dtype=bool)
        self._watched_any = np.zeros(N, dtype=bool)
        self._recent = np.full((N, self.H), self.n_items, dtype=np.int64)   # last H watched (n = empty)
        self._ended = np.zeros(N, dtype=bool)
        self._started = False

    # ------------------------------------------------------------------ randomness

    def _draws(self, lanes: np.ndarray):
        if self.rng_mode == "shared":
            rng = self.np_random
            if self._shared is None or self._shared.rng is not rng:
                self._shared = _SharedDraws(rng)
            return self._shared
        return _LaneDraws(self._gens, lanes)

    def _seed(self, seed) -> None:
        N = self.num_envs
        if self.rng_mode == "shared":
            if isinstance(seed, (list, tuple, np.ndarray)):
                seed = [int(s) for s in seed]
            if seed is not None or self._np_random is None:
                self._np_random, self._np_random_seed = (seeding.np_random(seed) if not isinstance(seed, list)
                                                         else (np.random.default_rng(seed), None))
            return
        if seed is None:
            seeds = [None] * N
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(N)]
        else:
            seeds = list(seed)
            if len(seeds) != N:
                raise ValueError(f"a list of seeds needs one per sub-env ({N}), got {len(seeds)}")
        for i, s in enumerate(seeds):
            if s is not None or self._gens[i] is None:
                self._gens[i] = seeding.np_random(s)[0]

    # ------------------------------------------------------------------ reset

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) "
                                 "with at least one True")
            if not self._started:
                raise RuntimeError("call reset() without a reset_mask first")
            lanes = np.flatnonzero(mask)
        else:
            lanes = np.arange(self.num_envs)
        self._seed(seed)
        self._reset_lanes(lanes, options.get("user"))
        self._started = True
        obs = self._observe()
        info = {"user_id": self.user_ids.copy(), "_user_id": np.zeros(self.num_envs, dtype=bool)}
        info["_user_id"][lanes] = True
        return obs, info

    def _reset_lanes(self, lanes: np.ndarray, user=None, draw: bool = True) -> None:
        pop = self.parts.population
        if user is not None:
            users = np.broadcast_to(np.asarray(user, dtype=np.int64), (self.num_envs,))[lanes]
            if users.min() < 0 or users.max() >= self.n_users:
                raise ValueError(f"options['user'] must be user indices in 0..{self.n_users - 1}, got {user}")
        else:
            users = self._draws(lanes).integers(lanes, self.n_users, None)
        seen = self._seen
        if self._started:            # forget the previous users' items
            old = self.users[lanes]
            rows, cols = self._history_of(lanes, old)
            seen[rows, cols] = False
            for i in lanes.tolist():
                if self._watched[i]:
                    seen[i, self._watched[i]] = False
                    self._watched[i] = []
        rows, cols = self._history_of(lanes, users)
        seen[rows, cols] = True
        if self.H:
            self._recent[lanes] = self._last_h[users]
        self.users[lanes] = users
        self._n_seen[lanes] = self._h_distinct[users]
        self.user_ids[lanes] = pop.ids[users]
        self.t[lanes] = 0
        self.clock[lanes] = 0.0
        self._session_genres[lanes] = False
        self._watched_any[lanes] = False
        self._ended[lanes] = False
        if draw:
            self._draw_candidates(lanes)

    def _history_of(self, lanes: np.ndarray, users: np.ndarray):
        """(sub-env, item) pairs of the users' prior histories."""
        lens = self._h_len[users]
        total = int(lens.sum())
        rows = np.repeat(lanes, lens)
        starts = np.repeat(self._h_off[users] - (np.cumsum(lens) - lens), lens)
        return rows, self._h_flat[starts + np.arange(total)]

    def _draw_candidates(self, lanes: np.ndarray) -> None:
        """``sample_candidates`` for each sub-env in ``lanes``: C distinct unseen items."""
        if not len(lanes):
            return
        draws = self._draws(lanes)
        drawn = draws.integers(lanes, self.n_items, self.C)
        s = np.sort(drawn, axis=1)
        bad = (s[:, 1:] == s[:, :-1]).any(axis=1) | self._seen[lanes[:, None], drawn].any(axis=1)
        if bad.any():
            rows = bad.nonzero()[0]
            drawn[rows] = self._fill(lanes[rows], draws)
        self.candidates[lanes] = drawn

    #: from this many colliding sub-envs on, their first refill round is checked for all at once
    FILL_TOGETHER = 8

    def _fill(self, lanes: np.ndarray, draws) -> np.ndarray:
        """``sample_candidates``'s refill after a colliding first draw (as the single env does it)
        for each sub-env in ``lanes``, in order, with the seen mask in place of the seen set."""
        for i in lanes.tolist():
            if self.n_items - int(self._n_seen[i]) < self.C:
                raise ValueError(f"the catalog has too few unseen items ({self.n_items - int(self._n_seen[i])}) "
                                 f"for {self.C} candidates")
        if len(lanes) >= self.FILL_TOGETHER:
            return self._fill_together(lanes, draws)
        return np.array([self._fill_lane(i, draws.generator(i)) for i in lanes.tolist()], dtype=np.int64)

    def _fill_lane(self, i: int, rng: np.random.Generator, got: list[int] | None = None) -> list[int]:
        """Rounds of 2 (C - taken) + 4 draws until C distinct unseen items are taken (after ``got``)."""
        C, seen = self.C, self._seen[i]
        got = [] if got is None else got
        while len(got) < C:         # unseen draws in order, each item once (dict keys keep the first)
            drawn = rng.integers(0, self.n_items, size=2 * (C - len(got)) + 4)
            fresh = drawn[~seen[drawn]].tolist()
            got = list(dict.fromkeys(got + fresh))[:C]
        return got

    def _fill_together(self, lanes: np.ndarray, draws) -> np.ndarray:
        """``_fill_lane`` for many sub-envs: their first rounds drawn, then checked in numpy."""
        C, L, n = self.C, 2 * self.C + 4, len(lanes)
        shared = self.rng_mode == "shared"
        if shared:
            state = self.np_random.bit_generator.state
        drawn = draws.integers(lanes, self.n_items, L)        # = each sub-env's first round, in order
        # first occurrence of each value in its row: sort (item, position) keys, keep each item's first
        keys = np.sort(drawn * L + np.arange(L), axis=1)
        item, pos = np.divmod(keys, L)
        first = np.empty(drawn.shape, dtype=bool)
        np.put_along_axis(first, pos, np.concatenate([np.ones((n, 1), dtype=bool), item[:, 1:] != item[:, :-1]],
                                                     axis=1), axis=1)
        valid = first & ~self._seen[lanes[:, None], drawn]
        taken = np.cumsum(valid, axis=1)
        enough = taken[:, -1] >= C
        if shared and not enough.all():      # a second round comes before the next sub-env's first: replay
            self.np_random.bit_generator.state = state
            return np.array([self._fill_lane(i, self.np_random) for i in lanes.tolist()], dtype=np.int64)
        out = np.empty((n, C), dtype=np.int64)
        ok = np.flatnonzero(enough)
        keep = valid[ok] & (taken[ok] <= C)                   # the first C valid draws of each row, in order
        out[ok] = drawn[ok][keep].reshape(len(ok), C)
        for row in np.flatnonzero(~enough).tolist():
            i = int(lanes[row])
            out[row] = self._fill_lane(i, draws.generator(i), drawn[row][valid[row]].tolist())
        return out

    # ------------------------------------------------------------------ step

    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        N = self.num_envs
        actions = np.asarray(actions)
        if actions.shape != (N, self.S):
            raise ValueError(f"actions must have shape ({N}, {self.S}), got {actions.shape}")
        rewards = np.zeros(N)
        terminated = np.zeros(N, dtype=bool)
        truncated = np.zeros(N, dtype=bool)
        stepped = None                           # every sub-env steps unless some ended
        if self._ended.any():
            if self.autoreset_mode == AutoresetMode.NEXT_STEP:
                stepped = ~self._ended
                # new users now, their candidates with the stepped sub-envs' below
                self._reset_lanes(np.flatnonzero(self._ended), draw=False)
            elif self.autoreset_mode == AutoresetMode.DISABLED:
                raise RuntimeError("sub-envs " + str(np.flatnonzero(self._ended).tolist()) + " have ended: reset them "
                                   "with reset(options={'reset_mask': mask}) (autoreset_mode is DISABLED)")
        lanes = self._all if stepped is None else stepped.nonzero()[0]
        info: dict[str, Any] = {}
        if len(lanes):
            self._step_lanes(lanes, actions[lanes], rewards, terminated, truncated, info)
        self._draw_candidates(self._all)
        done = terminated | truncated
        self._ended = done.copy()
        obs = self._observe()
        info["user_id"] = self.user_ids.copy()
        info["_user_id"] = np.ones(N, dtype=bool)
        if self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            ended = np.flatnonzero(done)
            final_obs = np.full(N, None, dtype=object)
            for i in ended.tolist():
                final_obs[i] = self._take(obs, i)
            final_info = {k: v.copy() for k, v in info.items()}
            for k in list(final_info):
                if k.startswith("_"):
                    final_info[k] = final_info[k] & done
            self._reset_lanes(ended)
            self._ended[ended] = False
            fresh = self._observe(ended)
            self._put(obs, ended, fresh)
            info["user_id"] = self.user_ids.copy()
            for k in info:
                if k.startswith("_") and k != "_user_id":
                    info[k] = info[k] & ~done
            info["final_obs"], info["_final_obs"] = final_obs, done.copy()
            info["final_info"], info["_final_info"] = final_info, done.copy()
        return obs, rewards, terminated, truncated, info

    def _step_lanes(self, lanes, actions, rewards, terminated, truncated, info) -> None:
        N, C, S, W = self.num_envs, self.C, self.S, self.W
        n = len(lanes)
        acts = actions.astype(np.int64, copy=False).reshape(n, S)
        srt = np.sort(acts, axis=1)
        repeats = srt[:, 1:] == srt[:, :-1]
        if srt[:, 0].min() >= 0 and srt[:, -1].max() < C and not repeats.any():
            pos = acts                                   # every slate is S distinct candidates
        else:
            fine = (srt[:, 0] >= 0) & (srt[:, -1] < C) & ~repeats.any(axis=1)
            pos = acts.copy()
            for row in (~fine).nonzero()[0].tolist():
                pos[row] = slate_from_action(acts[row], C)
        items = self.candidates[lanes[:, None], pos]
        users = self.users[lanes]
        pages = self.t[lanes] + 1
        draws = self._draws(lanes)
        picks, nxt = self.brain.choose_batch(users, items, pages, self._session_genres[lanes],
                                             self._watched_any[lanes], draws)
        clicks = np.zeros(n, dtype=np.int64)
        minutes = np.zeros(n)
        ratings = np.zeros(n)
        for k in range(picks.shape[1]):
            rows = (picks[:, k] >= 0).nonzero()[0]
            if not len(rows):
                break
            item = items[rows, picks[rows, k]]
            sub = self._draws(lanes[rows]) if self.rng_mode == "per_env" else draws
            r, m = self.brain.consume_batch(users[rows], item, sub)
            clicks[rows] += 1
            minutes[rows] += m
            ratings[rows] += r
            sub_lanes = lanes[rows]
            self._seen[sub_lanes, item] = True
            for i, it in zip(sub_lanes.tolist(), item.tolist()):
                self._watched[i].append(it)
            self._session_genres[sub_lanes] |= self._genre_on[item]
            self._watched_any[sub_lanes] = True
            self._n_seen[sub_lanes] += 1                   # a watched item was unseen
            if self.H:
                rec = self._recent[sub_lanes]
                rec[:, :-1] = rec[:, 1:]
                rec[:, -1] = item
                self._recent[sub_lanes] = rec
        self.clock[lanes] += self.think + minutes
        self.t[lanes] = pages
        kind = self.reward_kind
        rewards[lanes] = clicks if kind == "click" else minutes if kind == "watch_minutes" else ratings
        term = nxt == LEAVE
        terminated[lanes] = term
        truncated[lanes] = ~term & (pages >= self.horizon)
        if n == N:
            mask, slate, clicked, c, mins = np.ones(N, dtype=bool), items, picks, clicks, minutes
        else:
            mask = np.zeros(N, dtype=bool)
            mask[lanes] = True
            slate = np.zeros((N, S), dtype=np.int64)
            slate[lanes] = items
            clicked = np.full((N, W), -1, dtype=np.int64)
            clicked[lanes] = picks
            c = np.zeros(N, dtype=np.int64)
            c[lanes] = clicks
            mins = np.zeros(N)
            mins[lanes] = minutes
        info.update(clicks=c, _clicks=mask, watch_minutes=mins, _watch_minutes=mask.copy(), slate=slate,
                    _slate=mask.copy(), clicked=clicked, _clicked=mask.copy())

    # ------------------------------------------------------------------ observations

    def _observe(self, lanes: np.ndarray | None = None):
        """The single env's observation for each sub-env (or for ``lanes``), batched."""
        users = self.users if lanes is None else self.users[lanes]
        t = self.t if lanes is None else self.t[lanes]
        cands = self.candidates if lanes is None else self.candidates[lanes]
        f, G = self._f, self.G
        n = len(users)
        user = np.empty((n, f.user_dim), dtype=np.float32)
        user[:, :-1] = f.user_static[users]
        user[:, -1] = np.minimum(t / 10.0, 1.0)
        cand = self._item_obs[cands]           # the static columns, then the affinity column in place
        np.matmul(cand[:, :, :G], self._user_taste[users][:, :, None], out=cand[:, :, G + 2:G + 3])
        if self.H:
            hist = self._gdist_pad[self._recent if lanes is None else self._recent[lanes]]
        else:
            hist = np.zeros((n, 1, G), dtype=np.float32)
        obs = {"user": user, "candidates": cand, "history": hist}
        if self.flatten:
            return np.concatenate([obs[k].reshape(n, -1) for k in self._dict_space.spaces], axis=1)
        return {k: obs[k] for k in self._dict_space.spaces}

    def _take(self, obs, i: int):
        if self.flatten:
            return obs[i].copy()
        return {k: v[i].copy() for k, v in obs.items()}

    def _put(self, obs, lanes, fresh) -> None:
        if self.flatten:
            obs[lanes] = fresh
        else:
            for k in obs:
                obs[k][lanes] = fresh[k]

    def close_extras(self, **kwargs) -> None:
        self.single.close()


def make_session_vector_env(num_envs: int = 1, **kwargs) -> SessionVectorEnv:
    """The vector entry point of ``recworld/Session-v0`` (``gymnasium.make_vec``)."""
    return SessionVectorEnv(num_envs=num_envs, **kwargs)


__all__ = ["RNG_MODES", "SessionVectorEnv", "make_session_vector_env"]
