"""Conformance checkers for plug-ins, in the spirit of gymnasium's ``check_env``.

``check_recommender(cls)`` and ``check_brain(cls)`` exercise a plug-in class against a tiny
synthetic world: first each method of the contract in ``recworld.simulator.protocols`` on
its own, then a short world run with the plug-in in it.  A broken rule raises
``PluginCheckError`` naming the rule (e.g. ``[slate-distinct]``) and what was seen; a
plug-in that passes returns a small report (rules checked, events of the run).

Plug-ins that need an LLM (``needs_llm``) are checked with the ``llm`` service given
(for instance an ``LLMService`` on the loopback ``FakeLLMServer`` with the scripted answers
of ``recworld.simulator.testing.scripted``); ``params`` are the plug-in's parameters when
its defaults alone do not build it (e.g. a model path).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from recworld.simulator.protocols import (ActivityChoice, Brain, Consumption, Dialogue, Feedback, PageChoice, Post,
                                          PostDraft, PostReaction, Recommender, Slate, SlateRequest, Think,
                                          UserState)

#: the tiny world plug-ins are checked in
TINY = {
    "name": "plugin-check", "seed": 7, "duration_days": 0.5,
    "data": {"source": "synthetic", "n_items": 60, "n_genres": 4, "duration_mean": 20},
    "population": {"size": 12, "activity": {"median_sessions_per_day": 6}},
    "social": {"graph": "small_world", "degree": 2},
    "session": {"page_size": 4, "max_pages": 3},
    "output": {"plots": False},
}


class PluginCheckError(AssertionError):
    """A plug-in breaks a rule of the contract; ``rule`` is the rule's short name."""

    def __init__(self, kind: str, name: str, rule: str, message: str):
        self.kind, self.plugin, self.rule = kind, name, rule
        super().__init__(f"{kind} {name!r} breaks rule [{rule}]: {message}")


class _Checker:
    def __init__(self, kind: str, cls):
        self.kind, self.cls = kind, cls
        self.name = str(getattr(cls, "name", getattr(cls, "__name__", cls)))
        self.rules: list[str] = []

    def require(self, ok: bool, rule: str, message: str) -> None:
        if rule not in self.rules:
            self.rules.append(rule)
        if not ok:
            raise PluginCheckError(self.kind, self.name, rule, message)

    def call(self, rule: str, what: str, fn, *args, **kw):
        """``fn(*args)``; an exception becomes a broken ``rule``."""
        try:
            return fn(*args, **kw)
        except PluginCheckError:
            raise
        except Exception as e:  # noqa: BLE001 - reported as the broken rule
            self.require(False, rule, f"{what} raised {type(e).__name__}: {e}")

    def common(self, base: type, params, llm) -> None:
        cls = self.cls
        self.require(isinstance(cls, type) and issubclass(cls, base), "subclass",
                     f"must subclass recworld.{base.__name__} (got {cls!r})")
        self.require(isinstance(cls.name, str) and bool(cls.name.strip()), "name",
                     f"class attribute `name` must be a non-empty string (got {cls.name!r})")
        P = cls.Params
        self.require(isinstance(P, type) and issubclass(P, BaseModel), "params-model",
                     f"`Params` must be a pydantic BaseModel subclass (got {P!r})")
        self.require(P.model_config.get("extra") == "forbid", "params-forbid-unknown",
                     "`Params` must reject unknown keys (model_config = ConfigDict(extra='forbid')) so a typo in "
                     "a scenario is an error, not a silent default")
        self.call("params-validate", "Params.model_validate(params)", P.model_validate, params or {})
        self.require(isinstance(cls.needs_llm, bool), "needs-llm", f"`needs_llm` must be a bool (got {cls.needs_llm!r})")
        if cls.needs_llm:
            self.require(llm is not None, "needs-llm",
                         "the plug-in declares needs_llm: pass llm= (an LLM service) to the checker")


def _tiny(extra: dict | None = None):
    from recworld.simulator.build import build_parts
    from recworld.simulator.scenario import load_scenario

    raw = json.loads(json.dumps(TINY))
    for k, v in (extra or {}).items():
        raw[k] = v
    scn = load_scenario(raw)
    return scn, build_parts(scn)


