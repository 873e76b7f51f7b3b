"""Find recommenders and brains by name.

Built-ins are listed here by dotted path (so a source checkout works without installation);
third-party packages add their own through the ``recworld.recommenders`` and
``recworld.brains`` entry-point groups.  Nothing is imported until it is asked for.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

GROUPS = {
    "recommenders": "recworld.recommenders",
    "brains": "recworld.brains",
}

BUILTIN: dict[str, dict[str, str]] = {
    "recommenders": {
        "random": "recworld.recommenders.baselines:RandomRecommender",
        "popularity": "recworld.recommenders.baselines:PopularityRecommender",
        "policy": "recworld.recommenders.policy:PolicyRecommender",
        "slate_ts": "recworld.recommenders.bandits:SlateThompsonSampling",
        "mf": "recworld.recommenders.personal:MatrixFactorization",
        "itemknn": "recworld.recommenders.personal:ItemKNN",
        "content": "recworld.recommenders.personal:ContentBased",
        "linucb": "recworld.recommenders.bandits:LinUCB",
        "llm_ranker": "recworld.recommenders.llm:LLMRanker",
        "toolrec": "recworld.recommenders.llm:ToolRec",
    },
    "brains": {
        "parametric": "recworld.agents.parametric:ParametricBrain",
        "llm": "recworld.agents.llm:LLMBrain",
        "shill": "recworld.agents.shill:ShillBrain",
    },
}


_REGISTERED: dict[str, dict[str, object]] = {k: {} for k in GROUPS}


class UnknownPluginError(LookupError):
    pass


class PluginContractError(TypeError):
    """A plug-in that breaks the contract in ``recworld.simulator.protocols``."""


def register(kind: str, name: str, target) -> None:
    """Make a class (or a 'module:attr' string) available under ``name`` in this process,
    e.g. a recommender defined in a notebook.  Packages should use entry points instead."""
    if kind not in GROUPS:
        raise ValueError(f"unknown plug-in kind {kind!r}; known: {sorted(GROUPS)}")
    _REGISTERED[kind][name] = target


def unregister(kind: str, name: str) -> None:
    _REGISTERED[kind].pop(name, None)


def available(kind: str) -> dict[str, str]:
    """name -> 'module:attr' for every known plug-in of ``kind`` ('recommenders' or 'brains');
    registered names override entry points, which never override built-ins."""
    if kind not in GROUPS:
        raise ValueError(f"unknown plug-in kind {kind!r}; known: {sorted(GROUPS)}")
    found: dict = dict(BUILTIN[kind])
    for ep in entry_points(group=GROUPS[kind]):
        found.setdefault(ep.name, ep.value)
    for name, target in _REGISTERED[kind].items():
        found[name] = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
    return dict(sorted(found.items()))


def load(kind: str, name: str):
    """The class registered as ``name``; an unknown name raises with the list of known ones."""
    if name in _REGISTERED.get(kind, {}) and not isinstance(_REGISTERED[kind][name], str):
        _check_base(kind, name, _REGISTERED[kind][name])
        return _REGISTERED[kind][name]
    known = available(kind)
    if name not in known:
        singular = kind[:-1]
        raise UnknownPluginError(f"unknown {singular} {name!r}; known {kind}: {', '.join(known)}")
    module, _, attr = known[name].partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise UnknownPluginError(f"{kind[:-1]} {name!r} is registered as {known[name]!r}, which cannot be "
                                 f"loaded: {type(e).__name__}: {e}") from None
    _check_base(kind, name, obj)
    return obj


def _check_base(kind: str, name: str, obj) -> None:
    from recworld.simulator.protocols import BASES

    base = BASES[kind]
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginContractError(f"{kind[:-1]} {name!r} ({obj!r}) must be a subclass of "
                                  f"recworld.{base.__name__}; see docs/plugins.md")
