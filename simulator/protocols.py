"""Interfaces between the world and its plug-ins (recommenders and brains).

The world speaks to plug-ins only through these records, so ``simulator`` never imports
``agents`` or ``recommenders``.  Items are catalog indices (see ``simulator.catalog``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

# ----------------------------------------------------------------------------- recommenders


@dataclass(frozen=True)
class SlateRequest:
    user: int                      # user index in the population
    k: int                         # slate size
    page: int = 0                  # 0-based page of this browsing run
    exclude: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))   # items never to show
    query: str | None = None       # a search query, or None for a recommendation page
    time: float = 0.0              # simulated minutes
    user_id: int | None = None     # the user's public id (as in the interactions table), if known


@dataclass(frozen=True)
class Slate:
    items: np.ndarray                      # item indices, length <= k
    propensities: np.ndarray | None = None # per-slot probability under a stochastic policy


@dataclass(frozen=True)
class Feedback:
    user: int
    slate: Slate
    clicked: np.ndarray            # positions in the slate the user chose
    ratings: np.ndarray            # rating per clicked position (nan if none)
    watch_minutes: np.ndarray      # minutes consumed per clicked position
    time: float
    query: str | None = None
    user_id: int | None = None


@runtime_checkable
class Recommender(Protocol):
    name: ClassVar[str]

    def fit(self, interactions, catalog) -> None: ...
    def recommend(self, request: SlateRequest) -> Slate: ...
    def update(self, feedback: Feedback) -> None: ...


# ----------------------------------------------------------------------------- brains

Activity = Literal["browse", "search", "chat", "post", "idle"]
INBOX_LIMIT = 50          # unread posts a user keeps
NextStep = Literal["next", "search", "leave"]


@dataclass
class Post:
    post_id: int
    root_id: int
    author: int            # user index
    item: int              # item index the post is about
    text: str
    hop: int               # 0 for an original post
    time: float


@dataclass
class UserState:
    """What the world keeps about a user during a run; brains read and extend it."""

    index: int
    user_id: int
    rng: np.random.Generator
    seen: set[int] = field(default_factory=set)
    watched: list[tuple[int, float]] = field(default_factory=list)    # (item, rating) in this run
    heard_of: dict[int, int] = field(default_factory=dict)            # item -> user index it came from
    inbox: deque[Post] = field(default_factory=lambda: deque(maxlen=INBOX_LIMIT))   # oldest unread drop off
    memory: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=50))   # (time, what happened)
    remembered: int = 0            # how many things were ever remembered (brains track what is new)
    session: int = 0
    query: str | None = None       # the search being browsed, if any
    pages_seen: int = 0            # in the current session (fatigue)
    session_watched: list[int] = field(default_factory=list)
    busy_until: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)                # brain-private state

    def remember(self, time: float, text: str) -> None:
        self.memory.append((time, text))
        self.remembered += 1

    def new_memories(self, since: int) -> list[tuple[float, str]]:
        """What was remembered after the first ``since`` memories (those still kept)."""
        n = min(self.remembered - since, len(self.memory))
        return list(self.memory)[len(self.memory) - n:] if n > 0 else []


@dataclass
class ActivityChoice:
    kind: Activity
    query: str | None = None


@dataclass
class PageChoice:
    watch: list[int]               # positions in the slate, in the order they are consumed
    next: NextStep
    query: str | None = None       # for next == "search"


@dataclass
class Consumption:
    minutes: float
    rating: float                  # 1..5
    feeling: str = ""


@dataclass
class Dialogue:
    lines: list[tuple[int, str]]   # (speaker user index, utterance)
    mentioned: dict[int, int]      # item -> user index who mentioned it

    @property
    def text(self) -> str:
        return "\n".join(f"{u}: {t}" for u, t in self.lines)


@dataclass
class PostDraft:
    item: int
    text: str


@dataclass
class PostReaction:
    interested: bool               # the item enters 'heard of'
    repost: bool


@dataclass
class Think:
    """A decision that needs an LLM.  A brain never calls the network itself: it returns a
    ``Think`` with the requests (``simulator.llm.LLMRequest``); the world sends them together
    with other users' requests of the same lookahead window and, ``think_minutes`` after they
    were issued, calls ``then(results)``, which returns the decision or another ``Think``."""

    requests: list
    then: Callable[[list], Any]


@runtime_checkable
class Brain(Protocol):
    """Decides for the users it is given.  All randomness comes from ``state.rng``.  Any
    decision may instead be returned as a ``Think`` (see above)."""

    name: ClassVar[str]

    def choose_activity(self, state: UserState, now: float) -> ActivityChoice: ...
    def search_query(self, state: UserState, now: float) -> str: ...
    def choose_from_slate(self, state: UserState, items: np.ndarray, page: int, now: float) -> PageChoice: ...
    def consume(self, state: UserState, item: int, now: float) -> Consumption: ...
    def chat(self, state: UserState, partner: UserState, now: float) -> Dialogue: ...
    def write_post(self, state: UserState, now: float) -> PostDraft | None: ...
    def read_post(self, state: UserState, post: Post, now: float) -> PostReaction: ...
