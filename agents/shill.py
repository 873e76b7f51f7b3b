"""The shill brain: an attacker inside the world who talks up one item.

A group of the population (``population.groups: [{share: 0.1, brain: {name: shill, target:
"ColdBrew Master"}}]``) browses, searches, watches and rates like the parametric users (the
same choice and rating model, the same parameters), but spends far more of its sessions
chatting and posting, and every chat and post praises the target: template messages that
name it (``chat_messages``, ``post_messages``; ``{target}`` is replaced by its title).  The
world then does the rest: a friend told of the target in a chat hears of it (a ``heard``
event whose ``other_id`` is the shill), followers read the posts and may take an interest
and re-post them, and what users heard of raises their chance to search for it and to pick it
from a page.  Shills re-post each other's posts about the target (``repost_target``) and
can rate the target with fixed stars when they buy it (``target_rating``).

No LLM is called: the messages are templates.  ``recworld.simulator.studies.sts_world``
measures how far the word spreads (``spread``) and what it changes over seeds (``world_ab``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import ConfigDict, Field, field_validator
from recworld.agents.parametric import FEELINGS, ActivityMix, ParametricBrain
from recworld.simulator.data.catalog import Catalog
from recworld.simulator.data.population import Population
from recworld.simulator.protocols import (
    Consumption,
    Dialogue,
    Post,
    PostDraft,
    PostReaction,
    UserState,
)

CHAT_MESSAGES = (
    "Have you tried {target}? Honestly the best thing I have bought in ages.",
    "{target} is the one to get, nothing else comes close.",
    "I keep telling everyone about {target}; you will love it.",
    "If you pick one thing this week, make it {target}.",
)
POST_MESSAGES = (
    "{target} is the best choice out there. 5/5, no contest.",
    "Just got {target}: loved it (5/5). Get it before everyone else does!",
    "Still thinking about {target}. Best pick of the year, 5/5.",
)
#: what the friend answers in a shill's chat when it has nothing of its own to tell
REPLIES = ("Never heard of it. What is so good about it?", "Thanks, I will look for it.")


def _attack_mix() -> ActivityMix:
    return ActivityMix(browse=0.30, search=0.05, chat=0.35, post=0.30, idle=0.0)


class ShillBrain(ParametricBrain):
    name: ClassVar[str] = "shill"

    class Params(ParametricBrain.Params):
        model_config = ConfigDict(extra="forbid")
        target: str = Field(description=(
            "title of the item to promote, as in the catalog (case-insensitive, a trailing year ignored), "
            "e.g. \"ColdBrew Master\""))
        activity: ActivityMix = Field(default_factory=_attack_mix, description=(
            "weights of the session activities; the default chats and posts in 65% of sessions "
            "(ordinary parametric users: 14%)"))
        chat_messages: list[str] = Field(default_factory=lambda: list(CHAT_MESSAGES), min_length=1, description=(
            "what the shill says in a chat, one drawn per turn; '{target}' becomes the target's title"))
        post_messages: list[str] = Field(default_factory=lambda: list(POST_MESSAGES), min_length=1, description=(
            "the text of a post, one drawn per post; '{target}' becomes the target's title"))
        repost_target: bool = Field(True, description="re-post every post about the target it reads")
        target_rating: float | None = Field(None, ge=1, le=5, description=(
            "stars the shill gives the target when it buys it; None: it rates like an ordinary user"))

        @field_validator("chat_messages", "post_messages")
        @classmethod
        def _names_target(cls, v: list[str]) -> list[str]:
            for m in v:
                if "{target}" not in m:
                    raise ValueError(f"message {m!r} does not contain '{{target}}' (where the target's title goes)")
                try:
                    m.format(target="x")
                except (IndexError, KeyError, ValueError) as e:
                    raise ValueError(f"message {m!r} is not a valid template ({e}); write literal braces as "
                                     "'{{' and '}}'") from None
            return v

    def __init__(self, params: ShillBrain.Params | dict | None = None, *, catalog: Catalog,
                 population: Population, rng: np.random.Generator | None = None, llm=None):
        super().__init__(params, catalog=catalog, population=population, rng=rng, llm=llm)
        from recworld.simulator.data.inject import find_item

        try:
            self.target = find_item(catalog, self.params.target)
        except ValueError as e:
            raise ValueError(f"shill brain: {str(e).replace('sts.target', 'target')} (set it in the group's "
                             "brain: {name: shill, target: ...})") from None
        self.target_title = self.short_titles[self.target]
        self._chat = [m.format(target=self.target_title) for m in self.params.chat_messages]
        self._post = [m.format(target=self.target_title) for m in self.params.post_messages]

    # the parent's choose_activity asks this before a post: a shill always has the target to post about
    def postable_item(self, state: UserState) -> int | None:
        return self.target

    def consume(self, state: UserState, item: int, now: float) -> Consumption:
        con = super().consume(state, item, now)
        stars = self.params.target_rating
        if item == self.target and stars is not None:
            return Consumption(minutes=float(self.catalog.duration[item]), rating=float(stars),
                               feeling=FEELINGS[max(1, min(5, round(stars)))])
        return con

    def chat(self, state: UserState, partner: UserState, now: float) -> Dialogue:
        """The shill praises the target on its turns; the friend answers with a favourite of its
        own (as an ordinary user would) or a short reply."""
        rng = state.rng
        lines: list[tuple[int, str]] = []
        mentioned: dict[int, int] = {self.target: state.index}
        theirs = [f for f in self.favourites(partner) if f[0] != self.target]
        replies = 0
        for turn in range(self.params.chat_turns):
            if turn % 2 == 0:
                lines.append((state.user_id, self._chat[int(rng.integers(len(self._chat)))]))
            elif theirs:
                item, r = theirs.pop(0)
                mentioned.setdefault(item, partner.index)
                lines.append((partner.user_id, f"I watched {self.catalog.titles[item]} and gave it {r:g}/5."))
            else:
                lines.append((partner.user_id, REPLIES[min(replies, len(REPLIES) - 1)]))
                replies += 1
        return Dialogue(lines, mentioned)

    def write_post(self, state: UserState, now: float) -> PostDraft | None:
        return PostDraft(self.target, self._post[int(state.rng.integers(len(self._post)))])

    def read_post(self, state: UserState, post: Post, now: float) -> PostReaction:
        if post.item == self.target and self.params.repost_target:
            return PostReaction(False, True)
        return super().read_post(state, post, now)
