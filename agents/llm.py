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

A page decision has two modes (``decision``):
- ``json``: one request; the answer is a JSON object with the picks, their ratings and
  feelings, and what the user does next.
- ``logprobs``: one short request scores the items by the log-probabilities of their labels
  (one token, ``top_logprobs`` candidates); the picks are drawn from those scores with the
  user's own random stream (one after another, "none" among the options, as in the
  parametric brain's slate choice).  Only when something is picked, a second short JSON
  request gives the picks' ratings and feelings and what the user does next; a page with no
  pick continues as the parametric brain would.  A server that returns no log-probabilities
  makes the brain log a warning and use ``json`` from then on.
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

TEMPLATES = ("persona", "activity", "page", "page_pick", "page_rate", "chat", "post", "reflect")

#: the persona's answer-format line (``$answer_format`` in persona.txt) per kind of request
JSON_FORMAT = "Answer with one JSON object only."
PICK_FORMAT = "Answer with the label of your choice only."


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


class Rated(BaseModel):
    rating: int = Field(ge=1, le=5)
    feeling: str = Field("", max_length=60)


@lru_cache(maxsize=64)
def rate_schema(k: int) -> type[BaseModel]:
    """The second pass of a ``logprobs`` page decision: a rating and a feeling for each of the
    ``k`` picks, in order, then what the user does next."""
    return create_model(f"RatePage{k}", watched=(list[Rated], Field(min_length=k, max_length=k)),
                        next=(Literal["next", "search", "leave"], ...), query=(str, Field("", max_length=60)))


# ----------------------------------------------------------------------------- scoring by log-probabilities

#: the "watch none of them" option of a pick request
NONE_LABEL = "0"


def pick_labels(n: int) -> list[str]:
    """The labels of ``n`` options: digits 1-9 (one token in every common tokenizer), letters
    A-Z for slates of 10 to 26."""
    if n <= 9:
        return [str(j) for j in range(1, n + 1)]
    if n <= 26:
        return [chr(ord("A") + j) for j in range(n)]
    raise ValueError(f"decision: logprobs labels at most 26 items per page, the slate has {n}: lower "
                     "session.page_size or use the brain's decision: json")


def label_logprobs(top: list[dict[str, float]] | None, labels: list[str]) -> np.ndarray:
    """The log-probability of each label as the first answer token (candidates that differ only
    in surrounding spaces or case count together); -inf for a label not among the candidates."""
    out = np.full(len(labels), -np.inf)
    if not top:
        return out
    index = {lab.lower(): j for j, lab in enumerate(labels)}
    for tok, lp in top[0].items():
        j = index.get(tok.strip().lower())
        if j is not None:
            out[j] = np.logaddexp(out[j], lp)
    return out