def _resolve(decision, llm, chk: _Checker, what: str):
    """A decision, with any ``Think`` answered by ``llm`` (as the world would)."""
    for _ in range(50):
        if not isinstance(decision, Think):
            return decision
        chk.require(llm is not None, "think-needs-llm", f"{what} returned a Think but the plug-in does not "
                                                         "declare needs_llm")
        chk.require(callable(decision.then) and isinstance(decision.requests, list), "think-shape",
                    f"{what}: a Think carries a list of requests and a callable `then`")
        decision = chk.call("think-then", f"{what}: then(results)", decision.then,
                            llm.complete_many(decision.requests))
    chk.require(False, "think-ends", f"{what}: more than 50 chained Think steps")


def _world_run(chk: _Checker, scn_extra: dict, llm) -> int:
    """A short world run with the plug-in registered under a private name; events written."""
    from recworld.simulator.build import build_world
    from recworld.simulator.engine.events import read_events
    from recworld.simulator.registry import register, unregister

    kind = "recommenders" if chk.kind == "recommender" else "brains"
    alias = f"_check_{chk.name}"
    register(kind, alias, chk.cls)
    try:
        section = {"recommender": {**scn_extra.get("recommender", {}), "name": alias}} if kind == "recommenders" \
            else {"population": {**TINY["population"], "brain": {**scn_extra.get("brain", {}), "name": alias}}}
        scn, parts = _tiny({**{k: v for k, v in scn_extra.items() if k not in ("recommender", "brain")}, **section})
        with tempfile.TemporaryDirectory() as tmp:
            world = chk.call("world-run", "building a world with it", build_world, scn, tmp, parts, llm=llm)
            try:
                chk.call("world-run", "a world run with it", world.run, progress=False)
            finally:
                world.close()
            events = read_events(Path(tmp))
    finally:
        unregister(kind, alias)
    chk.require(int((events["kind"] == "slate").sum()) > 0, "world-run", "the world run showed no slate")
    return len(events)


# ----------------------------------------------------------------------------- recommenders


def _attach(chk: _Checker, rec, scn, parts) -> None:
    """``attach`` the recommender to a (not running) world over the tiny parts, as build_world does."""
    from recworld.simulator import registry
    from recworld.simulator.build import seed_streams
    from recworld.simulator.engine.events import NullLog
    from recworld.simulator.engine.world import World

    brain = registry.load("brains", "parametric")(catalog=parts.catalog, population=parts.population)
    world = World(scn, parts.catalog, parts.population, parts.graph, rec, brain, NullLog(),
                  seed_streams(scn)["users"])
    out = chk.call("attach", "attach(world)", rec.attach, world)
    chk.require(out is None, "attach", f"attach returns None (got {type(out).__name__})")


