"""The LLM brain: RecAgent-style user agents whose decisions an LLM makes.

Each user has a profile (genre tastes, rating habits, favourite titles, traits) and a
memory (``recworld.agents.memory``).  A decision is a prompt built from the persona, the memories
retrieved for what the user sees, and the situation; the LLM answers JSON that must match
a schema.  The brain never calls the network: it returns a ``Think`` and the world batches
it with other users' requests (lookahead windows).  An answer that stays invalid after the
service's repair try falls back to the parametric brain for that one decision (counted in
``fallbacks``).

LLM decisions: the activity of a session (and a search query), every page (which items to
watch, with a rating and a feeling for each, then next page / search / leave), each turn
of a chat, the text of a post, and (optionally) the reaction to a post in the inbox.
Reflection: once enough important memories accumulate, one extra call turns them into an
insight.  Prompt templates are the ``*.txt`` files in ``agents/prompts``; a scenario can
point ``prompts`` at a folder whose files replace them (``string.Template`` syntax).
"""

from __future__ import annotations

import logging
import string
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model

from recworld.agents.memory import Memory, MemoryParams
from recworld.agents.parametric import ParametricBrain
from recworld.simulator.data.catalog import Catalog
from recworld.simulator.data.population import Population
from recworld.simulator.protocols import (ActivityChoice, Brain, Consumption, Dialogue, PageChoice, Post,
                                          PostDraft, PostReaction, Think, UserState)

log = logging.getLogger("recworld.agents")

TEMPLATES = ("persona", "activity", "page", "chat", "post", "reflect")


#: built-in prompt sets besides the default (movies): ``prompts: shopping`` for product catalogs
PROMPT_SETS = ("shopping",)


def load_templates(folder: str | None = None) -> dict[str, string.Template]:
    """The built-in prompt templates, with those found in ``folder`` taking their place
    (``folder`` may also name a built-in set, e.g. ``shopping``)."""
    if folder in PROMPT_SETS:
        folder = str(resources.files("recworld.agents") / "prompts" / folder)
    if folder and not Path(folder).expanduser().is_dir():
        raise FileNotFoundError(f"prompts folder {folder} does not exist (it should hold some of "
                                f"{', '.join(t + '.txt' for t in TEMPLATES)})")
    out = {}
    base = resources.files("recworld.agents") / "prompts"
    for name in TEMPLATES:
        text = (base / f"{name}.txt").read_text(encoding="utf-8")
        if folder:
            f = Path(folder).expanduser() / f"{name}.txt"
            if f.exists():
                text = f.read_text(encoding="utf-8")
        out[name] = string.Template(text)
    return out


# ----------------------------------------------------------------------------- answer schemas


class ActivityAnswer(BaseModel):
    activity: Literal["browse", "search", "chat", "post", "idle"]
    query: str = Field("", max_length=60)


class Pick(BaseModel):
    item: int
    rating: int = Field(ge=1, le=5)
    feeling: str = Field("", max_length=60)


@lru_cache(maxsize=64)
def page_schema(n: int, max_watch: int) -> type[BaseModel]:
    """The page answer for a slate of ``n`` items: item numbers 1..n, at most ``max_watch`` picks."""
    pick = create_model(f"Pick{n}", item=(int, Field(ge=1, le=n)), rating=(int, Field(ge=1, le=5)),
                        feeling=(str, Field("", max_length=60)), __base__=Pick)
    return create_model(f"PageAnswer{n}x{max_watch}", watch=(list[pick], Field(max_length=max_watch)),
                        next=(Literal["next", "search", "leave"], ...), query=(str, Field("", max_length=60)))


class ChatTurn(BaseModel):
    message: str = Field(max_length=240)
    mention: str = Field("", max_length=80)


class PostText(BaseModel):
    text: str = Field(max_length=240)


class Insight(BaseModel):
    insight: str = Field(max_length=200)


class Reaction(BaseModel):
    interested: bool
    repost: bool


# ----------------------------------------------------------------------------- the brain


