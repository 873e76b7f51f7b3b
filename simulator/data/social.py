"""The social graph: who chats with whom and who sees whose posts.

Edges are friendships (undirected) unless the graph is read from a directed edge list;
a user's followers receive its posts, its friends are its chat partners.
"""

from __future__ import annotations

import heapq
import logging
import re
from pathlib import Path

import numpy as np

from recworld.simulator.data.errors import DataError, file_problem, show

log = logging.getLogger("recworld")


class SocialGraph:
    def __init__(self, n_users: int, edges: np.ndarray, directed: bool = False):
        """``edges``: (m, 2) array of user *indices*; for a directed graph row (a, b) means b follows a."""
        edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        if len(edges) and (edges.min() < 0 or edges.max() >= n_users):
            raise ValueError("social graph edge refers to a user index outside the population")
        edges = edges[edges[:, 0] != edges[:, 1]]
        followers: list[set[int]] = [set() for _ in range(n_users)]
        friends: list[set[int]] = [set() for _ in range(n_users)]
        for a, b in edges.tolist():
            followers[a].add(b)
            friends[a].add(b)
            friends[b].add(a)
            if not directed:
                followers[b].add(a)
        self.n_users = n_users
        self.directed = directed
        self.followers = [np.array(sorted(s), dtype=np.int64) for s in followers]
        self.friends = [np.array(sorted(s), dtype=np.int64) for s in friends]
        self.n_edges = int(sum(len(f) for f in followers) // (1 if directed else 2))

    def __repr__(self) -> str:
        return f"SocialGraph({self.n_users} users, {self.n_edges} edges, directed={self.directed})"

    def degrees(self) -> np.ndarray:
        return np.array([len(f) for f in self.friends])

    @classmethod
    def generate(cls, kind: str, n_users: int, rng: np.random.Generator, degree: int = 6,
                 rewire: float = 0.1) -> "SocialGraph":
        """``small_world`` (Watts-Strogatz), ``scale_free`` (Barabasi-Albert), ``random`` (G(n, m)) or ``none``."""
        import networkx as nx

        seed = int(rng.integers(2**31 - 1))
        if kind == "none" or n_users < 2:
            return cls(n_users, np.empty((0, 2)))
        degree = min(degree, n_users - 1)
        if kind == "small_world":
            k = max(2, degree - degree % 2) if n_users > 2 else 1
            g = nx.watts_strogatz_graph(n_users, k, rewire, seed=seed)
        elif kind == "scale_free":
            g = nx.barabasi_albert_graph(n_users, max(1, degree // 2), seed=seed)
        elif kind == "random":
            g = nx.gnm_random_graph(n_users, n_users * degree // 2, seed=seed)
        else:
            raise ValueError(f"unknown social graph kind {kind!r}; known: small_world, scale_free, random, none, edgelist")
        return cls(n_users, np.array(list(g.edges()), dtype=np.int64).reshape(-1, 2))

    @classmethod
    def from_edgelist(cls, path: str | Path, user_ids: np.ndarray, directed: bool = False) -> "SocialGraph":
        """Whitespace- or comma-separated pairs of user ids, one per line; '#' starts a comment.

        Pairs naming a user outside the population are skipped (a scenario may simulate a
        sample of a larger network) with a warning that counts them; if no pair joins two
        users of the population, that is a ``DataError``.
        """
        p = Path(path).expanduser()
        pairs, lines = read_edgelist(p)
        index = {int(u): k for k, u in enumerate(np.asarray(user_ids).tolist())}
        problem, note = match_problem(p, pairs, lines, index)
        if problem is not None:
            raise problem
        if note:
            log.warning("%s", note)
        keep = [k for k, (a, b) in enumerate(pairs) if a in index and b in index]
        edges = [(index[pairs[k][0]], index[pairs[k][1]]) for k in keep]
        return cls(len(user_ids), np.array(edges, dtype=np.int64).reshape(-1, 2), directed=directed)


_INT = re.compile(r"[+-]?[0-9]+")
EDGELIST_HINT = "each line holds two whole-number user ids, e.g. '12 34' or '12,34' ('#' starts a comment)"


def read_edgelist(path: str | Path) -> tuple[list[tuple[int, int]], list[int]]:
    """The pairs of user ids in an edge list file and the line of each, checked: exactly two
    whole numbers per line (blank and comment lines are skipped), at least one pair."""
    p = Path(path).expanduser()
    if not p.exists() and not p.is_symlink():
        raise FileNotFoundError(f"social edge list {p} does not exist")
    problem = file_problem(p, "an edge list")
    if problem is not None:
        raise problem
    try:
        data = p.read_bytes()
    except OSError as e:
        raise DataError(p, f"cannot be read ({e.strerror or e})") from None
    if b"\x00" in data[:65536]:
        raise DataError(p, "is a binary file, not an edge list", hint=EDGELIST_HINT)
    pairs: list[tuple[int, int]] = []
    lines: list[int] = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        try:
            text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise DataError(p, f"is not UTF-8 text (byte 0x{raw[e.start]:02x})", line=n,
                            hint="save the file as UTF-8") from None
        line = text.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(p, f"expected two user ids, got {len(parts)} value{'s' if len(parts) != 1 else ''} "
                            f"({show(line, 40)})", line=n, hint=EDGELIST_HINT)
        bad = [x for x in parts if not _INT.fullmatch(x)]
        if bad:
            raise DataError(p, f"user id {show(bad[0], 40)} is not a whole number", line=n, hint=EDGELIST_HINT)
        pairs.append((int(parts[0]), int(parts[1])))
        lines.append(n)
    if not pairs:
        raise DataError(p, "holds no pairs of user ids (it is empty or only comments)",
                        hint=EDGELIST_HINT + "; for no social graph use social.graph: none")
    return pairs, lines


def match_problem(path: Path, pairs: list[tuple[int, int]], lines: list[int], index) -> tuple[DataError | None, str]:
    """(error, note) about how an edge list's ids match the population's user ids ``index``
    (any container of ints): an error if no pair joins two users, else a note (or "") when
    some pairs name users outside the population."""
    n_ok = sum(1 for a, b in pairs if a != b and a in index and b in index)
    n_loops = sum(1 for a, b in pairs if a == b)
    loops = f"; {n_loops} pair{'s' if n_loops > 1 else ''} join{'s' if n_loops == 1 else ''} a user to itself" \
        if n_loops else ""
    ids = {x for ab in pairs for x in ab}
    unknown = sorted(x for x in ids if x not in index)
    some = ", ".join(map(str, unknown[:3])) + (", ..." if len(unknown) > 3 else "")
    known = heapq.nsmallest(3, index)
    users = ", ".join(map(str, known)) + (", ..." if len(index) > 3 else "")
    if n_ok == 0:
        first = next((ln for (a, b), ln in zip(pairs, lines) if a not in index or b not in index), lines[0])
        return DataError(path, f"none of its {len(pairs)} pairs joins two users of the simulated population "
                         f"({len(unknown)} of its {len(ids)} ids are not user ids"
                         + (f", e.g. {some}; the first such pair is on line {first}" if unknown else "")
                         + f"{loops}; the population's user ids are {users})",
                         hint="use the same user ids as the data (MovieLens userId; 1..population.size for "
                         "synthetic users), or social.graph: small_world"), ""
    if unknown:
        n_out = sum(1 for a, b in pairs if a not in index or b not in index)
        return None, (f"social edge list {path}: {n_out} of {len(pairs)} pairs name users outside "
                      f"the simulated population and are ignored ({len(unknown)} of {len(ids)} ids unknown, "
                      f"e.g. {some}){loops}; {n_ok} pairs are used")
    if n_loops:
        return None, f"social edge list {path}: {n_loops} of {len(pairs)} pairs join a user to itself and are ignored"
    return None, ""