def draw_picks(scores: np.ndarray, none_score: float, rng: np.random.Generator, max_picks: int,
               temperature: float = 1.0, after_pick: float = 1.0) -> list[int]:
    """Positions drawn one after another from ``scores`` (log-probabilities) with "none" as one
    more option: the probabilities are raised to ``1/temperature`` and renormalised over the
    options left (``temperature`` 0: the most likely option left each time, the first on ties,
    no random draw); each pick multiplies the weight of "none" by ``after_pick``; "none" ends
    the page."""
    options = [float(x) for x in scores] + [float(none_score)]
    finite = [x for x in options if np.isfinite(x)]
    if not finite:
        return []
    top, t = max(finite), temperature if temperature > 0 else 1.0
    w = [float(np.exp((x - top) / t)) if np.isfinite(x) else 0.0 for x in options]
    picks: list[int] = []
    while len(picks) < min(max_picks, len(scores)):
        total = sum(w)
        if total <= 0:
            break
        if temperature <= 0:
            j = int(np.argmax(w))
        else:
            r, j, acc = rng.random() * total, 0, 0.0
            for j, x in enumerate(w):
                acc += x
                if r < acc:
                    break
        if j == len(scores) or w[j] == 0.0:
            break
        picks.append(j)
        w[j] = 0.0
        w[-1] *= after_pick
    return picks


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
        decision: Literal["json", "logprobs"] = Field("json", description=(
            "page decisions: json = one JSON answer with picks, ratings and next step; logprobs = the items "
            "scored by the log-probabilities of their labels in one short request, picks drawn from the "
            "scores, ratings and feelings from a second short request only when something is picked"))
        top_logprobs: int = Field(20, ge=2, le=20, description=(
            "decision: logprobs: candidate first tokens asked for (OpenAI allows at most 20)"))
        pick_temperature: float = Field(1.0, ge=0, le=10, description=(
            "decision: logprobs: picks are drawn from the label probabilities raised to 1/pick_temperature "
            "(1 = as the model scores them, 0 = always the most likely)"))
        fallback: dict = Field(default_factory=dict, description="parameters of the parametric brain used on fallback")

    def __init__(self, params: "LLMBrain.Params | dict | None" = None, *, catalog: Catalog,
                 population: Population, rng: np.random.Generator | None = None, llm=None):
        super().__init__(params, catalog=catalog, population=population, rng=rng, llm=llm)
        p = self.params
        self.fallback = ParametricBrain(p.fallback, catalog=catalog, population=population, rng=rng)
        self.templates = load_templates(p.prompts)
        # self.decisions: LLM answers received (requests still open when the run ends are not counted);
        # self.fallbacks: of which fell back to the parametric brain
        self._personas: dict[tuple[int, str], str] = {}
        self.decision = p.decision          # becomes "json" if the server returns no log-probabilities

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

    def persona(self, state: UserState, answer_format: str = JSON_FORMAT) -> str:
        key = (state.index, answer_format)
        if key not in self._personas:
            self._personas[key] = self.templates["persona"].safe_substitute(
                user_id=state.user_id, profile=self.profile_text(state.index), answer_format=answer_format)
        return self._personas[key]

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

    def _item_line(self, n: int | str, item: int) -> str:
        c = self.catalog
        genres = ", ".join(c.genre_lists[item])
        line = f"{n}. {c.titles[item]} [{genres}]"
        note = self._item_note(item)
        return line + (f" - {note}" if note else "")

    def _item_note(self, item: int) -> str:
        """The item's text as shown (its first ``item_chars`` characters) without what the item
        line already says: a leading title and a "Genres: ..." sentence naming the same genres."""
        c = self.catalog
        if not self.params.item_chars:
            return ""
        rest, title = str(c.items["text"].iat[item])[:self.params.item_chars], c.titles[item]
        for prefix in (title + ".", title):
            if rest.startswith(prefix):
                rest = rest[len(prefix):].lstrip()
                break
        said = f"Genres: {', '.join(c.genre_lists[item])}."
        if rest.startswith(said):
            rest = rest[len(said):].lstrip()
        elif rest and said.startswith(rest):          # cut inside the genre list: nothing new
            rest = ""
        return rest

    def _request(self, state: UserState, prompt: str, schema, purpose: str, now: float, logprobs: int | None = None):
        """One LLM request; its log record names the user, the session and the simulated time
        of the decision, so ``Run.decisions()`` can join it to the events it produced.  With
        ``logprobs``, a score request (one token, that many candidates) without a schema."""
        from recworld.simulator.llm.service import LLMRequest

        seed = int(state.rng.integers(2**31 - 1))
        system = self.persona(state, JSON_FORMAT if logprobs is None else PICK_FORMAT)
        return LLMRequest([{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                          schema, seed, {"user": state.user_id, "purpose": purpose, "session": state.session,
                                         "sim_time": float(now)}, logprobs=logprobs)

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
        if self.decision == "logprobs":
            return self._pick_by_logprobs(state, items, page, now)
        return self._page_json(state, items, page, now)

    def _page_json(self, state: UserState, items: np.ndarray, page: int, now: float):
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
            return self._page_choice(state, picks, a, now)
        return Think([req], then)

    def _pick_by_logprobs(self, state: UserState, items: np.ndarray, page: int, now: float):
        """The ``logprobs`` page decision: a score request, picks drawn from it, then (only
        with picks) a short JSON request for their ratings, feelings and the next step."""
        n, p = len(items), self.params
        labels = pick_labels(n)
        day, clock = _clock(now)
        listing = "\n".join(self._item_line(lab, int(it)) for lab, it in zip(labels, items))
        query = state.query
        prompt = self.templates["page_pick"].safe_substitute(
            day=day, clock=clock, page=page + 1, items=listing, memories=self._memories(state, listing, now),
            query_note=f" for your search '{query}'" if query else "",
            label="number" if labels[0].isdigit() else "letter", none=NONE_LABEL)
        req = self._request(state, prompt, None, "page_pick", now, logprobs=p.top_logprobs)

        def scored(results):
            r = results[0]
            if r.fallback_reason == "no_logprobs":
                if self.decision == "logprobs":
                    log.warning("the LLM server returns no log-probabilities (%s); the LLM brain's page decisions "
                                "use decision: json from now on", (r.error or "")[:200])
                    self.decision = "json"
                return self._page_json(state, items, page, now)
            scores = label_logprobs(r.top_logprobs, labels)
            none = float(label_logprobs(r.top_logprobs, [NONE_LABEL])[0])
            self.decisions += 1
            if not r.ok or not np.isfinite(scores).any():
                self.fallbacks += 1
                log.debug("user %s: page scores unusable (%s); the parametric brain decides",
                          state.user_id, r.error or "no option label among the candidates")
                return self.fallback.choose_from_slate(state, items, page, now)
            after_pick = float(np.exp(self.fallback.params.fatigue + 1.0))   # as the parametric brain
            picks = draw_picks(scores, none, state.rng, p.max_watch_per_page, p.pick_temperature, after_pick)
            if not picks:
                return self._continue(state, picks, now)
            return self._rate(state, items, picks, page, now)
        return Think([req], scored)

    def _rate(self, state: UserState, items: np.ndarray, picks: list[int], page: int, now: float):
        """The second pass of a ``logprobs`` page decision: the picks' ratings and feelings, the next step."""
        day, clock = _clock(now)
        chosen = "\n".join(self._item_line(k, int(items[j])) for k, j in enumerate(picks, 1))
        prompt = self.templates["page_rate"].safe_substitute(
            day=day, clock=clock, page=page + 1, chosen=chosen,
            query_note=f" for your search '{state.query}'" if state.query else "")
        req = self._request(state, prompt, rate_schema(len(picks)), "page_rate", now)

        def then(results):
            r = results[0]
            if self._failed(r, "page ratings", state):
                return self._continue(state, picks, now)       # ratings come from the parametric brain
            a = r.parsed
            pending = state.extra.setdefault("pending", {})
            for j, w in zip(picks, a.watched):
                pending[int(items[j])] = (float(w.rating), w.feeling.strip())
            return self._page_choice(state, picks, a, now)
        return Think([req], then)

    def _page_choice(self, state: UserState, picks: list[int], answer, now: float) -> PageChoice:
        """The picks and the answer's next step; a search without a query gets the parametric brain's."""
        q = answer.query.strip() or None
        if answer.next == "search" and q is None:
            q = self.fallback.search_query(state, now)
        return PageChoice(picks, answer.next, q)

    def _continue(self, state: UserState, picks: list[int], now: float) -> PageChoice:
        """What the user does after a page, by the parametric brain's rule (stay, then search or next)."""
        fp, rng = self.fallback.params, state.rng
        stay = fp.continue_bias - fp.fatigue * state.pages_seen - 0.8 * len(picks)
        if rng.random() >= 1.0 / (1.0 + np.exp(-stay)):
            return PageChoice(picks, "leave")
        if rng.random() < fp.search_rate:
            return PageChoice(picks, "search", self.fallback.search_query(state, now))
        return PageChoice(picks, "next")

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
