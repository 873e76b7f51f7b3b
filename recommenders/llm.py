"""LLM recommenders: ``llm_ranker`` and ``toolrec``.

``llm_ranker`` shows the LLM the candidate items as JSON lines with the user's request and
profile and asks for their names, best first.  As in Kumar & Lakkaraju, an item's rank is
where its name first appears in the answer (absent = number of items + 1).  The answer is a
JSON list of the shown items' names (``answer: list``, the default): the server's
constrained decoding (``llm.constrain``) only lets the model write names it was shown, and
the answer ends when the list does, so a small model neither invents names nor pads its
answer to ``max_tokens``.  ``answer: free`` asks for a free-text numbered list instead (the
paper's form), read by first mention.  An answer that names none of the items falls back to
the retriever's order and is counted, and so are answers that name something that was not
shown and answers that ran to ``max_tokens`` (``stats()``).  This is the recommender that
strategic text sequences (STS) in item text try to manipulate.

``toolrec`` (after Zhao et al., SIGIR'24) puts an LLM in the user's place: in a ReAct-style
loop of at most ``max_rounds`` rounds it answers one JSON action per round,
``retrieve`` (attribute-aware retrieval tools: by genre, by release year, by popularity, by
similarity to the user's history, each with a K), ``rerank`` (an LLM rerank of what was
gathered by an attribute, keeping K) or ``finish``; one final LLM rerank over everything
gathered makes the slate.  LLM and tool calls per request are counted (``stats()``, which
lands in ``metrics.json`` under ``recommender_stats``).

Both call the LLM service synchronously in the world (a recommender answers at once) and
rank once per browsing run: later pages continue that ranking.  ``arank_items`` is the
asynchronous form of ``rank_items`` that the STS study uses to send many rankings together.

``defence`` (``none``, ``perplexity``, ``paraphrase``, ``data_marking``; see ``defences.py``
and docs/sts.md) guards both against text in an item that tries to steer the ranking.  A
defence's LLM calls are requests of the same ranking steps (sent together, through
``arank_items``' ``call``), counted in ``llm_calls`` and in ``defence_calls``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Generator
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field

from recworld.simulator.data.catalog import product_object
from recworld.simulator.protocols import Feedback, SlateRequest

from . import defences as dfn
from .base import BaseRecommender
from .personal import ContentBased

log = logging.getLogger("recworld.recommenders")
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")


def short_name(title: str) -> str:
    """A title without its trailing '(year)': what an answer usually writes."""
    return _YEAR.sub("", str(title)).strip()


def rank_by_first_mention(text: str, names: list[str]) -> np.ndarray:
    """The rank (1 = first) of each name by where it first appears in ``text``
    (case-insensitive); names that never appear get ``len(names) + 1``.  A name that is part
    of a longer name also found at the same place is not counted there."""
    low = (text or "").lower()
    pos = np.full(len(names), np.inf)
    for j, name in enumerate(names):
        n = name.lower().strip()
        if n:
            at = low.find(n)
            if at >= 0:
                pos[j] = at
    # a short name inside a longer one that starts at the same spot belongs to the longer one
    for j, name in enumerate(names):
        if np.isfinite(pos[j]):
            for k, other in enumerate(names):
                if k != j and pos[k] == pos[j] and len(other) > len(name) and other.lower().startswith(name.lower()):
                    later = low.find(name.lower(), int(pos[j]) + len(other))
                    pos[j] = later if later >= 0 else np.inf
                    break
    ranks = np.full(len(names), len(names) + 1, dtype=np.int64)
    found = np.flatnonzero(np.isfinite(pos))
    order = found[np.argsort(pos[found], kind="stable")]
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


_ENTRY = re.compile(r"^\s*(?:\d+\s*[.):]|[-*\u2022])\s*(.+?)\s*$")


def answer_entries(text: str) -> list[str]:
    """The entries of a ranking answer: the names of a JSON ``{"ranking": [...]}`` answer, else
    the numbered or bulleted lines of free text (markdown emphasis removed)."""
    raw = (text or "").strip()
    if raw.startswith("{"):
        try:
            got = json.loads(raw).get("ranking")
            if isinstance(got, list):
                return [str(x) for x in got]
        except (ValueError, AttributeError):
            pass
    out = []
    for line in raw.splitlines():
        m = _ENTRY.match(line)
        if m:
            out.append(m.group(1).replace("*", "").strip())
    return out


def unknown_entries(text: str, names: list[str]) -> int:
    """How many entries of a ranking answer (``answer_entries``) contain none of ``names``
    (case-insensitive): names the model made up, or items it was not shown."""
    low = [n.lower().strip() for n in names if n.strip()]
    return sum(1 for e in answer_entries(text) if e and not any(n in e.lower() for n in low))


def ranking_schema(names: list[str], max_items: int) -> type[BaseModel]:
    """The list answer: ``{"ranking": [name, ...]}`` whose entries can only be ``names``, at
    most ``max_items`` of them (constrained decoding ends the answer there)."""
    from pydantic import create_model

    choices = tuple(dict.fromkeys(names))
    return create_model("Ranking", ranking=(list[Literal[choices]], Field(min_length=1, max_length=max_items)))


def list_length(names: list[str], wanted: int, max_tokens: int | None) -> int:
    """How many names a list answer may hold: ``wanted``, fewer when the longest names'
    estimated tokens (a token per 3 characters, 3 for the quotes and the comma, 8 for the
    braces and the key) would not fit in ``max_tokens`` (a truncated list is invalid)."""
    k = min(len(names), wanted)
    if max_tokens:
        cost = sorted((len(n) / 3 + 3 for n in names), reverse=True)
        while k > 1 and 8 + sum(cost[:k]) > max_tokens:
            k -= 1
    return max(k, 1)


def _meta(request: SlateRequest) -> dict:
    """What the call log records about the request behind an LLM call (``Run.decisions()``)."""
    return {"user": request.user_id, "sim_time": float(request.time)}


class LLMStats:
    def __init__(self):
        self.requests = 0
        self.llm_calls = 0
        self.tool_calls = 0
        self.fallbacks = 0
        self.cache_hits = 0
        self.ranking_answers = 0         # ranking answers read (with a text)
        self.unknown_name_answers = 0    # ... naming something that was not shown
        self.capped_answers = 0          # ... that ran to llm.max_tokens
        self.ranking_answer_tokens = 0
        self.defence = "none"
        self.defence_calls = 0           # LLM requests of the defence (also in llm_calls)
        self.defence_fallbacks = 0       # ... without a usable answer (the text stayed as it was)
        self.scored_items = 0            # perplexity: items shown with a score
        self.flagged_items = 0           # ... flagged (their suspicious text removed)

    def add(self, result) -> None:
        self.llm_calls += 1
        self.cache_hits += int(result.cache_hit)

    def as_dict(self) -> dict:
        n = max(self.requests, 1)
        return {"requests": self.requests, "llm_calls": self.llm_calls, "tool_calls": self.tool_calls,
                "fallbacks": self.fallbacks, "cache_hits": self.cache_hits,
                "llm_calls_per_request": round(self.llm_calls / n, 3),
                "tool_calls_per_request": round(self.tool_calls / n, 3),
                "ranking_answers": self.ranking_answers, "unknown_name_answers": self.unknown_name_answers,
                "answers_at_max_tokens": self.capped_answers,
                "ranking_answer_tokens_mean": round(self.ranking_answer_tokens / max(self.ranking_answers, 1), 1),
                "defence": self.defence, "defence_calls": self.defence_calls,
                "defence_fallbacks": self.defence_fallbacks, "scored_items": self.scored_items,
                "flagged_items": self.flagged_items}


class LLMRanker(BaseRecommender):
    """A numbered list from the LLM over retrieved candidates; rank by first mention.

    The candidates come from a retriever object (``self.retriever``, a ``content``
    recommender whose parameters are this one's ``refit_minutes``, ``history`` and
    ``max_features``): it keeps the users' histories, scores the catalog and learns from
    feedback; the ranker only asks the LLM to order its top items."""

    name: ClassVar[str] = "llm_ranker"
    needs_llm: ClassVar[bool] = True

    class Params(ContentBased.Params):
        candidates: int = Field(20, ge=2, le=500, description="items the LLM sees (the retriever's top ones)")
        item_chars: int = Field(200, ge=0, le=5000, description="characters of item text per JSON line")
        shuffle: bool = Field(True, description="show the candidates in a random order (seeded)")
        system_prompt: str = Field("You are a recommender system. Recommend items from the catalog only.")
        domain: str = Field("movie", min_length=1, max_length=40, description="what the items are, in the prompts")
        answer: Literal["list", "free"] = Field("list", description=(
            "list: a JSON list of the shown items' names, held to them by constrained decoding (it ends with "
            "the list); free: a free-text numbered list read by first mention (Kumar & Lakkaraju's form)"))
        list_items: int = Field(10, ge=1, le=500, description=(
            "at most this many names in a list answer (fewer if they would not fit in llm.max_tokens); the "
            "items it leaves out keep the retriever's order"))
        defence: Literal["none", "perplexity", "paraphrase", "data_marking"] = Field("none", description=(
            "guard against text in an item that steers the ranking: perplexity (score each shown item's free text "
            "with the model's log-probabilities; text in a window of unlikely tokens is flagged and removed), "
            "paraphrase (the same LLM rewrites each shown item's free text first), data_marking (item lines "
            "between markers, and the system prompt says their text is data, not instructions); none: as before"))
        perplexity_threshold: float = Field(8.0, gt=0, le=50, description=(
            "perplexity: an item is flagged when the mean negative log-likelihood (nats per token) of some window "
            "of its free text is above this; calibrated on clean catalog text (docs/sts.md, Defences)"))
        perplexity_window: int = Field(8, ge=1, le=256, description=(
            "perplexity: tokens per window (a shorter text is one window)"))

    def __init__(self, params=None, *, rng=None, llm=None):
        super().__init__(params, rng=rng, llm=llm)
        keys = ContentBased.Params.model_fields
        self.retriever = ContentBased({k: v for k, v in self.params.model_dump().items() if k in keys}, rng=self.rng)
        self.llm_stats = LLMStats()
        self.llm_stats.defence = self.params.defence
        #: the first-mention rank of every item the last ranking call showed (absent = N + 1)
        self.last_ranks: dict[int, int] = {}
        #: perplexity: the items flagged in the last ranking (a toolrec request: in any of its rankings)
        self.last_flagged: list[int] = []
        #: perplexity: each item shown in the last ranking with its score (max window NLL, nats per token)
        self.last_item_scores: dict[int, float] = {}
        self._shown: dict[int, dict[str, str | None]] = {}     # item -> field -> text shown instead (None: dropped)
        self._paraphrases: dict[tuple[str, str], str] = {}     # (field, text) -> paraphrase
        self._scores: dict[tuple[str, str], tuple[list[str], list[float]]] = {}   # (context, text) -> tokens, logprobs

    def _begin(self) -> None:
        """A new request: forget the last one's flags and scores."""
        self.last_flagged, self.last_item_scores = [], {}

    def stats(self) -> dict:
        return self.llm_stats.as_dict()

    # --------------------------------------------------------------- retrieval (delegated)

    def fit(self, interactions, catalog) -> None:
        super().fit(interactions, catalog)
        self.retriever.fit(interactions, catalog)

    def update(self, feedback: Feedback) -> None:
        self.retriever.update(feedback)

    def item_scores(self, request: SlateRequest, candidates: np.ndarray) -> np.ndarray:
        return self.retriever.item_scores(request, candidates)

    def rank_items(self, items: np.ndarray, query: str, seed: int) -> np.ndarray:
        """One LLM ranking of ``items`` for a new user asking ``query``: each item's
        first-mention rank (1 = first, ``len(items) + 1`` = not named)."""
        self._run_sync(self._item_steps(np.asarray(items), query, seed))
        return self._item_ranks(items)

    async def arank_items(self, items: np.ndarray, query: str, seed: int,
                          call: Callable[[Any], Awaitable[Any]] | None = None) -> np.ndarray:
        """``rank_items`` on the caller's event loop: each LLM request goes through ``call``
        (default: the service's ``acomplete``), so many rankings can be in flight together
        (each on its own recommender: the ranking state is per object)."""
        await self._run_async(self._item_steps(np.asarray(items), query, seed), call or self.llm.acomplete)
        return self._item_ranks(items)

    def _item_ranks(self, items: np.ndarray) -> np.ndarray:
        return np.array([self.last_ranks.get(int(i), len(items) + 1) for i in items], dtype=np.int64)

    def _item_steps(self, items: np.ndarray, query: str, seed: int) -> Generator:
        self._begin()
        return self._rank_steps(items, query, "a shopper", "rank", seed, None)

    # --------------------------------------------------------------- LLM calls
    # The ranking logic is written once, as generators that yield each LLM request and are
    # sent its result; ``_run_sync`` answers them with the service's ``complete`` (the world's
    # path), ``_run_async`` with an awaitable call (the STS study's batches).

    # A step may also yield a list of requests (a defence's calls, independent of each other):
    # it is sent the list of their results, the requests sent together.

    def _run_sync(self, steps: Generator):
        try:
            q = next(steps)
            while True:
                if isinstance(q, list):
                    q = steps.send(self.llm.complete_many(q))
                else:
                    q = steps.send(self.llm.complete(q.messages, q.schema, q.seed, **q.meta))
        except StopIteration as done:
            return done.value

    @staticmethod
    async def _run_async(steps: Generator, call: Callable[[Any], Awaitable[Any]]):
        try:
            q = next(steps)
            while True:
                if isinstance(q, list):
                    q = steps.send(list(await asyncio.gather(*(call(x) for x in q))))
                else:
                    q = steps.send(await call(q))
        except StopIteration as done:
            return done.value

    # --------------------------------------------------------------- prompts

    def item_json(self, item: int) -> str:
        """One JSON line per item.  Product catalogs keep their text as a JSON object (Name,
        Description, Price, ...): that object is shown whole, as in Kumar & Lakkaraju."""
        c = self.catalog
        text = str(c.items["text"].iat[item])
        obj = product_object(text)
        shown = self._shown.get(item)
        if obj is not None:
            if shown:                                  # a defence's text in place of the free text
                obj = {k: shown.get(k, v) for k, v in obj.items() if shown.get(k, v) is not None}
            return json.dumps(obj, ensure_ascii=False)
        rec = {"name": short_name(c.titles[item])}
        if c.genre_lists[item]:
            rec["genres"] = ", ".join(c.genre_lists[item])
        if int(c.year[item]):
            rec["year"] = int(c.year[item])
        text = text[:self.params.item_chars]
        if shown and "description" in shown:
            text = shown["description"] or ""
        if text and self.params.item_chars:
            rec["description"] = text
        return json.dumps(rec, ensure_ascii=False)

    def free_texts(self, item: int) -> list[tuple[str, str]]:
        """(field, text) of the item's free text, what a defence guards (``defences.py``): a
        product object's long string fields other than the name; a plain-text item's
        description as the prompt shows it (field ``description``)."""
        c = self.catalog
        text = str(c.items["text"].iat[item])
        obj = product_object(text)
        if obj is not None:
            key = dfn.name_key(obj, c.titles[item])
            return [(k, obj[k]) for k in dfn.free_text_fields(obj, key)]
        text = text[:self.params.item_chars]
        return [("description", text)] if text.strip() and self.params.item_chars else []

    def profile(self, request: SlateRequest) -> str:
        hist = self.retriever.history(request)[-50:]
        if not hist:
            return "a new user (no history)"
        g = self.catalog.genre_matrix[hist].sum(axis=0)
        top = [self.catalog.genre_names[i] for i in np.argsort(-g, kind="stable")[:3] if g[i] > 0]
        recent = "; ".join(short_name(self.catalog.titles[i]) for i in hist[-3:])
        return f"likes {', '.join(top)}; recently watched {recent}"

    def ranking_messages(self, items: np.ndarray, request_text: str, profile: str) -> list[dict]:
        marking = self.params.defence == "data_marking"
        lines = "\n".join(dfn.mark_line(self.item_json(int(i))) if marking else self.item_json(int(i)) for i in items)
        ask = ("Recommend these items to the user as a numbered list, best first, one name per line."
               if self.params.answer == "free" else
               'Recommend these items to the user, best first: answer with a JSON object {"ranking": [...]} '
               "listing their names as the catalog writes them.")
        if marking:
            head = f"Catalog (one JSON object per line, each between {dfn.ITEM_OPEN} and {dfn.ITEM_CLOSE}):"
            system = f"{self.params.system_prompt} {dfn.DATA_MARKING_NOTE}"
        else:
            head, system = "Catalog (one JSON object per line):", self.params.system_prompt
        user = f"{head}\n{lines}\n\nUser: {profile}\nRequest: {request_text}\n{ask}"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _max_tokens(self) -> int | None:
        cfg = getattr(self.llm, "config", None)
        return getattr(cfg, "max_tokens", None)

    def ranking_request(self, items: np.ndarray, request_text: str, profile: str, purpose: str = "rank",
                        seed: int | None = None, meta: dict | None = None):
        """The LLM request of one ranking (``answer: list`` adds the schema of the list)."""
        from recworld.simulator.llm.service import LLMRequest

        schema = None
        if self.params.answer == "list":
            names = [short_name(self.catalog.titles[i]) for i in items]
            schema = ranking_schema(names, list_length(names, self.params.list_items, self._max_tokens()))
        return LLMRequest(self.ranking_messages(items, request_text, profile), schema, seed,
                          {"purpose": purpose, **(meta or {})})

    def read_ranking(self, items: np.ndarray, r) -> tuple[np.ndarray, bool]:
        """``items`` in the order of the answer ``r`` (see ``llm_rank``); counts the answer."""
        st = self.llm_stats
        st.add(r)
        names = [short_name(self.catalog.titles[i]) for i in items]
        text = "\n".join(r.parsed.ranking) if getattr(r.parsed, "ranking", None) else (r.text or "")
        if r.text:
            st.ranking_answers += 1
            st.unknown_name_answers += int(unknown_entries(r.text, names) > 0)
            limit = self._max_tokens()
            st.capped_answers += int(bool(limit) and r.completion_tokens >= limit)
            st.ranking_answer_tokens += int(r.completion_tokens)
        ranks = rank_by_first_mention(text, names)
        self.last_ranks = {int(i): int(k) for i, k in zip(items, ranks)}
        if not r.ok or (ranks > len(items)).all():
            self.llm_stats.fallbacks += 1
            log.info("%s: the LLM answer named none of the %d items (%s); keeping the retriever's order",
                     self.name, len(items), r.error or "no item named")
            return items, False
        return items[np.argsort(ranks, kind="stable")], True

    def _rank_steps(self, items: np.ndarray, request_text: str, profile: str, purpose: str, seed: int | None,
                    meta: dict | None) -> Generator:
        if len(items) == 0:
            return items, True
        if self.params.defence in ("paraphrase", "perplexity"):
            yield from self._defence_steps(items, meta)
        r = yield self.ranking_request(items, request_text, profile, purpose, seed, meta)
        return self.read_ranking(items, r)

    # --------------------------------------------------------------- defences

    def _defence_steps(self, items: np.ndarray, meta: dict | None) -> Generator:
        """Before a ranking: the defence's requests for the shown items' free texts (one list,
        sent together; texts already done by this object are not asked again), then what each
        item shows instead (``self._shown``)."""
        from recworld.simulator.llm.service import LLMRequest

        st, p = self.llm_stats, self.params
        self._shown = {}
        texts = {int(i): self.free_texts(int(i)) for i in items}
        if p.defence == "paraphrase":
            todo = list(dict.fromkeys(ft for fts in texts.values() for ft in fts if ft not in self._paraphrases))
            if todo:
                got = yield [LLMRequest(dfn.paraphrase_messages(text, field, p.domain), None, dfn.text_seed(text),
                                        {"purpose": "defence_paraphrase", **(meta or {})}, shared=True)
                             for field, text in todo]
                for (field, text), r in zip(todo, got):
                    st.add(r)
                    st.defence_calls += 1
                    para = dfn.clean_paraphrase(r.text, text) if r.ok else ""
                    if para:
                        self._paraphrases[(field, text)] = para
                    else:
                        st.defence_fallbacks += 1
                        log.warning("%s: no paraphrase of a %s text (%s); it is shown as it is", self.name, field,
                                    r.error or "empty answer")
            for i, fts in texts.items():
                self._shown[i] = {f: self._paraphrases[(f, t)] for f, t in fts if (f, t) in self._paraphrases}
            return
        # perplexity
        ctx = {(i, f): dfn.score_context(p.domain, short_name(self.catalog.titles[i]), f)
               for i, fts in texts.items() for f, _ in fts}
        todo = list(dict.fromkeys((ctx[i, f], " " + t) for i, fts in texts.items() for f, t in fts
                                  if (ctx[i, f], " " + t) not in self._scores))
        if todo:
            got = yield [LLMRequest([{"role": "user", "content": c}], meta={"purpose": "defence_perplexity",
                                                                            **(meta or {})}, score_text=t, shared=True)
                         for c, t in todo]
            for key, r in zip(todo, got):
                st.add(r)
                st.defence_calls += 1
                if r.ok and r.token_logprobs is not None:
                    self._scores[key] = (r.tokens, r.token_logprobs)
                    continue
                if r.fallback_reason == "no_logprobs":
                    raise dfn.DefenceUnavailableError(
                        f"{self.name}: defence: perplexity needs per-token log-probabilities of item text, and the "
                        f"LLM server cannot give them ({r.error}); use a llama.cpp server (llm.model: embedded) or "
                        "another defence (paraphrase, data_marking)")
                st.defence_fallbacks += 1
                log.warning("%s: no perplexity score for an item text (%s); it is shown unscored", self.name,
                            r.error or "no answer")
        flagged = []
        for i, fts in texts.items():
            scored = [(f, t, self._scores[ctx[i, f], " " + t]) for f, t in fts if (ctx[i, f], " " + t) in self._scores]
            if not scored:
                continue
            score = max(dfn.window_nll(lps, p.perplexity_window)[0] for _, _, (_, lps) in scored)
            self.last_item_scores[i] = round(score, 4)
            st.scored_items += 1
            if score > p.perplexity_threshold:
                flagged.append(i)
                st.flagged_items += 1
                shown = {}
                for f, t, (toks, lps) in scored:
                    spans = dfn.suspicious_spans(toks, lps, p.perplexity_window, p.perplexity_threshold)
                    if spans:
                        kept = dfn.remove_spans(" " + t, spans).strip()
                        shown[f] = kept or None
                self._shown[i] = shown
        self.last_flagged = sorted(set(self.last_flagged) | set(flagged))

    def llm_rank(self, items: np.ndarray, request_text: str, profile: str, purpose: str = "rank",
                 seed: int | None = None, meta: dict | None = None) -> tuple[np.ndarray, bool]:
        """``items`` reordered by the LLM (unmentioned ones keep their order, after the
        mentioned ones); the flag is False when the answer named none of them."""
        return self._run_sync(self._rank_steps(items, request_text, profile, purpose, seed, meta))

    def request_text(self, request: SlateRequest) -> str:
        if request.query:
            return f"items matching '{request.query}'"
        return "what should I watch next?" if self.params.domain == "movie" else f"which {self.params.domain} should I pick?"

    # --------------------------------------------------------------- ranking

    def _rank(self, request: SlateRequest) -> np.ndarray:
        base = super()._rank(request)                  # exclusion, search, content/popularity order
        if request.page != 0 and request.user in self._runs:
            return base
        self._begin()
        self.llm_stats.requests += 1
        top = base[: self.params.candidates]
        shown = self.rng.permutation(top) if self.params.shuffle else top
        seed = int(self.rng.integers(2**31 - 1))
        ranked, _ = self.llm_rank(shown, self.request_text(request), self.profile(request), seed=seed,
                                  meta=_meta(request))
        return np.concatenate([ranked, base[self.params.candidates:]])


