"""What the run explorer shows, as plain JSON-ready data, and ``recworld view``.

``RunView(run)`` indexes a loaded run once (events by user, chats by partner, LLM calls by
user, readers by post) and answers three questions:

- ``summary()``: everything but the users' drill-down: metrics, status, fallbacks,
  provenance, time series, the exposure Lorenz curve, the user index (one row per user),
  the chat network, post cascades and what hearing of an item led to;
- ``user(user_id)``: one user's timeline: sessions, each slate shown with what was watched,
  rated and felt, searches, chats (the whole dialogue), posts read and written, items heard
  of, reflections, and the LLM prompt and answer behind each decision;
- ``bundle(max_users, max_bytes)``: the summary plus a seeded sample of users' timelines,
  bounded both in count and in bytes (what ``report.html`` embeds).

``explorer.py`` renders it (``report.html``) and serves it (``recworld view``).
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from recworld.simulator.output.sample import DEFAULT_USERS, sample_order  # noqa: F401 - part of this module's API
#: bytes of embedded timelines at most (JSON); users past it are left to ``recworld view``
DEFAULT_MAX_BYTES = 3_000_000
#: cut-offs that keep the summary small in large runs
MAX_NETWORK_NODES = 250
MAX_CASCADES = 60
MAX_HEARD_ROWS = 400
MAX_TEXT = 6000                 # characters of one prompt message or answer kept

_USER_COLS = ["user_id", "sessions", "slates", "watches", "mean_rating", "searches", "chats", "posts", "reads",
              "heard", "llm_calls", "fallbacks"]


def clean(x):
    """``x`` with numpy/pandas scalars, NaN and NA turned into JSON values (recursively)."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [clean(v) for v in x]
    if x is None or x is pd.NA or x is pd.NaT:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (str, Path)):
        return str(x)
    try:
        if pd.isna(x):
            return None
    except (TypeError, ValueError):
        pass
    return str(x)


