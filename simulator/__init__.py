"""RecWorld core: world, time, events, catalog, social graph, scenarios, metrics, reports, CLI.

Heavy modules load on first use, so ``import simulator`` stays fast.
"""

from __future__ import annotations

import importlib
import os

# litellm would fetch its price list from the network on import; ours is offline-first
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"

_LAZY = {
    "Scenario": "simulator.scenario",
    "ScenarioError": "simulator.scenario",
    "load_scenario": "simulator.scenario",
    "run_scenario": "simulator.run",
    "load_run": "simulator.run",
    "Run": "simulator.run",
    "build_world": "simulator.build",
    "build_parts": "simulator.build",
    "World": "simulator.world",
    "Catalog": "simulator.catalog",
    "Population": "simulator.population",
    "SocialGraph": "simulator.social",
    "EventKind": "simulator.events",
    "load_movielens": "simulator.datasets",
    "load_products": "simulator.datasets",
    "run_sts": "simulator.sts",
}

__all__ = sorted(_LAZY) + ["__version__"]


def _register_envs() -> None:
    """Register ``recworld/Session-v0`` and ``recworld/World-v0`` with Gymnasium (cheap: the
    environments' module loads only when one is made)."""
    try:
        from gymnasium.envs.registration import register, registry
    except ImportError:  # pragma: no cover - gymnasium is a dependency; tolerate a broken install
        return
    for env_id, cls in (("recworld/Session-v0", "SessionEnv"), ("recworld/World-v0", "WorldEnv")):
        if env_id not in registry:
            register(id=env_id, entry_point=f"simulator.envs:{cls}")


_register_envs()


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")


def __dir__():
    return __all__
