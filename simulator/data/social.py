"""The social graph: who chats with whom and who sees whose posts.

Edges are friendships (undirected) unless the graph is read from a directed edge list;
a user's followers receive its posts, its friends are its chat partners.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
        """Whitespace- or comma-separated pairs of user ids, one per line; '#' starts a comment."""
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"social edge list {p} does not exist")
        index = {int(u): k for k, u in enumerate(user_ids)}
        edges = []
        for n, line in enumerate(p.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].replace(",", " ").strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) < 2:
                raise ValueError(f"{p}:{n}: expected two user ids, got {line!r}")
            try:
                a, b = int(parts[0]), int(parts[1])
            except ValueError:
                raise ValueError(f"{p}:{n}: user ids must be integers, got {line!r}") from None
            if a not in index or b not in index:
                # users outside the simulated population are ignored, not an error: a scenario
                # may simulate a sample of a larger network
                continue
            edges.append((index[a], index[b]))
        return cls(len(user_ids), np.array(edges, dtype=np.int64).reshape(-1, 2), directed=directed)
