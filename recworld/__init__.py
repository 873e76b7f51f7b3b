"""RecWorld: agent-based user simulation for recommender systems.

One import namespace for the whole project::

    import recworld
    run = recworld.load_run(recworld.run("scenarios/quickstart.yaml"))

``recworld.simulator`` is the core (engine, data, LLM service, Gymnasium envs, studies,
output), ``recworld.agents`` holds the user brains and ``recworld.recommenders`` the
recommender plug-ins.  Importing ``recworld`` registers the Gymnasium environments
``recworld/Session-v0`` (with a natively vectorised ``gymnasium.make_vec`` entry point) and
``recworld/World-v0`` and loads nothing heavy: every name
below is imported on first use.
"""

from __future__ import annotations

import importlib
import os

# litellm would fetch its price list from the network on import; ours is offline-first
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"

_LAZY = {
    # running and loading
    "run": ("recworld.simulator.run", "run_scenario"),
    "run_scenario": ("recworld.simulator.run", "run_scenario"),
    "load_run": ("recworld.simulator.run", "load_run"),
    "Run": ("recworld.simulator.run", "Run"),
    # scenarios and worlds
    "Scenario": ("recworld.simulator.scenario", "Scenario"),
    "ScenarioError": ("recworld.simulator.scenario", "ScenarioError"),
    "load_scenario": ("recworld.simulator.scenario", "load_scenario"),
    "build_world": ("recworld.simulator.build", "build_world"),
    "build_parts": ("recworld.simulator.build", "build_parts"),
    # plug-ins: contracts, registry, conformance checkers
    "Recommender": ("recworld.simulator.protocols", "Recommender"),
    "Brain": ("recworld.simulator.protocols", "Brain"),
    "register": ("recworld.simulator.registry", "register"),
    "available": ("recworld.simulator.registry", "available"),
    "check_recommender": ("recworld.simulator.testing.checks", "check_recommender"),
    "check_brain": ("recworld.simulator.testing.checks", "check_brain"),
    # studies
    "run_sts": ("recworld.simulator.studies.sts", "run_sts"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def _register_envs() -> None:
    """Register the Gymnasium ids (cheap: the environments' module loads only when one is made)."""
    try:
        from gymnasium.envs.registration import register, registry
    except ImportError:  # pragma: no cover - gymnasium is a dependency; tolerate a broken install
        return
    vector = {"recworld/Session-v0": "recworld.simulator.gym.vector:make_session_vector_env"}
    for env_id, cls in (("recworld/Session-v0", "SessionEnv"), ("recworld/World-v0", "WorldEnv")):
        if env_id not in registry:
            register(id=env_id, entry_point=f"recworld.simulator.gym.envs:{cls}",
                     vector_entry_point=vector.get(env_id))


_register_envs()


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'recworld' has no attribute {name!r}")


def __dir__():
    return __all__