def check_recommender(cls, params: dict | None = None, llm=None, world: bool = True,
                      scenario: dict | None = None) -> dict:
    """Check a recommender class against the contract; raises ``PluginCheckError`` naming
    the broken rule, else returns ``{"rules": [...], "events": N}``.  ``scenario``: keys
    that replace those of the tiny world (e.g. ``{"session": {"page_size": 5}}``)."""
    chk = _Checker("recommender", cls)
    chk.common(Recommender, params, llm)
    scn, parts = _tiny(scenario)
    cat, inter = parts.catalog, parts.interactions
    pass_llm = llm if cls.needs_llm else None

    def build(seed: int):
        rec = chk.call("constructor", "cls(params, rng=..., llm=...)", cls, cls.Params.model_validate(params or {}),
                       rng=np.random.default_rng(seed), llm=pass_llm)
        out = chk.call("fit", "fit(interactions, catalog)", rec.fit, inter, cat)
        chk.require(out is None, "fit", f"fit returns None (got {type(out).__name__})")
        _attach(chk, rec, scn, parts)
        return rec

    rec = build(0)
    n, k = len(cat), scn.session.page_size
    exclude = np.arange(0, n, 7)
    requests = [SlateRequest(user=u, k=k, page=page, exclude=exclude, time=10.0 * u + page,
                             user_id=int(parts.population.ids[u])) for u in range(3) for page in range(2)]
    requests.append(SlateRequest(user=0, k=k, exclude=exclude, query=cat.genre_names[0], time=50.0,
                                 user_id=int(parts.population.ids[0])))
    slates = []
    for req in requests:
        slate = chk.call("recommend", f"recommend({req})", rec.recommend, req)
        chk.require(isinstance(slate, Slate), "recommend-returns-slate",
                    f"recommend must return a Slate (got {type(slate).__name__})")
        items = np.asarray(slate.items)
        chk.require(items.ndim == 1 and (len(items) == 0 or np.issubdtype(items.dtype, np.integer)),
                    "slate-items", f"Slate.items must be a 1-d array of catalog indices (got {items!r})")
        chk.require(len(items) <= req.k, "slate-size", f"{len(items)} items for a slate of k={req.k}")
        chk.require(len(set(items.tolist())) == len(items), "slate-distinct", f"duplicate items {items.tolist()}")
        chk.require(len(items) == 0 or (items.min() >= 0 and items.max() < n), "slate-in-catalog",
                    f"item indices outside 0..{n - 1}: {items.tolist()}")
        chk.require(not np.isin(items, req.exclude).any(), "slate-excludes",
                    f"excluded items on the slate: {sorted(set(items.tolist()) & set(req.exclude.tolist()))}")
        if slate.propensities is not None:
            p = np.asarray(slate.propensities, dtype=float)
            chk.require(p.shape == items.shape and bool(((p >= 0) & (p <= 1)).all()), "slate-propensities",
                        f"propensities must be None or one probability per slot (got {p.tolist()})")
        slates.append(items)
        if len(items):
            fb = Feedback(user=req.user, slate=slate, clicked=np.array([0]), ratings=np.array([4.0]),
                          watch_minutes=np.array([10.0]), time=req.time + 1, query=req.query, user_id=req.user_id)
            out = chk.call("update", "update(feedback)", rec.update, fb)
            chk.require(out is None, "update", f"update returns None (got {type(out).__name__})")
    chk.require(any(len(s) for s in slates), "recommend-nonempty", "every slate was empty on a 60-item catalog")
    stats = chk.call("stats", "stats()", rec.stats)
    chk.require(isinstance(stats, dict), "stats", f"stats() returns a dict (got {type(stats).__name__})")
    chk.call("stats", "json.dumps(stats())", json.dumps, stats)
    cand = np.setdiff1d(np.arange(12), exclude)
    ranked = chk.call("rank-candidates", "rank_candidates(request, candidates)", rec.rank_candidates,
                      SlateRequest(user=1, k=len(cand), user_id=int(parts.population.ids[1]), time=100.0), cand)
    ranked = np.asarray(ranked)
    chk.require(set(ranked.tolist()) <= set(cand.tolist()) and len(set(ranked.tolist())) == len(ranked),
                "rank-candidates", f"rank_candidates returns distinct items among the candidates (got {ranked.tolist()})")
    # same seed, same requests -> same slates (no global random state)
    again = build(0)
    for req, first in zip(requests, slates):
        items = np.asarray(again.recommend(req).items)
        chk.require(np.array_equal(items, first), "deterministic",
                    f"two instances with the same rng gave different slates for {req}: {first.tolist()} vs "
                    f"{items.tolist()} (use self.rng, never global random state)")
        if len(items):
            again.update(Feedback(user=req.user, slate=Slate(items), clicked=np.array([0]), ratings=np.array([4.0]),
                                  watch_minutes=np.array([10.0]), time=req.time + 1, query=req.query,
                                  user_id=req.user_id))
    events = _world_run(chk, {**(scenario or {}), "recommender": dict(params or {})}, llm) if world else 0
    return {"rules": chk.rules, "events": events}


# ----------------------------------------------------------------------------- brains


