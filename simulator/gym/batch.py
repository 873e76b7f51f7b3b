"""The contract between the natively vectorised Session env and a brain that decides for many users at once.

``recworld/Session-v0``'s vector entry point (``recworld.simulator.gym.vector``) steps N users
in numpy.  It cannot call a brain N times per step and stay fast, so a brain that wants to
serve it implements :class:`BatchSessionBrain`: the same choice and consumption model as its
``choose_from_slate`` and ``consume``, on arrays of users, drawing its random numbers through
a :class:`LaneDraws` the env hands it.  The draws come in the same order, per user, as in the
single env, so a vector env with one random stream per sub-env reproduces the single env's
trajectories exactly (``tests/test_vector_env.py`` checks it against ``SyncVectorEnv``).

The Session env's setting is assumed: one session per episode, nobody has heard of an item
(no chats or posts), and every slate item is unseen.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

LEAVE, NEXT, SEARCH = 0, 1, 2        # what a user does after a page (codes of ``choose_batch``'s ``next``)


class LaneDraws(Protocol):
    """Random numbers for a batch of users.  ``rows`` index the batch (in increasing order);
    the answer has one number per row, drawn in row order."""

    def random(self, rows: np.ndarray) -> np.ndarray: ...                                # uniform [0, 1)
    def normal(self, rows: np.ndarray, scale: np.ndarray) -> np.ndarray: ...             # N(0, scale)
    def uniform(self, rows: np.ndarray, low: float, high: float) -> np.ndarray: ...      # U[low, high)


class BatchSessionBrain:
    """Mix-in of brains that the vectorised Session env can drive."""

    #: methods whose numbers ``choose_batch``/``consume_batch`` reproduce: a subclass that overrides
    #: any of them without overriding the batch methods too is refused by the vector env
    BATCH_MIRRORS = ("choose_from_slate", "consume", "utilities", "no_click_utility", "search_query",
                     "expected_rating")

    def choose_batch(self, users: np.ndarray, items: np.ndarray, pages_seen: np.ndarray,
                     session_genres: np.ndarray, watched_any: np.ndarray, draws: LaneDraws):
        """Per user (row): the slate positions watched in pick order (``(n, W)``, -1 = none) and
        what comes next (``(n,)`` codes ``LEAVE``/``NEXT``/``SEARCH``).  ``items`` is ``(n, S)``,
        ``pages_seen`` counts this page, ``session_genres`` marks genres of items watched this
        session (``watched_any``: at least one)."""
        raise NotImplementedError

    def consume_batch(self, users: np.ndarray, items: np.ndarray, draws: LaneDraws):
        """Ratings and minutes watched, one item per user (row)."""
        raise NotImplementedError

    def max_picks(self, slate_size: int) -> int:
        """The most items a user watches from one page (``W``)."""
        raise NotImplementedError

    def batch_consistent(self) -> bool:
        """True unless a subclass changed a per-user method the batch methods mirror."""
        owner = next(c for c in type(self).__mro__ if "choose_batch" in c.__dict__)
        for cls in type(self).__mro__:
            if cls is owner:
                return True
            if any(name in cls.__dict__ for name in self.BATCH_MIRRORS):
                return False
        return True
