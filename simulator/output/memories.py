"""``memories.parquet``: what users remembered, written at the end of a run.

The world keeps, per user, the last things that happened to them (``UserState.memory``,
filled by ``UserState.remember``); the LLM brain builds on it a memory of its own
(``recworld.agents.memory.Memory``: short-term and long-term memories scored by importance,
and reflections, its insights).  Neither is in the event log, so at the end of a run, also
an interrupted or failed one, they are written as one table, one row per memory:

``user_id``, ``time`` (simulated minutes), ``kind`` (``observation`` or ``reflection``),
``text``, ``importance`` (the brain memory's score in [0, 1]; missing where no brain memory
scored it), ``store``: where the memory is at the end of the run:

- ``long_term`` / ``short_term``: in the LLM brain's memory;
- ``not_perceived``: remembered by the world after the brain last looked (it would have
  reached the brain's memory at its next decision);
- ``forgotten``: still in the world's recent memory, but the brain's memory dropped it;
- ``recent``: in the world's recent memory, for users whose brain keeps no memory of its own.

Every user's memories are written when the population has at most ``ALL_USERS`` users, else
those of the users ``report.html`` embeds (the same seeded sample; ``output.html_users``).
The file's metadata says which (``covered_users``).  A hard kill (SIGKILL) writes nothing:
the memories live in the process.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("recworld")

NAME = "memories.parquet"
#: populations up to this size get every user's memories written
ALL_USERS = 5000
COLUMNS = ("user_id", "time", "kind", "text", "importance", "store")
_META = b"recworld.memories"


def memory_rows(state) -> list[tuple]:
    """One user's memories (``UserState``) as rows of ``COLUMNS``, oldest first."""
    uid = int(state.user_id)
    rows: list[tuple] = []
    stream = list(state.memory)
    mem = state.extra.get("memory") if isinstance(getattr(state, "extra", None), dict) else None
    if mem is not None and hasattr(mem, "long") and hasattr(mem, "short"):
        kept = set()
        for where, recs in (("long_term", mem.long), ("short_term", list(mem.short))):
            for m in recs:
                kind = "reflection" if getattr(m, "kind", "observation") == "insight" else "observation"
                rows.append((uid, float(m.time), kind, str(m.text), float(m.importance), where))
                kept.add(m.text)
        perceived = int(state.extra.get("memory_seen", state.remembered))
        fresh = min(max(state.remembered - perceived, 0), len(stream))      # the newest ``fresh`` were not seen
        for k, (t, text) in enumerate(stream):
            if k >= len(stream) - fresh:
                rows.append((uid, float(t), "observation", str(text), None, "not_perceived"))
            elif text not in kept:
                rows.append((uid, float(t), "observation", str(text), None, "forgotten"))
    else:
        rows += [(uid, float(t), "observation", str(text), None, "recent") for t, text in stream]
    rows.sort(key=lambda r: r[1])
    return rows


def covered_users(folder: Path, states, max_users: int | None, seed: int) -> list[int] | None:
    """The user ids whose memories are written: None for all (a small population), else the
    users ``report.html`` embeds first (``sample.sample_order`` over the users with events)."""
    if len(states) <= ALL_USERS:
        return None
    from recworld.simulator.output.sample import DEFAULT_USERS, sample_order

    n = DEFAULT_USERS if max_users is None else int(max_users)
    try:
        from recworld.simulator.engine.events import read_events

        active = read_events(folder)["user_id"].dropna().astype("int64").unique().tolist()
    except (OSError, ValueError):
        active = []
    return sample_order(active, seed)[:n]


def write_memories(folder, world, max_users: int | None = None, seed: int = 0) -> Path | None:
    """Write ``folder/memories.parquet`` from a world's user states (after ``world.run``,
    whatever its outcome).  Never raises: a failure is logged and costs only this file."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = Path(folder)
        states = list(getattr(world, "states", None) or [])
        chosen = covered_users(folder, states, max_users, seed)
        if chosen is not None:
            keep = set(chosen)
            states = [st for st in states if int(st.user_id) in keep]
        rows = [r for st in states for r in memory_rows(st)]
        cols = list(zip(*rows)) if rows else [()] * len(COLUMNS)
        schema = pa.schema([("user_id", pa.int64()), ("time", pa.float64()), ("kind", pa.string()),
                            ("text", pa.string()), ("importance", pa.float64()), ("store", pa.string())])
        meta = {"covered_users": "all" if chosen is None else sorted(int(u) for u in chosen)}
        table = pa.table([pa.array(list(c), type=f.type) for c, f in zip(cols, schema)], schema=schema)
        table = table.replace_schema_metadata({_META: json.dumps(meta).encode()})
        path, tmp = folder / NAME, folder / f".{NAME}.tmp"
        pq.write_table(table, tmp)
        tmp.replace(path)
        return path
    except Exception:  # noqa: BLE001 - the run's other files matter more; logged with its traceback
        log.exception("could not write %s in %s", NAME, folder)
        return None


def read_memories(folder) -> tuple["pd.DataFrame", set[int] | None]:  # noqa: F821
    """``memories.parquet`` of a run folder and the users it covers (None: every user).
    A folder without the file gives an empty table covering nobody."""
    import pandas as pd
    import pyarrow.parquet as pq

    path = Path(folder) / NAME
    if not path.exists():
        return pd.DataFrame(columns=list(COLUMNS)), set()
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(_META, b"{}") or b"{}")
    users = meta.get("covered_users", "all")
    return table.to_pandas(), (None if users == "all" else {int(u) for u in users})