def dumps(obj) -> str:
    """Compact JSON of ``clean(obj)``."""
    return json.dumps(clean(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _r(x, nd: int = 2):
    """A float rounded for display (None for missing)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)) or x is pd.NA:
        return None
    try:
        if pd.isna(x):
            return None
    except (TypeError, ValueError):
        pass
    return round(float(x), nd)


def _int(x):
    return None if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)) else int(x)


def _cut(text, limit: int = MAX_TEXT):
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit:,} more characters]"


def _seq(x) -> list:
    """A list column's value as a list (None, NaN -> [])."""
    if x is None or isinstance(x, float):
        return []
    return list(x)


def _plain(v):
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    return v


def _records(df: pd.DataFrame, cols: list[str]) -> list[dict]:
    """Rows as dicts of plain Python values (NA, NaN -> None)."""
    if df.empty:
        return []
    columns = [[_plain(v) for v in df[c].tolist()] for c in cols]
    return [dict(zip(cols, row)) for row in zip(*columns)]


_EVENT_COLS = ["time", "kind", "session", "item_id", "other_id", "slate_id", "post_id", "root_id", "page",
               "position", "value", "items", "text", "_order"]


class _WatchTimes:
    """When each user watched each item (in log order), looked up by binary search in two sorted
    arrays instead of a dict entry per (user, item) pair."""

    def __init__(self, watches: pd.DataFrame):
        watches = watches[watches["item_id"].notna()]
        users = watches["user_id"].to_numpy(dtype=np.int64, na_value=-1)
        items = watches["item_id"].to_numpy(dtype=np.int64)
        order = np.lexsort((items, users))                 # by user, then item; log order kept within
        self.users, self.items = users[order], items[order]
        self.times = watches["time"].to_numpy(dtype=np.float64)[order]

    def get(self, key: tuple[int, int]) -> list[float] | None:
        user, item = key
        lo, hi = np.searchsorted(self.users, user, "left"), np.searchsorted(self.users, user, "right")
        if lo == hi:
            return None
        row = self.items[lo:hi]
        a, b = lo + np.searchsorted(row, item, "left"), lo + np.searchsorted(row, item, "right")
        return self.times[a:b].tolist() if a < b else None


def _key_spans(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by key without a groupby: ``order`` sorts the rows by key (stable, so rows
    keep their order within a key), and key ``ids[j]`` owns ``order[starts[j]:ends[j]]``."""
    order = np.argsort(keys, kind="stable")
    ids, starts = np.unique(keys[order], return_index=True)
    return order, ids, starts, np.append(starts[1:], len(keys))


def _readers(reads: pd.DataFrame) -> dict[int, list]:
    """post id -> the users who read it, in log order (``reads.groupby("post_id")["user_id"].agg(list)``
    without a Python call per post)."""
    if not len(reads):
        return {}
    order, ids, starts, _ = _key_spans(reads["post_id"].to_numpy(dtype=np.int64, na_value=-1))
    users = reads["user_id"].to_numpy(dtype=np.int64, na_value=-1)
    out = {p: u.tolist() for p, u in zip(ids.tolist(), np.split(users[order], starts[1:]))}
    out.pop(-1, None)
    return out


class _Groups:
    """``frame``'s rows by the value of ``column`` (rows in frame order), as a frame made when a
    key is asked for: ``dict(iter(frame.groupby(column)))`` without a frame per key up front
    (16k chat partners of a 2.8M-event run took 6 s that way)."""

    def __init__(self, frame: pd.DataFrame, column: str):
        self.frame = frame
        self._order, ids, starts, ends = _key_spans(frame[column].to_numpy(dtype=np.int64, na_value=-1))
        self._span = dict(zip(ids.tolist(), zip(starts.tolist(), ends.tolist())))
        self._span.pop(-1, None)                       # rows without a key belong to no group

    def get(self, key, default=None):
        span = self._span.get(int(key)) if key is not None and key is not pd.NA else None
        if span is None:
            return default
        return self.frame.take(self._order[span[0]:span[1]])

    def __len__(self) -> int:
        return len(self._span)


class _UserRows(Mapping):
    """Each user's events (in log order) as records, made when a user is asked for: a large
    run's events as one dict each would not fit in memory (14M events: over 20 GB)."""

    def __init__(self, ev: pd.DataFrame):
        self.ev = ev
        self._order, ids, starts, ends = _key_spans(ev["user_id"].to_numpy(dtype=np.int64, na_value=-1))
        first = np.argsort(self._order[starts], kind="stable")   # users by their first event
        self._span = {int(ids[j]): (int(starts[j]), int(ends[j])) for j in first.tolist()}

    def __getitem__(self, uid) -> list[dict]:
        a, b = self._span[int(uid)]
        return _records(self.ev.take(self._order[a:b]), _EVENT_COLS)

    def __contains__(self, uid) -> bool:
        try:
            return int(uid) in self._span
        except (TypeError, ValueError):
            return False

    def __iter__(self):
        return iter(self._span)

    def __len__(self) -> int:
        return len(self._span)


class RunView:
    """A loaded run (``recworld.load_run``), indexed for the explorer."""

    def __init__(self, run):
        from recworld.simulator.output.metrics import impressions

        self.run = run
        ev = run.events.assign(_order=np.arange(len(run.events)))       # no copy of the columns (copy on write)
        time = ev["time"].to_numpy(dtype=np.float64, na_value=np.nan)
        if len(time) > 1 and not (time[1:] >= time[:-1]).all():           # logs are written in time order
            ev = ev.sort_values(["time", "_order"], kind="stable")
        self.events = ev
        kind = ev["kind"]
        self.by_user = _UserRows(ev)
        chats = ev[kind == "chat"]
        self.chats_as_partner = _Groups(chats, "other_id")      # the chats others started with a user
        reads = ev[kind == "read_post"]
        self.readers = _readers(reads)
        watches = ev[kind == "watch"]
        self.watch_times = _WatchTimes(watches)
        self.imp = impressions(run.events)
        items = run.items if run.items is not None else pd.DataFrame(columns=["item_id", "title", "genres"])
        self.titles = dict(zip(items["item_id"].astype("int64"), items["title"].astype(str))) if len(items) else {}
        self.genres = ({int(i): ", ".join(map(str, g)) if g is not None and not isinstance(g, float) else ""
                        for i, g in zip(items["item_id"], items["genres"])} if "genres" in items else {})
        self.end_time = float(run.metrics.get("simulated_minutes") or (ev["time"].max() if len(ev) else 0.0) or 0.0)
        try:
            calls = run.llm_calls
        except Exception:  # noqa: BLE001 - an unreadable audit trail only hides the prompts
            calls = pd.DataFrame()
        self.calls = calls
        if len(calls):
            calls = calls.assign(_i=np.arange(len(calls)))
            self.calls_by_user = {int(u): g for u, g in calls[calls["user_id"].notna()].groupby("user_id")}
        else:
            self.calls_by_user = {}
        self.calls = calls
        self._personas: dict[int, str | None] = {}
        self._load_memories()
        users = run.users
        self.profiles = ({int(r["user_id"]): r for r in users.to_dict("records")}
                         if users is not None and len(users) else {})
        self._index_chat_calls()

    def _load_memories(self) -> None:
        """``memories.parquet`` (``output.memories``) by user; ``memory_users``: the users it
        covers (None: all), an empty set when the run has no such file."""
        from recworld.simulator.output.memories import read_memories

        try:
            mem, self.memory_users = read_memories(self.run.path)
        except Exception:  # noqa: BLE001 - an unreadable file only hides the memories
            mem, self.memory_users = pd.DataFrame(), set()
        self.has_memories = (Path(self.run.path) / "memories.parquet").exists()
        self.memories = ({int(u): _records(g, ["time", "kind", "text", "importance", "store"])
                          for u, g in mem.groupby("user_id", sort=False)} if len(mem) else {})

    # ------------------------------------------------------------------ items

    def item_ref(self, item_id, used: set | None) -> int | None:
        if item_id is None or item_id is pd.NA:
            return None
        i = int(item_id)
        if used is not None:
            used.add(i)
        return i

    def items_table(self, ids) -> dict:
        """``{item_id: [title, genres]}`` for the given ids."""
        return {int(i): [self.titles.get(int(i), f"item {int(i)}"), self.genres.get(int(i), "")] for i in sorted(ids)}

    # ------------------------------------------------------------------ summary

    def summary(self) -> dict:
        from recworld.simulator.output.metrics import lorenz
        from recworld.simulator.output.report import METRIC_LABELS, STATUS_TEXT

        run, m = self.run, self.run.metrics
        used: set[int] = set()
        status = str(m.get("status", "unknown"))
        scn = run.scenario or {}
        yaml_text = ""
        f = Path(run.path) / "scenario.yaml"
        if f.exists():
            yaml_text = f.read_text(encoding="utf-8", errors="replace")
        out = {
            "kind": "run",
            "title": f"RecWorld run: {m.get('scenario') or scn.get('name') or Path(run.path).name}",
            "folder": str(Path(run.path).name),
            "status": status,
            "status_text": STATUS_TEXT.get(status, status),
            "description": " ".join(str(scn.get("description") or "").split()),
            "metrics": {k: v for k, v in m.items() if not isinstance(v, (dict, list))},
            "labels": METRIC_LABELS,
            "overrides": m.get("overrides") or [],
            "llm": m.get("llm") or {},
            "recommender_stats": m.get("recommender_stats") or {},
            "resumed": m.get("resumed"),
            "provenance": m.get("provenance") or {},
            "error": m.get("error"),
            "scenario_yaml": yaml_text[:20000],
            "end_time": self.end_time,
            "timeseries": self._timeseries(),
        }
        # exposure: Lorenz curve over the catalog (items never shown count as zero)
        n_items = len(run.items) if run.items is not None else 0
        shown = self.imp.groupby("item_id").size() if len(self.imp) else pd.Series(dtype="int64")
        counts = np.zeros(max(n_items, len(shown)))
        counts[:len(shown)] = shown.to_numpy()
        px, py = lorenz(counts) if len(counts) else (np.array([0.0, 1.0]), np.array([0.0, 1.0]))
        # about 400 points: evenly over the items, and evenly over the impressions (the steep end)
        keep = np.unique(np.concatenate([np.linspace(0, len(px) - 1, min(len(px), 201)).round().astype(int),
                                         np.searchsorted(py, np.linspace(0, 1, 201)).clip(0, len(px) - 1)]))
        out["lorenz"] = {"x": [_r(v, 4) for v in px[keep]], "y": [_r(v, 4) for v in py[keep]],
                         "gini": _r(m.get("exposure_gini"), 4), "items": int(len(counts))}
        watched = (self.events[self.events["kind"] == "watch"].groupby("item_id").size()
                   if len(self.events) else pd.Series(dtype="int64"))
        top = shown.sort_values(ascending=False, kind="stable").head(15)
        out["top_items"] = [[self.item_ref(i, used), int(n), int(watched.get(i, 0))] for i, n in top.items()]
        out["users"] = self._user_index()
        out["social"] = self._social(used)
        out["items"] = self.items_table(used)
        return out

    def _timeseries(self) -> dict:
        ts = self.run.timeseries
        if ts is None or ts.empty:
            return {}
        from recworld.simulator.output.report import ctr_interval

        cols = {c: [_r(v, 5) for v in ts[c]] for c in ts.columns if c != "start_minute"}
        lo, hi = ctr_interval(ts)
        cols["ctr_low"] = [_r(v, 5) for v in lo]
        cols["ctr_high"] = [_r(v, 5) for v in hi]
        starts = ts["start_minute"].to_numpy(dtype=float)
        width = float(starts[1] - starts[0]) if len(starts) > 1 else max(self.end_time, 60.0)
        return {"start_minute": [float(v) for v in starts], "bin_minutes": width, "cols": cols}

    def _user_index(self) -> dict:
        ev = self.events
        users = self.run.users
        ids = (users["user_id"].astype("int64").tolist() if users is not None and len(users)
               else sorted(self.by_user))
        ids = sorted(set(ids) | set(self.by_user))
        idx = pd.Index(ids, name="user_id")

        def count(k, col="user_id"):
            part = ev[ev["kind"] == k]
            return part.groupby(col).size().reindex(idx, fill_value=0) if len(part) else pd.Series(0, index=idx)

        rates = ev[ev["kind"] == "rate"]
        mean_rating = (rates.groupby("user_id")["value"].mean().reindex(idx) if len(rates)
                       else pd.Series(np.nan, index=idx))
        posts = ev[ev["kind"] == "post"]
        chats = count("chat") + (count("chat", "other_id").reindex(idx, fill_value=0) if len(ev) else 0)
        if len(self.calls):
            c = self.calls[self.calls["user_id"].notna()]
            n_calls = c.groupby("user_id").size().reindex(idx, fill_value=0)
            fb = c[c["fallback"].fillna(False).astype(bool)].groupby("user_id").size().reindex(idx, fill_value=0)
        else:
            n_calls = fb = pd.Series(0, index=idx)
        table = pd.DataFrame({
            "user_id": ids,
            "sessions": count("session_start").to_numpy(),
            "slates": count("slate").to_numpy(),
            "watches": count("watch").to_numpy(),
            "mean_rating": [_r(v) for v in mean_rating],
            "searches": count("search").to_numpy(),
            "chats": np.asarray(chats),
            "posts": (posts.groupby("user_id").size().reindex(idx, fill_value=0).to_numpy() if len(posts)
                      else np.zeros(len(idx), dtype=int)),
            "reads": count("read_post").to_numpy(),
            "heard": count("heard").to_numpy(),
            "llm_calls": np.asarray(n_calls),
            "fallbacks": np.asarray(fb),
        })
        return {"cols": _USER_COLS, "rows": table[_USER_COLS].astype(object).where(table.notna(), None).values.tolist()}

    # ------------------------------------------------------------------ social

    def _social(self, used: set) -> dict:
        return {"chat_network": self._chat_network(), "cascades": self._cascades(used), "heard": self._heard(used)}

    def _chat_network(self) -> dict:
        import networkx as nx

        chats = self.events[self.events["kind"] == "chat"]
        if chats.empty:
            return {"nodes": [], "edges": [], "total_nodes": 0, "total_edges": 0, "chats": 0}
        pairs = pd.DataFrame({"a": np.minimum(chats["user_id"].astype("int64"), chats["other_id"].astype("int64")),
                              "b": np.maximum(chats["user_id"].astype("int64"), chats["other_id"].astype("int64"))})
        edges = pairs.groupby(["a", "b"]).size().reset_index(name="n")
        deg = pd.concat([edges[["a", "n"]].rename(columns={"a": "u"}), edges[["b", "n"]].rename(columns={"b": "u"})])
        deg = deg.groupby("u")["n"].sum().sort_values(ascending=False, kind="stable")
        total_nodes, total_edges = len(deg), len(edges)
        keep = set(deg.index[:MAX_NETWORK_NODES].tolist())
        edges = edges[edges["a"].isin(keep) & edges["b"].isin(keep)]
        g = nx.Graph()
        g.add_nodes_from(sorted(keep))
        g.add_weighted_edges_from(edges[["a", "b", "n"]].itertuples(index=False, name=None))
        pos = nx.spring_layout(g, seed=0, k=1.6 / math.sqrt(max(len(g), 1)), iterations=80)
        nodes = [[int(u), _r(pos[u][0], 3), _r(pos[u][1], 3), int(deg[u])] for u in sorted(keep)]
        return {"nodes": nodes, "edges": edges.astype(int).values.tolist(), "total_nodes": total_nodes,
                "total_edges": total_edges, "chats": int(len(chats))}

    def _cascades(self, used: set) -> dict:
        ev = self.events
        posts = ev[ev["kind"] == "post"]
        if posts.empty:
            return {"list": [], "total": 0}
        reads = ev[ev["kind"] == "read_post"]
        reach = reads.groupby("root_id")["user_id"].nunique() if len(reads) else pd.Series(dtype="int64")
        roots = posts[posts["value"].fillna(0) == 0]
        order = sorted(roots["root_id"].dropna().astype(int).unique(),
                       key=lambda r: (-int(reach.get(r, 0)), r))
        out = []
        for root in order[:MAX_CASCADES]:
            part = posts[posts["root_id"] == root].sort_values(["value", "time"], kind="stable")
            nodes, by_author = [], {}
            for row in _records(part, ["time", "user_id", "post_id", "value", "other_id", "item_id", "text"]):
                pid, author = int(row["post_id"]), int(row["user_id"])
                parent = None
                if row["other_id"] is not None:        # the re-posted post: its author's post in this cascade
                    parent = by_author.get(int(row["other_id"]))
                readers = [int(u) for u in self.readers.get(pid, [])]
                item = self.item_ref(row["item_id"], used)
                later = [u for u in set(readers) if self._watched_after(u, item, row["time"]) is not None] \
                    if item is not None else []
                nodes.append({"post": pid, "user": author, "t": _r(row["time"]), "hop": int(row["value"] or 0),
                              "parent": parent, "item": item, "text": _cut(row["text"], 500), "readers": readers,
                              "watched_after": len(later)})
                by_author.setdefault(author, pid)
            first = nodes[0]
            out.append({"root": int(root), "user": first["user"], "item": first["item"], "t": first["t"],
                        "posts": len(nodes), "reposts": len(nodes) - 1,
                        "max_hop": max(n["hop"] for n in nodes), "reach": int(reach.get(root, 0)), "nodes": nodes})
        return {"list": out, "total": len(order)}

    def _watched_after(self, user: int, item: int | None, t: float) -> float | None:
        if item is None:
            return None
        times = self.watch_times.get((int(user), int(item)))
        if not times:
            return None
        later = [x for x in times if x >= float(t)]
        return min(later) if later else None

    def _heard(self, used: set) -> dict:
        heard = self.events[self.events["kind"] == "heard"]
        if heard.empty:
            return {"by_channel": [], "rows": [], "total": 0}
        rows = []
        for r in _records(heard, ["time", "user_id", "item_id", "other_id", "text"]):
            w = self._watched_after(r["user_id"], r["item_id"], r["time"])
            rows.append({"t": _r(r["time"]), "user": int(r["user_id"]), "item": _int(r["item_id"]),
                         "from": _int(r["other_id"]), "via": r["text"] or "?", "watched": _r(w),
                         "delay": _r((w - r["time"]) / 60.0, 1) if w is not None else None})
        df = pd.DataFrame(rows)
        by = []
        for via, g in df.groupby("via", sort=True):
            led = g["watched"].notna()
            by.append({"via": via, "heard": int(len(g)), "watched": int(led.sum()),
                       "rate": _r(led.mean(), 4), "median_delay_hours": _r(g.loc[led, "delay"].median(), 1)})
        keep = sorted(rows, key=lambda r: (r["watched"] is None, r["t"]))[:MAX_HEARD_ROWS]
        keep.sort(key=lambda r: r["t"])
        for r in keep:
            self.item_ref(r["item"], used)
        return {"by_channel": by, "rows": keep, "total": len(rows)}

    # ------------------------------------------------------------------ one user

    def _call(self, row: dict, persona: str | None) -> dict:
        msgs = row.get("messages") or []
        if not isinstance(msgs, list):
            msgs = []
        out_msgs = []
        for k, msg in enumerate(msgs):
            if not isinstance(msg, dict):
                continue
            content = msg.get("content")
            if k == 0 and msg.get("role") == "system" and persona is not None and content == persona:
                out_msgs.append(["system", None])          # the user's persona, shown once per user
            else:
                out_msgs.append([str(msg.get("role")), _cut(content)])
        answer = row.get("answer")
        if answer is None and row.get("parsed") is not None:
            answer = json.dumps(row.get("parsed"))
        tokens = None
        if row.get("prompt_tokens") is not None or row.get("completion_tokens") is not None:
            tokens = int((row.get("prompt_tokens") or 0) + (row.get("completion_tokens") or 0))
        return clean({"p": row.get("purpose"), "m": out_msgs, "a": _cut(answer), "fb": bool(row.get("fallback")),
                      "why": row.get("fallback_reason") or (str(row["error"])[:300] if row.get("error") else None),
                      "model": row.get("model"), "tok": tokens, "cache": bool(row.get("cache_hit")),
                      "lat": _r(row.get("latency_s"), 3), "t": _r(row.get("sim_time"), 3),
                      "n": row.get("_i"), "u": row.get("user_id")})

    def user(self, user_id: int) -> dict:
        """One user's timeline (see the module's docstring); ``items`` names every item it shows."""
        uid = int(user_id)
        used: set[int] = set()
        rows = self.by_user.get(uid, [])
        prof = {k: (_r(v, 3) if isinstance(v, (float, np.floating)) else v)
                for k, v in self.profiles.get(uid, {}).items() if k != "user_id"}
        # sessions: [start, end] per session number
        spans: dict[int, dict] = {}
        for r in rows:
            if r["kind"] == "session_start":
                spans[int(r["session"])] = {"s": int(r["session"]), "t0": r["time"], "t1": None, "act": r["text"],
                                            "e": []}
            elif r["kind"] == "session_end" and r["session"] is not None and int(r["session"]) in spans:
                spans[int(r["session"])]["t1"] = r["time"]
        rates = {}
        for r in rows:
            if r["kind"] == "rate":
                rates.setdefault((r["slate_id"], r["item_id"]), []).append(r)
        slates: dict[int, dict] = {}
        entries: list[tuple[float, int, dict, int | None]] = []     # (time, order, entry, session)

        order = {"now": None}         # ties in time keep the event log's order; LLM-only entries come last

        def add(t, e, s=None):
            o = order["now"] if order["now"] is not None else 1e15 + len(entries)
            entries.append((float(t), o, e, s))

        def session_of(r):
            s = r["session"]
            if s is None or int(s) not in spans:
                return None
            sp = spans[int(s)]
            end = sp["t1"] if sp["t1"] is not None else math.inf
            return int(s) if sp["t0"] - 1e-9 <= r["time"] <= end + 1e-9 else None

        for r in rows:
            k, t, s = r["kind"], r["time"], session_of(r)
            order["now"] = r["_order"]
            if k in ("session_start", "session_end", "rate"):
                continue
            if k == "slate":
                e = {"k": "slate", "t": _r(t, 3), "id": _int(r["slate_id"]), "pg": _int(r["page"]),
                     "q": r["text"], "it": [self.item_ref(i, used) for i in _seq(r["items"])], "w": []}
                slates[_int(r["slate_id"])] = e
                add(t, e, s)
            elif k == "watch":
                item = self.item_ref(r["item_id"], used)
                rt = (rates.get((r["slate_id"], r["item_id"])) or [None]).pop(0) if rates.get(
                    (r["slate_id"], r["item_id"])) else None
                w = {"i": item, "pos": _int(r["position"]), "min": _r(r["value"], 1), "t": _r(t, 3),
                     "r": _r(rt["value"], 1) if rt else None, "f": rt["text"] if rt else None,
                     "rt": _r(rt["time"], 3) if rt else None}
                sl = slates.get(_int(r["slate_id"])) if r["slate_id"] is not None else None
                if sl is not None:
                    sl["w"].append(w)
                else:
                    add(t, dict(w, k="watch"), s)
            elif k == "search":
                add(t, {"k": "search", "t": _r(t, 3), "q": r["text"]}, s)
            elif k == "leave":
                add(t, {"k": "leave", "t": _r(t, 3), "why": r["text"], "slate": _int(r["slate_id"])}, s)
            elif k == "chat":
                add(t, {"k": "chat", "t": _r(t, 3), "with": _int(r["other_id"]), "init": True,
                        "it": [self.item_ref(i, used) for i in _seq(r["items"])], "text": _cut(r["text"], 20000)}, s)
            elif k == "heard":
                w = self._watched_after(uid, r["item_id"], t)
                add(t, {"k": "heard", "t": _r(t, 3), "i": self.item_ref(r["item_id"], used),
                        "from": _int(r["other_id"]), "via": r["text"], "watched": _r(w, 3)}, s)
            elif k == "post":
                pid = _int(r["post_id"])
                readers = self.readers.get(pid, [])
                add(t, {"k": "post", "t": _r(t, 3), "pid": pid, "root": _int(r["root_id"]),
                        "hop": _int(r["value"]) or 0, "of": _int(r["other_id"]), "i": self.item_ref(r["item_id"], used),
                        "text": _cut(r["text"], 2000), "reads": len(readers)}, s)
            elif k == "read_post":
                add(t, {"k": "read", "t": _r(t, 3), "pid": _int(r["post_id"]), "root": _int(r["root_id"]),
                        "by": _int(r["other_id"]), "i": self.item_ref(r["item_id"], used)}, s)
        # chats another user started with this one
        partner = self.chats_as_partner.get(uid)
        if partner is not None:
            for r in _records(partner, ["time", "user_id", "items", "text", "_order"]):
                order["now"] = r["_order"]
                add(r["time"], {"k": "chat", "t": _r(r["time"], 3), "with": int(r["user_id"]), "init": False,
                                "it": [self.item_ref(i, used) for i in _seq(r["items"])],
                                "text": _cut(r["text"], 20000)}, None)
        order["now"] = None
        persona = self._attach_calls(uid, spans, slates, entries, add)
        memory = self._attach_memories(uid, spans, entries, add)
        # blocks: sessions in order of their start, loose entries between them
        entries.sort(key=lambda x: (x[0], x[1]))
        blocks, loose = [], []
        for t, _, e, s in entries:
            if s is not None:
                spans[s]["e"].append(e)
            else:
                loose.append((t, e))
        for sp in spans.values():
            blocks.append((sp["t0"], 0, {"s": sp["s"], "t0": _r(sp["t0"], 3), "t1": _r(sp["t1"], 3), "act": sp["act"],
                                         "llm": sp.get("llm"), "e": sp["e"]}))
        for t, e in loose:
            blocks.append((t, 1, {"s": None, "t0": e["t"], "e": [e]}))
        blocks.sort(key=lambda b: (b[0], b[1]))
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["kind"]] = counts.get(r["kind"], 0) + 1
        return clean({"id": uid, "profile": prof, "persona": persona, "counts": counts, "memory": memory,
                      "blocks": [b[2] for b in blocks], "items": self.items_table(used)})

    def _attach_memories(self, uid: int, spans: dict, entries: list, add) -> dict:
        """The user's memories (``memories.parquet``) as timeline entries: an observation is a
        ``memory`` entry at the time it was remembered; a reflection joins the ``reflect``
        entry of the LLM call that made it (same time), or is one of its own (runs without
        the audit trail).  Returns what the header says about them."""
        covered = self.has_memories and (self.memory_users is None or uid in self.memory_users)
        if not covered:
            return {"kept": False, "file": self.has_memories, "n": 0}
        rows = self.memories.get(uid, [])
        reflects = {e["t"]: e for _, _, e, _ in entries if e["k"] == "reflect"}

        def session_at(t):
            for sp in spans.values():
                end = sp["t1"] if sp["t1"] is not None else math.inf
                if sp["t0"] - 1e-9 <= t <= end + 1e-9:
                    return sp["s"]
            return None

        by_store: dict[str, int] = {}
        for m in rows:
            t = float(m["time"])
            by_store[m["store"]] = by_store.get(m["store"], 0) + 1
            if m["kind"] == "reflection":
                text = str(m["text"])
                insight = text[len("insight: "):] if text.startswith("insight: ") else text
                e = reflects.get(_r(t, 3))
                if e is not None and "imp" not in e:
                    e.update(imp=_r(m["importance"], 2), st=m["store"], insight=e.get("insight") or insight)
                    continue
                add(t, {"k": "reflect", "t": _r(t, 3), "insight": insight, "imp": _r(m["importance"], 2),
                        "st": m["store"]}, session_at(t))
            else:
                add(t, {"k": "memory", "t": _r(t, 3), "text": _cut(m["text"], 2000), "imp": _r(m["importance"], 2),
                        "st": m["store"]}, session_at(t))
        return {"kept": True, "file": True, "n": len(rows), "by_store": by_store,
                "reflections": sum(1 for m in rows if m["kind"] == "reflection")}

    def _attach_calls(self, uid: int, spans: dict, slates: dict, entries: list, add) -> str | None:
        """Hang each of the user's LLM calls on what it decided: a page answer on its slate, an
        activity on its session, a chat's turns (both speakers') on the chat, a post on the
        post, a reaction on the post read; a reflection is an entry of its own; anything else
        stands alone at its time."""
        by_kind: dict[str, list[dict]] = {}
        for _, _, e, _ in entries:
            by_kind.setdefault(e["k"], []).append(e)
        for e in by_kind.get("chat", []):
            initiator = uid if e["init"] else e["with"]
            group = self.chat_call_groups.get((initiator, e["t"]))
            if group:
                persona = self._persona_of(uid)
                e["llm"] = [self._call(c, persona if c.get("user_id") == uid else None) for c in group]
        calls = self.calls_by_user.get(uid)
        if calls is None or calls.empty:
            return None
        recs = calls.to_dict("records")
        persona = self._persona_of(uid)
        slate_at = {}
        for sl in slates.values():
            slate_at.setdefault(sl["t"], sl)
        start_at = {round(sp["t0"], 3): sp for sp in spans.values()}

        def session(c):
            s = c.get("session")
            return int(s) if s is not None and not pd.isna(s) and int(s) in spans else None

        for c in recs:
            if c["_i"] in self.chat_calls_attached:
                continue
            call = self._call(c, persona)
            t = c.get("sim_time")
            t = float(t) if t is not None and not pd.isna(t) else None
            p = c.get("purpose")
            target = None
            if t is not None:
                key = round(t, 3)
                if p == "page":
                    target = slate_at.get(key)
                elif p == "activity":         # asked as the session began (its number is already counted)
                    s = session(c)
                    target = spans[s] if s is not None and "llm" not in spans[s] else start_at.get(key)
                elif p in ("post", "read_post"):
                    kind = "post" if p == "post" else "read"
                    cands = [e for e in by_kind.get(kind, []) if e["t"] is not None and e["t"] >= key - 1e-6]
                    if kind == "read":
                        cands = [e for e in cands if abs(e["t"] - key) < 1e-3 and "llm" not in e]
                    target = min(cands, key=lambda e: e["t"]) if cands else None
                elif p == "reflect":
                    parsed = c.get("parsed")
                    insight = parsed.get("insight") if isinstance(parsed, dict) else None
                    add(t, {"k": "reflect", "t": _r(t, 3), "insight": insight, "llm": [call]}, session(c))
                    continue
            if target is None:
                add(t if t is not None else self.end_time, {"k": "llm", "t": _r(t, 3), "p": p, "llm": [call]},
                    session(c))
            else:
                target.setdefault("llm", []).append(call)
        return _cut(persona, 4000) if persona else None

    def _persona_of(self, uid: int) -> str | None:
        """The system message of the user's first LLM call (its persona)."""
        if uid not in self._personas:
            persona = None
            calls = self.calls_by_user.get(uid)
            if calls is not None:
                for m in calls["messages"]:
                    if isinstance(m, list) and m and isinstance(m[0], dict) and m[0].get("role") == "system":
                        persona = m[0].get("content")
                        break
            self._personas[uid] = persona
        return self._personas[uid]

    def _index_chat_calls(self) -> None:
        """The LLM calls of each chat: the turns of one dialogue share its simulated time and
        the first is the initiator's; a chat event is matched to its initiator's latest
        dialogue that started at or before it."""
        self.chat_call_groups: dict[tuple[int, float], list[dict]] = {}
        self.chat_calls_attached: set[int] = set()
        calls = self.calls
        if calls.empty:
            return
        cc = calls[(calls["purpose"] == "chat") & calls["sim_time"].notna() & calls["user_id"].notna()]
        starts: dict[int, list[tuple[float, list[dict]]]] = {}
        for _, g in cc.groupby(cc["sim_time"].round(6), sort=True):
            recs = g.sort_values("_i").to_dict("records")
            starts.setdefault(int(recs[0]["user_id"]), []).append((float(recs[0]["sim_time"]), recs))
        chats = self.events[self.events["kind"] == "chat"]
        for u, t in zip(chats["user_id"], chats["time"]):
            lst = starts.get(int(u))
            if not lst:
                continue
            k = bisect_right([x[0] for x in lst], float(t) + 1e-9) - 1
            if k < 0:
                continue
            recs = lst[k][1]
            self.chat_call_groups[(int(u), _r(float(t), 3))] = recs
            self.chat_calls_attached.update(int(r["_i"]) for r in recs)

    # ------------------------------------------------------------------ the embedded sample

    def sample_users(self, seed: int = 0) -> list[int]:
        """Active users in a seeded random order (the order users are embedded in)."""
        return sample_order(self.by_user, seed)

    def bundle(self, max_users: int = DEFAULT_USERS, max_bytes: int = DEFAULT_MAX_BYTES,
               seed: int | None = None) -> dict:
        """The summary plus the timelines of up to ``max_users`` users (a seeded random sample
        of the active users) whose JSON adds up to at most ``max_bytes``."""
        data = self.summary()
        seed = int(self.run.metrics.get("seed") or 0) if seed is None else seed
        details, size, skipped = {}, 0, 0
        items = dict(data["items"])
        if max_users > 0:
            for uid in self.sample_users(seed):
                if len(details) >= max_users:
                    break
                d = self.user(uid)
                n = len(dumps(d))
                if size + n > max_bytes:
                    skipped += 1
                    if skipped >= 20:
                        break
                    continue
                size += n
                items.update({int(k): v for k, v in d.pop("items").items()})
                details[uid] = d
        data["items"] = items
        data["details"] = details
        data["embedded"] = {"users": len(details), "of": len(data["users"]["rows"]), "bytes": size,
                            "max_users": max_users, "max_bytes": max_bytes}
        return data
