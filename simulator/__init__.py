"""RecWorld core (``recworld.simulator``): scenarios, the world, data, LLM service, envs, studies, output.

Rooms of one concern each: ``engine`` (the simpy world, LLM batching, the event log), ``data``
(sources, catalog, population, social graph, item-text injection), ``llm`` (settings, service,
embedded server), ``gym`` (Gymnasium envs, observations, policies), ``studies`` (sts, rl,
offline evaluation, compare), ``output`` (metrics, report, progress, run folders) and
``testing`` (fake LLM server, scripted answers, plug-in conformance checkers).  ``protocols``
is the plug-in contract, ``registry`` finds plug-ins, ``build`` puts a world together and
``run`` runs it into a run folder.

Heavy modules load on first use, so ``import recworld`` stays fast.
"""

from __future__ import annotations

import importlib

from recworld import __version__  # noqa: F401  (also registers the Gymnasium environments)

_LAZY = {
    "Scenario": "recworld.simulator.scenario",
    "ScenarioError": "recworld.simulator.scenario",
    "load_scenario": "recworld.simulator.scenario",
    "run_scenario": "recworld.simulator.run",
    "load_run": "recworld.simulator.run",
    "Run": "recworld.simulator.run",
    "build_world": "recworld.simulator.build",
    "build_parts": "recworld.simulator.build",
    "World": "recworld.simulator.engine.world",
    "Catalog": "recworld.simulator.data.catalog",
    "Population": "recworld.simulator.data.population",
    "SocialGraph": "recworld.simulator.data.social",
    "EventKind": "recworld.simulator.engine.events",
    "load_movielens": "recworld.simulator.data.sources",
    "load_products": "recworld.simulator.data.sources",
    "run_sts": "recworld.simulator.studies.sts",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'recworld.simulator' has no attribute {name!r}")


def __dir__():
    return __all__
