"""Which users a run's page embeds: the count and the seeded order (``report.html`` and
``memories.parquet`` of a large run follow the same order)."""

from __future__ import annotations

import numpy as np

#: users whose timelines ``report.html`` embeds, unless told otherwise (scenario ``output.html_users``)
DEFAULT_USERS = 200


def sample_order(users, seed: int = 0) -> list[int]:
    """``users`` (ids; duplicates ignored) in the seeded random order ``report.html`` embeds
    them in (``memories.parquet`` of a large run follows it too)."""
    active = sorted({int(u) for u in users})
    rng = np.random.default_rng(seed)
    return [active[i] for i in rng.permutation(len(active))]