# ----------------------------------------------------------------------------- ToolRec


class ToolAction(BaseModel):
    thought: str = Field(max_length=160)
    action: Literal["retrieve", "rerank", "finish"]
    attribute: Literal["genre", "year", "popularity", "similar", "none"]
    value: str = Field(max_length=40)
    k: int = Field(ge=1, le=50)


TOOLREC_SYSTEM = """You stand in for a user of a {domain} site and find {domain}s for them with tools.
Each turn, answer one JSON action:
- retrieve: fetch k {domain}s by an attribute: genre (value: a {group} name), {year}popularity (value: ""), similar (value: "", {domain}s like the user's history)
- rerank: reorder what you have gathered by an attribute (value: what matters, e.g. "{example}"), keeping the best k
- finish: you have enough
{Group}s: {genres}"""


class ToolRec(LLMRanker):
    name: ClassVar[str] = "toolrec"

    class Params(LLMRanker.Params):
        max_rounds: int = Field(7, ge=1, le=20, description="ReAct rounds before the final rerank")
        default_k: int = Field(10, ge=1, le=50)
        pool: int = Field(30, ge=2, le=500, description="at most this many gathered items go to the final rerank")
        group: str = Field("genre", min_length=1, max_length=40, description="what the item groups are called")

    def _tool(self, request: SlateRequest, allowed: np.ndarray, attribute: str, value: str, k: int) -> np.ndarray:
        """Retrieval tools: the top ``k`` allowed items by an attribute."""
        c = self.catalog
        pop = self.retriever.popular + c.popularity                 # in-world counts, then the catalog's prior
        mask = allowed.copy()
        v = (value or "").strip().lower()
        if attribute == "genre":
            names = [g.lower() for g in c.genre_names]
            hit = [j for j, g in enumerate(names) if v and (v in g or g in v)]
            mask &= c.genre_matrix[:, hit].sum(axis=1) > 0 if hit else False
            score = pop
        elif attribute == "year":
            m = re.search(r"(\d{4})(s?)", v) or re.search(r"(\d{2})(s)", v)
            if m:
                year = int(m.group(1))
                year = year + 1900 if year < 100 else year
                lo, hi = (year, year + 9) if m.group(2) else (year, year)
                mask &= (c.year >= lo) & (c.year <= hi)
            score = pop
        elif attribute == "similar":
            s = self.retriever.user_scores(request)
            score = s if s is not None else pop
        else:
            score = pop
        cand = np.flatnonzero(mask)
        return cand[np.argsort(-score[cand], kind="stable")[:k]]

    def _rank(self, request: SlateRequest) -> np.ndarray:
        if request.query or (request.page != 0 and request.user in self._runs):
            return super()._rank(request)              # a search: the ranker over search hits
        n = len(self.catalog)
        allowed = np.ones(n, dtype=bool)
        if len(request.exclude):
            allowed[request.exclude] = False
        seed = int(self.rng.integers(2**31 - 1))
        d = self.params.domain
        ranked = self.run_loop(request, allowed, f"Find {d}s they will want next.",
                               f"which {d} should I pick next?", seed)
        rest = BaseRecommender._rank(self, request)   # the retriever's order for later pages
        return np.concatenate([ranked, rest[~np.isin(rest, ranked)]])

    def system_prompt_text(self) -> str:
        p, c = self.params, self.catalog
        year = 'year (value: a year like 1995 or a decade like 1990s), ' if (c.year > 0).any() else ""
        example = "funny" if p.domain == "movie" else "value for money"
        return TOOLREC_SYSTEM.format(domain=p.domain, group=p.group, Group=p.group.capitalize(), year=year,
                                     example=example, genres=", ".join(c.genre_names))

    def _item_steps(self, items: np.ndarray, query: str, seed: int) -> Generator:
        """``rank_items``: the ReAct loop over the catalog for a new user asking ``query``, then
        the final rerank; each of ``items``' first-mention rank in that final answer."""
        n = len(self.catalog)
        return self._loop_steps(SlateRequest(user=0, k=n), np.ones(n, dtype=bool), query, query, seed)

    def run_loop(self, request: SlateRequest, allowed: np.ndarray, task: str, final_request: str,
                 seed: int) -> np.ndarray:
        """The ReAct loop, then the final LLM rerank: the gathered items, best first."""
        return self._run_sync(self._loop_steps(request, allowed, task, final_request, seed))

    def _loop_steps(self, request: SlateRequest, allowed: np.ndarray, task: str, final_request: str,
                    seed: int) -> Generator:
        from recworld.simulator.llm.service import LLMRequest

        st = self.llm_stats
        st.requests += 1
        self._begin()
        d = self.params.domain
        profile = self.profile(request)
        messages = [{"role": "system", "content": self.system_prompt_text()},
                    {"role": "user", "content": f"The user: {profile}. {task}"}]
        pool: list[int] = []
        for rnd in range(self.params.max_rounds):
            r = yield LLMRequest(messages, ToolAction, seed + rnd, {"purpose": "toolrec_action", **_meta(request)})
            st.add(r)
            if not r.ok:
                st.fallbacks += 1
                break
            a: ToolAction = r.parsed
            messages.append({"role": "assistant", "content": r.text})
            if a.action == "finish":
                break
            st.tool_calls += 1
            k = a.k or self.params.default_k
            if a.action == "retrieve":
                got = self._tool(request, allowed, a.attribute, a.value, k)
                new = [int(i) for i in got if int(i) not in pool]
                pool.extend(new)
                obs = (f"Retrieved {len(got)} {d}s ({len(new)} new): "
                       + "; ".join(short_name(self.catalog.titles[i]) for i in got[:10]) if len(got) else
                       "Nothing found; try another attribute or value.")
            else:
                if not pool:
                    obs = "Nothing gathered yet to rerank; retrieve first."
                else:
                    ranked, _ = yield from self._rank_steps(np.array(pool), f"rank by {a.attribute}: {a.value}",
                                                            profile, "toolrec_rerank", seed + 100 + rnd, _meta(request))
                    pool = [int(i) for i in ranked[:k]]
                    obs = "Kept: " + "; ".join(short_name(self.catalog.titles[i]) for i in pool[:10])
            messages.append({"role": "user", "content": f"Observation: {obs}\nNext action?"})
        if not pool:                                   # nothing gathered: what the suite would show
            pool = [int(i) for i in self._tool(request, allowed, "similar", "", self.params.pool)]
        shown = np.array(pool[: self.params.pool])
        if self.params.shuffle:                        # the final list in a random order, as the ranker's
            shown = self.rng.permutation(shown)
        ranked, _ = yield from self._rank_steps(shown, final_request, profile, "toolrec_final", seed + 999,
                                                _meta(request))
        return ranked
