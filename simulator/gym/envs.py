"""Gymnasium environments over the simulated users.

``recworld/Session-v0``: one user per episode (RecSim-like).  Each step the policy fills a
slate from C candidate items; the user's brain picks (or not) and then leaves
(``terminated``) or looks at the next page; ``truncated`` after ``env.horizon`` pages.

``recworld/World-v0``: the whole multi-user discrete-event world.  Each step answers the
next slate request of any user (browse page or search); the episode is the scenario's
``duration_days`` and ends ``truncated``.

Both take ``scenario`` (a path, dict or Scenario; default: the built-in defaults) and
``overrides`` (``["env.reward=rating", ...]``), and ``flatten=True`` for a flat Box
observation.  Observation (Dict, float32 in [-1, 1]): ``user`` (taste per genre, traits,
fatigue), ``candidates`` (C x F: genres, popularity, quality, taste affinity, heard-of),
``history`` (genres of the last watched items).  Action: ``MultiDiscrete([C] * S)``,
positions into the candidates; see ``simulator.features.slate_from_action`` for
duplicates.  Reward per ``env.reward``: clicks, minutes watched or the sum of ratings.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recworld.simulator.gym.features import Featurizer, sample_candidates, slate_from_action

IDS = ("recworld/Session-v0", "recworld/World-v0")     # registered by ``import recworld``


class _Base(gym.Env):
    metadata = {"render_modes": ["ansi"], "render_fps": 4}
    #: simulated minutes of the current step as a recommender acting as a policy sees them
    #: (Session-v0 advances it through the session; World-v0 leaves it at 0)
    clock: float = 0.0

    def __init__(self, scenario=None, overrides: list[str] | None = None, flatten: bool = False,
                 render_mode: str | None = None):
        from recworld.simulator.build import build_parts, make_brain
        from recworld.simulator.scenario import Scenario, load_scenario, validate_plugins

        scn = load_scenario(scenario if scenario is not None else Scenario(), overrides)
        validate_plugins(scn)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.scenario = scn
        self.parts = build_parts(scn)
        self.brain = make_brain(scn, self.parts)
        cfg = scn.env
        self.C, self.S = cfg.candidates, cfg.slate_size
        self.featurizer = Featurizer(self.parts.catalog, self.parts.population, self.C, cfg.history)
        self._dict_space = self.featurizer.space()
        self.flatten = flatten
        self.observation_space = spaces.flatten_space(self._dict_space) if flatten else self._dict_space
        self.action_space = spaces.MultiDiscrete([self.C] * self.S)
        self.candidates = np.empty(0, dtype=np.int64)     # item indices behind the current observation
        self.user = None                                   # the UserState being served
        self._last: dict[str, Any] = {}

    def _obs(self):
        obs = self.featurizer.observe(self.user, self.candidates)
        return spaces.flatten(self._dict_space, obs).astype(np.float32) if self.flatten else obs

    def _reward(self, ratings, minutes) -> float:
        kind = self.scenario.env.reward
        if kind == "click":
            return float(len(ratings))
        if kind == "watch_minutes":
            return float(sum(minutes))
        return float(sum(ratings))

    def slate_items(self, action) -> np.ndarray:
        """Item indices (catalog rows) the action puts on the slate."""
        return self.candidates[slate_from_action(action, self.C)]

    def render(self):
        """ansi: one line on the last step (who was served, what they watched, the reward)."""
        if self.render_mode != "ansi":
            return None
        if not self._last:
            return "no step yet"
        titles = self.parts.catalog.titles
        picked = ", ".join(titles[i] for i in self._last.get("watched", [])) or "nothing"
        return f"user {self._last['user_id']}: slate of {self.S}, watched {picked}; reward {self._last['reward']:g}"


class SessionEnv(_Base):
    """One user's browsing session per episode; see the module docstring."""

    def __init__(self, scenario=None, overrides=None, flatten: bool = False, render_mode: str | None = None):
        super().__init__(scenario, overrides, flatten, render_mode)
        self.horizon = self.scenario.env.horizon
        self.think = self.scenario.session.think_minutes

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        from recworld.simulator.protocols import UserState

        super().reset(seed=seed)
        pop = self.parts.population
        u = int(options["user"]) if options and "user" in options else int(self.np_random.integers(len(pop)))
        if not 0 <= u < len(pop):
            raise ValueError(f"options['user'] must be a user index in 0..{len(pop) - 1}, got {u}")
        # the user's decisions draw from the env's own generator: one stream, seeded by reset(seed)
        self.user = UserState(u, int(pop.ids[u]), self.np_random, seen=set(pop.history[u].tolist()))
        self.t, self.clock = 0, 0.0
        self.candidates = self._draw()
        return self._obs(), {"user_id": self.user.user_id}

    def _draw(self) -> np.ndarray:
        return sample_candidates(self.np_random, len(self.parts.catalog), self.user.seen, self.C)

    def step(self, action):
        if self.user is None:
            raise RuntimeError("call reset() before step()")
        st, brain = self.user, self.brain
        items = self.slate_items(action)
        st.pages_seen += 1
        choice = brain.choose_from_slate(st, items, self.t, self.clock)
        watched = [int(items[p]) for p in choice.watch]
        ratings, minutes = [], []
        for item in watched:
            c = brain.consume(st, item, self.clock)
            ratings.append(c.rating)
            minutes.append(c.minutes)
            st.seen.add(item)
            st.heard_of.pop(item, None)
            st.watched.append((item, c.rating))
            st.session_watched.append(item)
        total_minutes = float(sum(minutes))
        self.clock += self.think + total_minutes
        self.t += 1
        reward = self._reward(ratings, minutes)
        terminated = choice.next == "leave"
        truncated = not terminated and self.t >= self.horizon
        self.candidates = self._draw()
        self._last = {"user_id": st.user_id, "watched": watched, "reward": reward}
        info = {"user_id": st.user_id, "clicks": len(watched), "watch_minutes": total_minutes,
                "slate": items.tolist(), "clicked": list(choice.watch)}
        return self._obs(), reward, terminated, truncated, info