def _clock(now: float) -> tuple[int, str]:
    day = int(now // 1440) + 1
    minute = int(now % 1440)
    return day, f"{minute // 60:02d}:{minute % 60:02d}"


class LLMBrain(Brain):
    name: ClassVar[str] = "llm"
    needs_llm: ClassVar[bool] = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        prompts: str | None = Field(None, description="folder of prompt templates replacing the built-in ones, or "
                                                      "a built-in set: shopping (product catalogs)")
        memory: MemoryParams = Field(default_factory=MemoryParams)
        llm_activity: bool = Field(True, description="the LLM picks each session's activity (else the parametric mix)")
        llm_reactions: bool = Field(False, description="the LLM reacts to each post read (else the parametric model)")
        max_watch_per_page: int = Field(2, ge=1, le=20)
        item_chars: int = Field(140, ge=0, le=2000, description="characters of item text shown per item")
        favourites: int = Field(5, ge=0, le=50, description="favourite titles in the persona")
        chat_turns: int = Field(4, ge=2, le=20)
        fallback: dict = Field(default_factory=dict, description="parameters of the parametric brain used on fallback")

    def __init__(self, params: "LLMBrain.Params | dict | None" = None, *, catalog: Catalog,
                 population: Population, rng: np.random.Generator | None = None, llm=None):
        super().__init__(params, catalog=catalog, population=population, rng=rng, llm=llm)
        p = self.params
        self.fallback = ParametricBrain(p.fallback, catalog=catalog, population=population, rng=rng)
        self.templates = load_templates(p.prompts)
        # self.decisions: LLM answers received (requests still open when the run ends are not counted);
        # self.fallbacks: of which fell back to the parametric brain
        self._personas: dict[int, str] = {}

    # ------------------------------------------------------------------ building prompts

    def profile_text(self, u: int) -> str:
        prof = self.population.profiles.iloc[u]
        taste = self.population.taste[u]
        names = self.catalog.genre_names
        order = np.argsort(-taste, kind="stable")
        likes = ", ".join(names[i] for i in order[:3])
        dislikes = ", ".join(names[i] for i in order[-2:][::-1])
        fav = [t for t, _ in self._history_favourites(u)]
        parts = [f"you like {likes}; you care less for {dislikes}.",
                 f"Your ratings average {prof['rating_mean']:.1f}/5."]
        conf = float(prof["conformity"])
        parts.append("You tend to follow what is popular." if conf > 0.6 else
                     "You pick for yourself rather than follow the crowd." if conf < 0.3 else "")
        div = float(prof["diversity"])
        parts.append("You like variety." if div > 0.7 else "You stick to what you know." if div < 0.4 else "")
        if fav:
            parts.append("Movies you loved: " + "; ".join(fav) + ".")
        return " ".join(x for x in parts if x)

    def _history_favourites(self, u: int) -> list[tuple[str, float]]:
        items, ratings = self.population.history[u], self.population.history_ratings[u]
        if not len(ratings) or not self.params.favourites:
            return []
        top = np.argsort(-ratings, kind="stable")[:self.params.favourites]
        return [(self.catalog.titles[int(items[j])], float(ratings[j])) for j in top if ratings[j] >= 4]

    def persona(self, state: UserState) -> str:
        if state.index not in self._personas:
            self._personas[state.index] = self.templates["persona"].safe_substitute(
                user_id=state.user_id, profile=self.profile_text(state.index))
        return self._personas[state.index]

    def memory(self, state: UserState) -> Memory:
        """The user's memory, with what the world made it perceive since the last decision."""
        mem = state.extra.get("memory")
        if mem is None:
            mem = state.extra["memory"] = Memory(self.params.memory)
            state.extra["memory_seen"] = 0
        for t, text in state.new_memories(state.extra["memory_seen"]):
            mem.perceive(t, text)
        state.extra["memory_seen"] = state.remembered
        mem.consolidate()
        return mem

    def _memories(self, state: UserState, query: str, now: float) -> str:
        recs = self.memory(state).retrieve(query, now)
        if not recs:
            return "(nothing yet)"
        return "\n".join(f"- day {_clock(m.time)[0]} {_clock(m.time)[1]}: {m.text}" for m in recs)

    def _item_line(self, n: int, item: int) -> str:
        c = self.catalog
        text = str(c.items["text"].iat[item])[:self.params.item_chars] if self.params.item_chars else ""
        genres = ", ".join(c.genre_lists[item])
        line = f"{n}. {c.titles[item]} [{genres}]"
        return line + (f" - {text}" if text and text != c.titles[item] else "")

    def _request(self, state: UserState, prompt: str, schema, purpose: str, now: float):
        """One LLM request; its log record names the user, the session and the simulated time
        of the decision, so ``Run.decisions()`` can join it to the events it produced."""
        from recworld.simulator.llm.service import LLMRequest

        seed = int(state.rng.integers(2**31 - 1))
        return LLMRequest([{"role": "system", "content": self.persona(state)}, {"role": "user", "content": prompt}],
                          schema, seed, {"user": state.user_id, "purpose": purpose, "session": state.session,
                                         "sim_time": float(now)})

    def _failed(self, result, what: str, state: UserState) -> bool:
        """Count the decision; True if its answer is unusable (the caller falls back)."""
        self.decisions += 1
        if result.ok and result.parsed is not None:
            return False
        self.fallbacks += 1
        log.debug("user %s: %s falls back to the parametric brain (%s)", state.user_id, what, result.error)
        return True

    # ------------------------------------------------------------------ decisions

    def choose_activity(self, state: UserState, now: float):
        mem = self.memory(state)
        if mem.wants_reflection():
            return self._reflect(state, now, then=lambda: self._activity(state, now))
        return self._activity(state, now)

    def _activity(self, state: UserState, now: float):
        if not self.params.llm_activity:
            return self.fallback.choose_activity(state, now)
        day, clock = _clock(now)
        heard = [self.catalog.titles[i] for i in list(state.heard_of)[:5]]
        prompt = self.templates["activity"].safe_substitute(
            day=day, clock=clock, memories=self._memories(state, "what to do next", now),
            heard=("You heard about: " + "; ".join(heard) + ".") if heard else "")
        req = self._request(state, prompt, ActivityAnswer, "activity", now)

        def then(results):
            r = results[0]
            if self._failed(r, "activity", state):
                return self.fallback.choose_activity(state, now)
            a: ActivityAnswer = r.parsed
            kind = a.activity
            if kind == "post" and self.fallback.postable_item(state) is None:
                kind = "browse"
            return ActivityChoice(kind, (a.query.strip() or None) if kind == "search" else None)
        return Think([req], then)

    def _reflect(self, state: UserState, now: float, then):
        mem = self.memory(state)
        recent = "\n".join(f"- {m.text}" for m in mem.important())
        req = self._request(state, self.templates["reflect"].safe_substitute(memories=recent), Insight, "reflect", now)

        def done(results):
            r = results[0]
            if self._failed(r, "reflection", state):
                mem.since_reflection = 0          # try again after the next batch of memories
            else:
                mem.add_insight(now, f"insight: {r.parsed.insight.strip()}")
            return then()
        return Think([req], done)

    def search_query(self, state: UserState, now: float) -> str:
        return self.fallback.search_query(state, now)

    def choose_from_slate(self, state: UserState, items: np.ndarray, page: int, now: float):
        n = len(items)
        day, clock = _clock(now)
        listing = "\n".join(self._item_line(j + 1, int(it)) for j, it in enumerate(items))
        query = state.query
        prompt = self.templates["page"].safe_substitute(
            day=day, clock=clock, page=page + 1, items=listing, max_watch=self.params.max_watch_per_page,
            memories=self._memories(state, listing, now),
            query_note=f" for your search '{query}'" if query else "")
        schema = page_schema(n, self.params.max_watch_per_page)
        req = self._request(state, prompt, schema, "page", now)

        def then(results):
            r = results[0]
            if self._failed(r, "page", state):
                return self.fallback.choose_from_slate(state, items, page, now)
            a = r.parsed
            picks, pending = [], state.extra.setdefault("pending", {})
            for w in a.watch:
                pos = w.item - 1
                if 0 <= pos < n and pos not in picks:
                    picks.append(pos)
                    pending[int(items[pos])] = (float(w.rating), w.feeling.strip())
            q = a.query.strip() or None
            if a.next == "search" and q is None:
                q = self.fallback.search_query(state, now)
            return PageChoice(picks, a.next, q)
        return Think([req], then)

    def consume(self, state: UserState, item: int, now: float) -> Consumption:
        pending = state.extra.get("pending", {})
        if item not in pending:
            return self.fallback.consume(state, item, now)
        rating, feeling = pending.pop(item)
        share = 1.0 if rating >= 3 else float(state.rng.uniform(0.15, 0.7))   # disliked items are abandoned
        return Consumption(float(self.catalog.duration[item]) * share, rating, feeling)

    def chat(self, state: UserState, partner: UserState, now: float):
        speakers = (state, partner)
        lines: list[tuple[int, str]] = []
        mentioned: dict[int, int] = {}
        topics = [self._topics(s) for s in speakers]

        def turn(t: int):
            if t >= self.params.chat_turns:
                return Dialogue(lines, mentioned)
            me, other = speakers[t % 2], speakers[(t + 1) % 2]
            so_far = "\n".join(f"user {u}: {x}" for u, x in lines) or "(you start the conversation)"
            prompt = self.templates["chat"].safe_substitute(
                partner_id=other.user_id, dialogue=so_far,
                topics="; ".join(self.catalog.titles[i] for i in topics[t % 2]) or "(none in particular)",
                memories=self._memories(me, so_far, now))
            req = self._request(me, prompt, ChatTurn, "chat", now)

            def then(results):
                r = results[0]
                if self._failed(r, "chat turn", me):
                    # the parametric brain's line for this turn
                    text = self.fallback.chat(me, other, now).lines[0][1]
                    said = text
                else:
                    text = r.parsed.message.strip()
                    said = f"{text} {r.parsed.mention}"
                lines.append((me.user_id, text))
                for item in self._mentions(said, topics[t % 2]):
                    mentioned.setdefault(item, me.index)
                return turn(t + 1)
            return Think([req], then)
        return turn(0)

    def _topics(self, state: UserState) -> list[int]:
        fav = [i for i, _ in self.fallback.favourites(state)]
        return list(dict.fromkeys(fav + list(state.heard_of)))[:6]

    def _mentions(self, text: str, topics: list[int]) -> list[int]:
        low = text.lower()
        out = []
        for i in topics:
            short = self.fallback.short_titles[i].lower()
            if short and short in low:
                out.append(i)
        return out

    def write_post(self, state: UserState, now: float):
        draft = self.fallback.write_post(state, now)       # picks the item (and marks it posted)
        if draft is None:
            return None
        rating = next((r for i, r in reversed(state.watched) if i == draft.item), 4.0)
        prompt = self.templates["post"].safe_substitute(
            title=self.catalog.titles[draft.item], rating=f"{rating:g}",
            memories=self._memories(state, self.catalog.titles[draft.item], now))
        req = self._request(state, prompt, PostText, "post", now)

        def then(results):
            r = results[0]
            if self._failed(r, "post", state):
                return draft
            return PostDraft(draft.item, r.parsed.text.strip() or draft.text)
        return Think([req], then)

    def read_post(self, state: UserState, post: Post, now: float):
        if not self.params.llm_reactions:
            return self.fallback.read_post(state, post, now)
        prompt = (f"User {post.author} posted: \"{post.text}\" (about {self.catalog.titles[post.item]}).\n"
                  "Are you interested in that movie, and do you re-post it to your own followers?")
        req = self._request(state, prompt, Reaction, "read_post", now)

        def then(results):
            r = results[0]
            if self._failed(r, "post reaction", state):
                return self.fallback.read_post(state, post, now)
            return PostReaction(bool(r.parsed.interested), bool(r.parsed.repost))
        return Think([req], then)
