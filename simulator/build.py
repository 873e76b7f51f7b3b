"""Scenario -> World: the one place where data, population, graph and plug-ins are put together.

Randomness: one ``SeedSequence(scenario.seed)`` is split into independent streams for the
data, the population, the graph, the recommender and every user, so the same scenario
always gives the same world and the same events.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recworld.simulator import registry
from recworld.simulator.data.catalog import Catalog
from recworld.simulator.data.sources import (INTERACTION_COLUMNS, bundled_movielens_path, load_movielens, load_products,
                       population_from_ratings, synthetic_catalog, synthetic_population)
from recworld.simulator.engine.events import EventLog
from recworld.simulator.data.population import Population
from recworld.simulator.scenario import Scenario, plugin_params, validate_plugins
from recworld.simulator.data.social import SocialGraph
from recworld.simulator.engine.world import World


STREAMS = ("data", "population", "graph", "recommender", "brain", "users", "groups")


def seed_streams(scenario: Scenario) -> dict[str, np.random.SeedSequence]:
    """Independent, named seed streams of a scenario (adding a stream never shifts the others)."""
    return dict(zip(STREAMS, np.random.SeedSequence(scenario.seed).spawn(len(STREAMS))))


@dataclass
class Parts:
    catalog: Catalog
    population: Population
    interactions: pd.DataFrame
    graph: SocialGraph


def fits_users(scenario: Scenario) -> bool:
    """Whether a brain of the scenario chooses and rates with the user model fitted to the
    rating history (the parametric brain unless its ``fitted`` or ``calibrate`` is false)."""
    pop = scenario.population
    for cfg in [pop.brain] + [g.brain for g in pop.groups]:
        cls = registry.load("brains", cfg.name)
        uses = getattr(cls, "uses_fitted_users", None)
        if uses is not None and uses(plugin_params(cls, cfg)):
            return True
    return False


def build_parts(scenario: Scenario, progress: bool | None = None, fit_users: bool | None = None) -> Parts:
    """Catalog, population, warm-start interactions and social graph of a scenario.

    Before the users are built, their memory is estimated
    (``data.population.estimate_world_bytes``); a world that will not fit in the memory
    available is a ``ScenarioError`` on ``population.size`` that gives the estimate and the
    limit. ``progress``: a bar over the build's steps (None: only for a large world, over
    100,000 users or a synthetic catalog over 500,000 items). ``fit_users``: fit the user
    model to the rating history (MovieLens; ``data.calibration``, 2-3 CPU seconds a history,
    cached); None: when a brain of the scenario uses it (``fits_users``).
    """
    import logging

    from recworld.simulator.data.population import LARGE_WORLD_ITEMS, LARGE_WORLD_USERS, memory_note, memory_problem
    from recworld.simulator.output.progress import progress_bar
    from recworld.simulator.scenario import ScenarioError

    seeds = seed_streams(scenario)
    s_data, s_pop, s_graph = seeds["data"], seeds["population"], seeds["graph"]
    d, pop_cfg, act = scenario.data, scenario.population, scenario.population.activity
    act_kw = dict(activity_median=act.median_sessions_per_day, activity_tail=act.tail_index,
                  activity_max=act.max_sessions_per_day)
    sc = scenario.social
    degree = sc.degree if sc.graph in ("small_world", "scale_free", "random") else 0
    large = pop_cfg.size > LARGE_WORLD_USERS or (d.source == "synthetic" and d.n_items > LARGE_WORLD_ITEMS)
    show = large if progress is None else progress

    def check_memory(n_items: int, n_genres: int) -> None:
        problem = memory_problem(pop_cfg.size, n_items, n_genres, degree)
        if problem is not None:
            raise ScenarioError([("population.size", problem)])
        if large:
            logging.getLogger("recworld").info("%s", memory_note(pop_cfg.size, n_items, n_genres, degree))

    if d.source == "synthetic":
        check_memory(d.n_items, d.n_genres)
    with progress_bar(total=3, desc=f"building {pop_cfg.size:,} users", unit="step", enabled=show,
                      dynamic_ncols=True) as bar:
        bar.set_postfix_str("catalog", refresh=True)
        if d.source == "movielens":
            # with a holdout, only the history comes back: the held-out ratings never reach the world
            ml = load_movielens(d.path or bundled_movielens_path(), n_tags=d.n_tags, holdout=d.holdout)
            catalog, interactions = ml.catalog, ml.ratings
            del ml
            check_memory(len(catalog), len(catalog.genre_names))
            bar.update()
            bar.set_postfix_str("population", refresh=True)
            # the user model fitted to the history (data.calibration), for the brains that use it
            fit = fits_users(scenario) if fit_users is None else fit_users
            population = population_from_ratings(catalog, interactions, pop_cfg.size, np.random.default_rng(s_pop),
                                                 sample=pop_cfg.sample, min_ratings=d.min_ratings, fit=fit,
                                                 **act_kw)
        else:
            if d.source == "synthetic":
                catalog = synthetic_catalog(d.n_items, d.n_genres, np.random.default_rng(s_data), d.duration_mean)
            else:
                catalog = load_products(d.path, consume_minutes=d.consume_minutes)
                check_memory(len(catalog), len(catalog.genre_names))
            bar.update()
            bar.set_postfix_str("population", refresh=True)
            interactions = pd.DataFrame({c: pd.Series(dtype="int64") for c in INTERACTION_COLUMNS})
            population = synthetic_population(catalog, pop_cfg.size, np.random.default_rng(s_pop), **act_kw)
        if scenario.sts is not None and scenario.sts.inject and scenario.sts.text:
            from recworld.simulator.data.inject import inject_from_scenario

            catalog = inject_from_scenario(catalog, scenario)
        bar.update()
        bar.set_postfix_str("social graph", refresh=True)
        if sc.graph == "edgelist":
            graph = SocialGraph.from_edgelist(sc.path, population.ids, directed=sc.directed)
        else:
            graph = SocialGraph.generate(sc.graph, len(population), np.random.default_rng(s_graph),
                                         degree=sc.degree, rewire=sc.rewire)
        bar.update()
    return Parts(catalog, population, interactions, graph)


def needs_llm(scenario: Scenario) -> bool:
    """Whether the scenario's recommender or any of its brains asks for the LLM service."""
    plugins = [("recommenders", scenario.recommender.name), ("brains", scenario.population.brain.name)]
    plugins += [("brains", g.brain.name) for g in scenario.population.groups]
    return any(registry.load(kind, name).needs_llm for kind, name in plugins)


