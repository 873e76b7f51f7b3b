"""Item-text injection: put a strategic text sequence (STS) into a target item's text.

Used by the world builder (a scenario with ``sts.inject: true``) and by the STS study.
"""

from __future__ import annotations

import json
import re

import numpy as np


def find_item(catalog, name: str) -> int:
    """The index of the item titled ``name`` (case-insensitive, a trailing year ignored)."""
    want = name.strip().lower()
    titles = [str(t).strip().lower() for t in catalog.titles]
    for k, t in enumerate(titles):
        if t == want or re.sub(r"\s*\(\d{4}\)$", "", t) == want:
            return k
    import difflib

    close = difflib.get_close_matches(want, titles, n=3)
    raise ValueError(f"sts.target {name!r} is not an item of the catalog"
                     + (f"; did you mean {', '.join(repr(catalog.titles[titles.index(c)]) for c in close)}?"
                        if close else f" (it has {len(titles)} items, e.g. {catalog.titles[0]!r})"))


def inject_text(text: str, sts: str, position: str = "after_description", field: str = "Description",
                new_field: str = "Note") -> str:
    """``text`` with ``sts`` put where ``position`` says.  A JSON product object gets it in
    its ``field`` (or as a new field, ``new_field``); plain text gets it at the end or the
    start.  ``position="replace"`` puts ``sts`` in place of the field (of the whole plain text)."""
    from recworld.simulator.data.catalog import product_object

    if not sts:
        return text
    obj = product_object(text)
    if obj is not None:
        if position == "replace":
            obj[field] = sts
        elif position == "new_field" or field not in obj:
            obj[new_field] = sts
        elif position == "before_description":
            obj[field] = f"{sts} {obj[field]}"
        else:
            obj[field] = f"{obj[field]} {sts}"
        return json.dumps(obj, ensure_ascii=False)
    if position == "replace":
        return sts
    if position == "before_description":
        return f"{sts} {text}"
    return f"{text} {sts}" if text else sts


def inject(catalog, target: str | int, sts: str, position: str = "after_description", field: str = "Description",
           new_field: str = "Note"):
    """A copy of ``catalog`` whose target item's text carries ``sts``."""
    from recworld.simulator.data.catalog import Catalog

    k = target if isinstance(target, (int, np.integer)) else find_item(catalog, target)
    items = catalog.items.copy()
    items.loc[k, "text"] = inject_text(str(items.at[k, "text"]), sts, position, field, new_field)
    return Catalog(items)


def inject_from_scenario(catalog, scenario, text: str | None = None):
    st = scenario.sts
    return inject(catalog, st.target, st.text if text is None else text, st.position, st.field)
