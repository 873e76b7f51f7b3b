"""``first_like``: a user who watches the first item on a page they expect to like."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from recworld.agents.parametric import ParametricBrain
from recworld.simulator.protocols import Consumption, PageChoice, UserState

#: how a rating made by this brain starts (its ``rate`` events carry it)
FEELING = "first one I liked"


class FirstLikeBrain(ParametricBrain):
    """The parametric brain, except on a recommendation page: the user watches the first
    item whose expected rating reaches ``like_threshold`` and ends the session; a page with
    no such item sends them to the next page, at most ``patience`` pages in all.  Activity,
    search, chat and posts are the parametric brain's."""

    name: ClassVar[str] = "first_like"
    oracle: ClassVar[bool] = False      # its choices are not the parametric choice model's

    class Params(ParametricBrain.Params):
        like_threshold: float = Field(3.5, ge=1, le=5, description="expected rating (1-5) that counts as liked")
        patience: int = Field(3, ge=1, le=100, description="pages looked through before giving up")

    def choose_from_slate(self, state: UserState, items: np.ndarray, page: int, now: float) -> PageChoice:
        for position, item in enumerate(np.asarray(items).tolist()):
            if item not in state.seen and self.expected_rating(state, item) >= self.params.like_threshold:
                return PageChoice([position], "leave")
        return PageChoice([], "next" if page + 1 < self.params.patience else "leave")

    def consume(self, state: UserState, item: int, now: float) -> Consumption:
        c = super().consume(state, item, now)
        return Consumption(c.minutes, c.rating, f"{FEELING}: {c.feeling}")
