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
        "random": "recommenders.baselines:RandomRecommender",
        "popularity": "recommenders.baselines:PopularityRecommender",
    },
    "brains": {
        "parametric": "agents.parametric:ParametricBrain",
    },
}


class UnknownPluginError(LookupError):
    pass


def available(kind: str) -> dict[str, str]:
    """name -> 'module:attr' for every known plug-in of ``kind`` ('recommenders' or 'brains')."""
    if kind not in GROUPS:
        raise ValueError(f"unknown plug-in kind {kind!r}; known: {sorted(GROUPS)}")
    found = dict(BUILTIN[kind])
    for ep in entry_points(group=GROUPS[kind]):
        found.setdefault(ep.name, ep.value)
    return dict(sorted(found.items()))


def load(kind: str, name: str):
    """The class registered as ``name``; an unknown name raises with the list of known ones."""
    known = available(kind)
    if name not in known:
        singular = kind[:-1]
        raise UnknownPluginError(f"unknown {singular} {name!r}; known {kind}: {', '.join(known)}")
    module, _, attr = known[name].partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