class WorldEnv(_Base):
    """The multi-user world, one slate request per step; see the module docstring."""

    def __init__(self, scenario=None, overrides=None, flatten: bool = False, render_mode: str | None = None):
        super().__init__(scenario, overrides, flatten, render_mode)
        self.world = None
        self._fb = None           # feedback on the slate of the current step
        self._waiting = False     # True while the world has not yet answered that slate

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        from recworld.simulator.engine.events import NullLog
        from recworld.simulator.engine.world import World

        super().reset(seed=seed)
        p = self.parts
        self.world = w = World(self.scenario, p.catalog, p.population, p.graph, None, self.brain, NullLog(),
                               np.random.SeedSequence(int(self.np_random.integers(2**63))))
        w.external = []
        w.on_feedback = self._feedback
        w.start()
        self._fb = None
        self.steps = 0
        if not self._advance():
            raise RuntimeError("no user asked for a slate during the whole scenario: raise population.size, "
                               "activity or duration_days")
        return self._obs(), {"user_id": self.user.user_id, "time": float(w.env.now)}

    def _feedback(self, slate_id, request, feedback) -> None:
        self._fb = feedback

    def _advance(self) -> bool:
        """Run the world until a slate request waits (True) or simulated time is up (False)."""
        w, env = self.world, self.world.env
        while not w.external or (self._waiting and self._fb is None):
            if env.peek() >= w.end:
                return False
            env.step()
        request, _ = w.external[0]
        self.request = request
        self.user = w.states[request.user]
        first = self.parts.catalog.search(request.query) if request.query else None
        self.candidates = sample_candidates(self.np_random, len(self.parts.catalog), self.user.seen, self.C, first)
        return True

    def step(self, action):
        if self.world is None:
            raise RuntimeError("call reset() before step()")
        from recworld.simulator.protocols import Slate

        items = self.slate_items(action)
        _, pending = self.world.external.pop(0)
        user = self.user
        self._fb, self._waiting = None, True
        pending.succeed(Slate(items))
        alive = self._advance()
        self._waiting = False
        fb = self._fb
        reward = self._reward(fb.ratings, fb.watch_minutes) if fb is not None else 0.0
        watched = [int(items[p]) for p in fb.clicked] if fb is not None else []
        self.steps += 1
        self._last = {"user_id": user.user_id, "watched": watched, "reward": reward}
        info = {"user_id": user.user_id, "clicks": len(watched), "time": float(self.world.env.now),
                "slate": items.tolist(), "clicked": [] if fb is None else fb.clicked.tolist()}
        if not alive:          # time is up: the last observation repeats the final request's user
            self.candidates = self.candidates if len(self.candidates) else np.zeros(self.C, dtype=np.int64)
        return self._obs(), reward, False, not alive, info
