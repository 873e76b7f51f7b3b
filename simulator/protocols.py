"""The plug-in contract: everything the core uses from a recommender or a brain.

The world speaks to plug-ins only through the records and the two base classes below, so
the core never imports ``recworld.agents`` or ``recworld.recommenders``: it finds plug-ins
through the registry and checks that they subclass ``Recommender`` or ``Brain``.  Every
member the core calls is declared here, typed and documented, with a default where one
makes sense; ``recworld.check_recommender`` and ``recworld.check_brain`` exercise a plug-in
against a tiny world and name the rule it breaks.  Items are catalog indices (see
``recworld.simulator.data.catalog``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # pragma: no cover - types only
    from recworld.simulator.data.catalog import Catalog
    from recworld.simulator.data.population import Population


class NoParams(BaseModel):
    """The parameters of a plug-in that takes none (any key is an error)."""
    model_config = ConfigDict(extra="forbid")


def validated_params(cls, params):
    """``params`` (None, a dict or ``cls.Params``) as a validated ``cls.Params``."""
    return params if isinstance(params, cls.Params) else cls.Params.model_validate(params or {})

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


@dataclass(frozen=True, init=False)
class Slate:
    items: np.ndarray                      # item indices, length <= k
    propensities: np.ndarray | None = None # per-slot probability under a stochastic policy

    def __init__(self, items: np.ndarray, propensities: np.ndarray | None = None):
        # one per page: filled in directly, not field by field through the frozen ``__setattr__``
        self.__dict__.update(items=items, propensities=propensities)


@dataclass(frozen=True, init=False)
class Feedback:
    user: int
    slate: Slate
    clicked: np.ndarray            # positions in the slate the user chose
    ratings: np.ndarray            # rating per clicked position (nan if none)
    watch_minutes: np.ndarray      # minutes consumed per clicked position
    time: float
    query: str | None = None
    user_id: int | None = None

    def __init__(self, user: int, slate: Slate, clicked: np.ndarray, ratings: np.ndarray,
                 watch_minutes: np.ndarray, time: float, query: str | None = None, user_id: int | None = None):
        # one per page: filled in directly, not field by field through the frozen ``__setattr__``
        self.__dict__.update(user=user, slate=slate, clicked=clicked, ratings=ratings, watch_minutes=watch_minutes,
                             time=time, query=query, user_id=user_id)


class Recommender:
    """Base class of every recommender plug-in (``recworld.recommenders.base.BaseRecommender``
    adds exclusion, search and paging on top of per-item scores).

    Construction: ``cls(params, rng=..., llm=...)`` where ``params`` is a ``cls.Params``
    (validated from the scenario's ``recommender:`` section) and ``llm`` is the world's LLM
    service when ``needs_llm`` is true, else None.  Then ``fit`` once, then ``recommend``
    and ``update`` as the world runs.
    """

    #: the name it is registered under (``recommender.name`` in a scenario)
    name: ClassVar[str] = "recommender"
    #: its parameters: a pydantic model (unknown keys are errors); NoParams if it takes none
    Params: ClassVar[type[BaseModel]] = NoParams
    #: True if it calls the LLM service: the world then starts one and passes it as ``llm``
    needs_llm: ClassVar[bool] = False

    def __init__(self, params: BaseModel | dict | None = None, *, rng: np.random.Generator | None = None,
                 llm: Any = None):
        self.params = validated_params(type(self), params)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.llm = llm
        self.catalog: Catalog | None = None      # set by ``fit``

    def fit(self, interactions, catalog: "Catalog") -> None:
        """Warm start on the interactions table (columns user_id, item, rating, timestamp;
        may be empty or None) over ``catalog``.  Called once, before any request."""
        raise NotImplementedError

    def recommend(self, request: SlateRequest) -> Slate:
        """At most ``request.k`` distinct catalog indices, none of them in ``request.exclude``."""
        raise NotImplementedError

    def update(self, feedback: Feedback) -> None:
        """What the user did with a slate, after the fact (online learning).  Default: nothing."""

    def rank_candidates(self, request: SlateRequest, candidates: np.ndarray) -> np.ndarray:
        """The given candidate items, best first: how a recommender acts as a policy in the
        Gymnasium envs.  Default: one slate over the candidates only (the rest excluded)."""
        others = np.setdiff1d(np.arange(len(self.catalog)), candidates)
        slate = self.recommend(SlateRequest(user=request.user, k=len(candidates), exclude=others,
                                            time=request.time, user_id=request.user_id))
        return np.asarray(slate.items, dtype=np.int64)

    def attach(self, world) -> None:
        """Called once by the world builder after the world exists, for recommenders that
        observe users' state (e.g. ``policy``).  Default: nothing."""

    def stats(self) -> dict:
        """Counters for ``metrics.json`` under ``recommender_stats`` (e.g. LLM calls per
        request).  Default: none."""
        return {}


@runtime_checkable
class ItemTextRanker(Protocol):
    """A recommender that orders a given list of items by reading their text (an LLM ranker);
    the STS study drives these directly."""

    def rank_items(self, items: np.ndarray, query: str, seed: int) -> np.ndarray:
        """Per item, its rank in the answer (1 = first; ``len(items) + 1`` = not named)."""
        ...


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
    lines: list[tuple[int, str]]   # (speaker's user_id, utterance)
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


class Brain:
    """Base class of every brain plug-in: it decides for the users it is given.

    Construction: ``cls(params, catalog=..., population=..., rng=..., llm=...)`` with
    ``params`` a ``cls.Params`` and ``llm`` the world's LLM service when ``needs_llm`` is
    true, else None.  All randomness of a decision comes from ``state.rng``.  Any decision
    except ``consume`` may instead be returned as a ``Think`` (LLM requests the world
    resolves, see above).
    """

    name: ClassVar[str] = "brain"
    Params: ClassVar[type[BaseModel]] = NoParams
    needs_llm: ClassVar[bool] = False
    #: True if ``slate_click_probability`` and ``best_click_probability`` give the user's
    #: true click probabilities (the oracle behind ``output.oracle`` regret)
    oracle: ClassVar[bool] = False

    def __init__(self, params: BaseModel | dict | None = None, *, catalog: "Catalog", population: "Population",
                 rng: np.random.Generator | None = None, llm: Any = None):
        self.params = validated_params(type(self), params)
        self.catalog, self.population, self.llm = catalog, population, llm
        #: decisions made with the LLM, and how many of them fell back (LLM brains count them)
        self.decisions = 0
        self.fallbacks = 0

    def choose_activity(self, state: UserState, now: float) -> ActivityChoice:
        raise NotImplementedError

    def search_query(self, state: UserState, now: float) -> str:
        raise NotImplementedError

    def choose_from_slate(self, state: UserState, items: np.ndarray, page: int, now: float) -> PageChoice:
        """Positions to watch (distinct, in the slate) and what to do next."""
        raise NotImplementedError

    def consume(self, state: UserState, item: int, now: float) -> Consumption:
        raise NotImplementedError

    def chat(self, state: UserState, partner: UserState, now: float) -> Dialogue:
        raise NotImplementedError

    def write_post(self, state: UserState, now: float) -> PostDraft | None:
        raise NotImplementedError

    def read_post(self, state: UserState, post: Post, now: float) -> PostReaction:
        raise NotImplementedError

    def slate_click_probability(self, state: UserState, items: np.ndarray) -> float:
        """The true probability that the user picks something from this slate (``oracle`` brains)."""
        raise NotImplementedError(f"brain {self.name!r} has no oracle")

    def best_click_probability(self, state: UserState, k: int, allowed: np.ndarray) -> float:
        """The highest click probability any slate of ``k`` of the ``allowed`` items can have."""
        raise NotImplementedError(f"brain {self.name!r} has no oracle")


#: the base class a plug-in of each registry kind must subclass
BASES = {"recommenders": Recommender, "brains": Brain}