def _llm_for(cls, llm):
    """The LLM service a plug-in is built with: the world's if it declares ``needs_llm``, else None."""
    if not cls.needs_llm:
        return None
    if llm is None:
        raise RuntimeError(f"{cls.__name__} needs the LLM service; pass llm= (see "
                           "recworld.simulator.llm.service.service_from_scenario)")
    return llm


def make_recommender(scenario: Scenario, parts: Parts, llm=None):
    cfg = scenario.recommender
    cls = registry.load("recommenders", cfg.name)
    rec = cls(plugin_params(cls, cfg), rng=np.random.default_rng(seed_streams(scenario)["recommender"]),
              llm=_llm_for(cls, llm))
    rec.fit(parts.interactions, parts.catalog)
    return rec


def make_brain(scenario: Scenario, parts: Parts, cfg=None, llm=None, stream: int = 0):
    """The brain ``cfg`` names (default ``population.brain``)."""
    cfg = cfg or scenario.population.brain
    cls = registry.load("brains", cfg.name)
    seed = seed_streams(scenario)["brain"] if stream == 0 else seed_streams(scenario)["brain"].spawn(stream)[-1]
    return cls(plugin_params(cls, cfg), catalog=parts.catalog, population=parts.population,
               rng=np.random.default_rng(seed), llm=_llm_for(cls, llm))


def make_brains(scenario: Scenario, parts: Parts, llm=None):
    """One brain, or a list with each user's brain when ``population.groups`` mixes them."""
    default = make_brain(scenario, parts, llm=llm)
    groups = scenario.population.groups
    if not groups:
        return default
    n = len(parts.population)
    order = np.random.default_rng(seed_streams(scenario)["groups"]).permutation(n)
    brains = [default] * n
    start = 0
    for g_i, g in enumerate(groups, start=1):
        size = int(round(g.share * n))
        brain = make_brain(scenario, parts, g.brain, llm=llm, stream=g_i)
        for u in order[start:start + size].tolist():
            brains[u] = brain
        start += size
    return brains


def build_world(scenario: Scenario, out_dir: str | Path, parts: Parts | None = None, llm=None) -> World:
    """A ready-to-run World writing its event log under ``out_dir``.

    If the recommender or a brain needs an LLM and ``llm`` is not given, the scenario's
    ``llm`` service is started here (``model: embedded`` starts the local server) and
    ``World.close()`` stops it; its calls are logged to ``out_dir/llm_calls.jsonl``.  A started service is
    checked first with one tiny call (``preflight``): a dead endpoint fails here, in seconds.
    """
    validate_plugins(scenario)
    parts = parts or build_parts(scenario)
    owned = None
    if llm is None and needs_llm(scenario):
        from recworld.simulator.llm.service import service_from_scenario

        llm = owned = service_from_scenario(scenario.llm, log_path=Path(out_dir) / "llm_calls.jsonl")
    try:
        if owned is not None:
            # a dead endpoint, a wrong model or api_base fails here, in seconds; the embedded server
            # passed its health check already, so it gets the call's whole time budget on a busy machine
            owned.preflight(timeout_s=scenario.llm.timeout_s if owned.server is not None
                            else min(30.0, scenario.llm.timeout_s))
        log = EventLog(out_dir, flush_every=scenario.output.flush_every, flush_seconds=scenario.output.flush_seconds)
        world = World(scenario, parts.catalog, parts.population, parts.graph, make_recommender(scenario, parts, llm),
                      make_brains(scenario, parts, llm), log, seed_streams(scenario)["users"], llm=llm)
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    world.owns_llm = owned is not None
    world.recommender.attach(world)              # recommenders that observe users' state (e.g. 'policy')
    return world