def check_brain(cls, params: dict | None = None, llm=None, world: bool = True) -> dict:
    """Check a brain class against the contract; raises ``PluginCheckError`` naming the
    broken rule, else returns ``{"rules": [...], "events": N}``."""
    chk = _Checker("brain", cls)
    chk.common(Brain, params, llm)
    scn, parts = _tiny()
    cat, pop = parts.catalog, parts.population
    pass_llm = llm if cls.needs_llm else None
    brain = chk.call("constructor", "cls(params, catalog=..., population=..., rng=..., llm=...)", cls,
                     cls.Params.model_validate(params or {}), catalog=cat, population=pop,
                     rng=np.random.default_rng(0), llm=pass_llm)
    for attr in ("decisions", "fallbacks"):
        chk.require(isinstance(getattr(brain, attr, None), int), "counters",
                    f"`{attr}` must be an int counter (call Brain.__init__ from the constructor)")
    n = len(cat)

    def state(u: int, seed: int) -> UserState:
        return UserState(u, int(pop.ids[u]), np.random.default_rng(seed), seen=set(pop.history[u].tolist()))

    def decisions(seed: int) -> list:
        st, other = state(0, seed), state(1, seed + 1)
        st.watched.append((3, 5.0))
        out = []
        act = _resolve(chk.call("choose-activity", "choose_activity", brain.choose_activity, st, 0.0), llm, chk,
                       "choose_activity")
        chk.require(isinstance(act, ActivityChoice) and act.kind in ("browse", "search", "chat", "post", "idle"),
                    "choose-activity", f"returns an ActivityChoice with kind browse/search/chat/post/idle (got {act!r})")
        out.append(act.kind)
        q = _resolve(chk.call("search-query", "search_query", brain.search_query, st, 1.0), llm, chk, "search_query")
        chk.require(isinstance(q, str), "search-query", f"returns a str (got {q!r})")
        items = np.arange(10, 15)
        page = _resolve(chk.call("choose-from-slate", "choose_from_slate", brain.choose_from_slate, st, items, 0, 2.0),
                        llm, chk, "choose_from_slate")
        chk.require(isinstance(page, PageChoice), "choose-from-slate", f"returns a PageChoice (got {page!r})")
        w = list(page.watch)
        chk.require(all(isinstance(p, (int, np.integer)) and 0 <= p < len(items) for p in w) and len(set(w)) == len(w),
                    "page-positions", f"watch holds distinct positions in the slate 0..{len(items) - 1} (got {w})")
        chk.require(page.next in ("next", "search", "leave"), "page-next", f"next is next/search/leave ({page.next!r})")
        out.append((tuple(int(p) for p in w), page.next))
        con = chk.call("consume", "consume", brain.consume, st, 10, 3.0)
        chk.require(isinstance(con, Consumption) and con.minutes >= 0 and 1 <= con.rating <= 5, "consume",
                    f"returns a Consumption with minutes >= 0 and a rating in 1..5 (got {con!r})")
        out.append((round(float(con.minutes), 9), float(con.rating)))
        dlg = _resolve(chk.call("chat", "chat", brain.chat, st, other, 4.0), llm, chk, "chat")
        chk.require(isinstance(dlg, Dialogue) and all(0 <= i < n for i in dlg.mentioned), "chat",
                    f"returns a Dialogue whose mentioned items are catalog indices (got {dlg!r})")
        out.append(dlg.text)
        post = _resolve(chk.call("write-post", "write_post", brain.write_post, st, 5.0), llm, chk, "write_post")
        chk.require(post is None or (isinstance(post, PostDraft) and 0 <= post.item < n), "write-post",
                    f"returns None or a PostDraft about a catalog item (got {post!r})")
        reaction = _resolve(chk.call("read-post", "read_post", brain.read_post, other,
                                     Post(1, 1, 0, 3, "Loved it", 0, 5.0), 6.0), llm, chk, "read_post")
        chk.require(isinstance(reaction, PostReaction) and isinstance(reaction.interested, bool)
                    and isinstance(reaction.repost, bool), "read-post",
                    f"returns a PostReaction of two bools (got {reaction!r})")
        out.append((reaction.interested, reaction.repost))
        return out

    first = decisions(11)
    chk.require(first == decisions(11), "deterministic",
                "the same user state (same rng seed) gave different decisions: draw randomness from state.rng only")
    if cls.oracle:
        st = state(2, 5)
        items = np.arange(4)
        p = chk.call("oracle", "slate_click_probability", brain.slate_click_probability, st, items)
        best = chk.call("oracle", "best_click_probability", brain.best_click_probability, st, 4, np.arange(n))
        chk.require(0 <= p <= 1 and 0 <= best <= 1 and best >= p - 1e-9, "oracle",
                    f"click probabilities in [0, 1] and the best slate's >= any slate's (got {p}, best {best})")
    events = _world_run(chk, {"brain": dict(params or {})}, llm) if world else 0
    return {"rules": chk.rules, "events": events}
