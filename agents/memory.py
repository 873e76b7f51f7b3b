"""Agent memory, RecAgent-style and budgeted: sensory -> short-term -> long-term.

- Sensory memory holds the raw observations since the agent last decided.
- When the agent decides, they move to short-term memory with a heuristic importance
  (no LLM call).  Short-term memory is small; what falls out of it enters long-term
  memory if it is important enough or was observed again while short-term, and is
  forgotten otherwise.
- Long-term memory is bounded: over capacity, the memories with the lowest retention
  (importance x recency) are forgotten.
- Retrieval scores every short- and long-term memory by recency (exponential decay in
  simulated hours), importance and relevance (cosine similarity of hashed bag-of-words
  vectors; no model download) and returns the top ``k``.
- Reflection: once enough important memories have accumulated, the brain asks the LLM for
  an insight, which is stored as a long-term memory of high importance.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

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

    def perceive(self, time: float, text: str) -> None:
        self.sensory.append((time, text))

    def consolidate(self) -> None:
        """Sensory -> short-term; what short-term overflows goes long-term or is forgotten."""
        p = self.params
        for time, text in self.sensory:
            vec = embed(text)
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
        self._store(MemoryRecord(text, time, 0.9, embed(text), kind="insight"))
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
        rel = np.stack([m.vec for m in mems]) @ embed(query)
        score = p.w_recency * self._recency(times, now) + p.w_importance * imp + p.w_relevance * rel
        top = np.argsort(-score, kind="stable")[:k]
        return sorted((mems[i] for i in top), key=lambda m: m.time)

    def important(self, n: int = 10) -> list[MemoryRecord]:
        """The most recent important memories (what a reflection looks at)."""
        mems = [m for m in self.all() if m.importance >= self.params.promote_importance and m.kind == "observation"]
        return sorted(mems, key=lambda m: m.time)[-n:]
