"""Lookahead batching: many agents' LLM requests in flight at once, deterministically.

A thought takes ``think`` simulated minutes.  The first request after a quiet spell opens a
window that closes ``think`` minutes later; every request issued inside it is sent in one
concurrent batch when it closes (up to the service's concurrency limit), and each answer is
delivered at its own ``request time + think``, which is never before the window closes.
What a user sees therefore depends only on simulated time, never on the order in which
the server answers, and the number of requests in flight grows with the number of agents.
"""

from __future__ import annotations

from typing import Any

import simpy


class LookaheadBatcher:
    def __init__(self, env: simpy.Environment, service, think: float):
        self.env = env
        self.service = service
        self.think = float(think)
        self._pending: list[tuple[float, list, simpy.Event]] = []
        self._open = False
        self.batches = 0
        self.requests = 0
        self.max_batch = 0

    def submit(self, requests: list) -> simpy.Event:
        """An event that succeeds with the list of results, ``think`` minutes from now."""
        ev = self.env.event()
        self._pending.append((self.env.now, list(requests), ev))
        if not self._open:
            self._open = True
            self.env.process(self._close_window())
        return ev

    def _close_window(self):
        yield self.env.timeout(self.think)
        batch, self._pending, self._open = self._pending, [], False
        flat = [r for _, reqs, _ in batch for r in reqs]
        results = self.service.complete_many(flat) if flat else []
        self.batches += 1
        self.requests += len(flat)
        self.max_batch = max(self.max_batch, len(flat))
        i = 0
        for t, reqs, ev in batch:
            mine, i = results[i:i + len(reqs)], i + len(reqs)
            delay = max(0.0, t + self.think - self.env.now)
            self.env.timeout(delay).callbacks.append(lambda _e, ev=ev, mine=mine: ev.succeed(mine))

    def stats(self) -> dict[str, Any]:
        return {"batches": self.batches, "requests": self.requests, "max_batch": self.max_batch,
                "mean_batch": round(self.requests / self.batches, 2) if self.batches else 0.0}
