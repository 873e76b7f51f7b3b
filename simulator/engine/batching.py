"""Lookahead batching: many agents' LLM requests in flight at once, deterministically.

A thought takes ``think`` simulated minutes.  The first request after a quiet spell opens a
window of ``window`` minutes (at most ``think``); when it closes, every request issued inside
it is sent as one batch, and the simulation goes on while the batch is in flight.  Each
answer is delivered at its own ``request time + think``, never before its window closed, and
the world waits (in wall-clock time) for an answer only when simulated time reaches that
delivery.  With ``window < think`` several windows are in flight together, which keeps the
server's capacity full even when one window holds fewer requests than it can take.

What a user sees depends only on simulated time, never on the order in which the server
answers, so the run is deterministic.  Batches go to the LLM service on one background
event loop, under one concurrency limit shared by all batches in flight.
"""

from __future__ import annotations

import asyncio
from typing import Any

import simpy


class LookaheadBatcher:
    def __init__(self, env: simpy.Environment, service, think: float, window: float | None = None,
                 on_wait=None):
        self.env = env
        self.on_wait = on_wait                    # called before the world blocks on an answer
        self.service = service
        self.think = float(think)
        self.window = self.think if window is None else min(float(window), self.think)
        self._pending: list[tuple[float, list, simpy.Event]] = []
        self._open = False
        self.batches = 0
        self.requests = 0
        self.max_batch = 0
        self.waited_s = 0.0                       # wall time the simulation spent waiting for answers
        self._bg = None                           # the service's background loop, once used
        self._sem: asyncio.Semaphore | None = None
        self._futures: list = []                  # (future, number of requests) of batches in flight
        self.cancelled = 0                        # requests still in flight when an interrupted run closed
        self.inflight_sum = 0                     # requests in flight, summed at each ``send`` (windows)
        self.max_inflight = 0
        self.sync_minutes = 0.0                   # > 0: the world runs synchronous windows and uses ``send``
        self.windows = 0
        self.window_log: list[tuple[int, int]] = []   # per window: (requests, longest chain of a lane)
        self._requests_at_window = 0

    # ------------------------------------------------------------------ the background loop

    def _ensure_loop(self) -> None:
        if self._bg is not None:
            return
        self._bg = self.service.background()       # the service's loop: it stops it on close

        async def make_sem():
            return asyncio.Semaphore(self.service.config.max_concurrency)
        self._sem = self._bg.run(make_sem())

    def close(self, cancel: bool = False) -> None:
        """Let batches still in flight finish (their answers are logged and cached), or with
        ``cancel`` (an interrupted run) cancel them at once and count their requests."""
        import concurrent.futures

        cfg = self.service.config
        for f, n in self._futures:
            if cancel and not f.done():
                f.cancel()
                self.cancelled += n
            try:
                f.result(timeout=5.0 if cancel else cfg.timeout_s * (cfg.retries + 2))
            except (Exception, concurrent.futures.CancelledError):  # noqa: BLE001 - the service logged failures
                pass
        self._futures.clear()
        self._bg = None

    async def _run(self, requests: list) -> list:
        return list(await asyncio.gather(*(self.service.acomplete(q, self._sem) for q in requests)))

    # ------------------------------------------------------------------ the world's side

    def submit(self, requests: list) -> simpy.Event:
        """An event that succeeds with the list of results, ``think`` minutes from now."""
        ev = self.env.event()
        self._pending.append((self.env.now, list(requests), ev))
        if not self._open:
            self._open = True
            self.env.process(self._close_window())
        return ev

    def _close_window(self):
        yield self.env.timeout(self.window)
        batch, self._pending, self._open = self._pending, [], False
        flat = [r for _, reqs, _ in batch for r in reqs]
        self.batches += 1
        self.requests += len(flat)
        self.max_batch = max(self.max_batch, len(flat))
        self._ensure_loop()
        future = self._bg.submit(self._run(flat))
        self._futures = [(f, n) for f, n in self._futures if not f.done()] + [(future, len(flat))]
        i = 0
        for t, reqs, ev in batch:
            lo, i = i, i + len(reqs)
            delay = max(0.0, t + self.think - self.env.now)
            self.env.timeout(delay).callbacks.append(
                lambda _e, ev=ev, lo=lo, hi=i: ev.succeed(self._result(future)[lo:hi]))

    def _result(self, future) -> list:
        if not future.done():
            import time

            if self.on_wait is not None:
                self.on_wait()
            t0 = time.perf_counter()
            out = future.result()
            self.waited_s += time.perf_counter() - t0
            return out
        return future.result()

    # ------------------------------------------------------------------ synchronous windows

    def send(self, requests: list):
        """Send ``requests`` at once (a lane of a synchronous window); returns the future of their results."""
        self._ensure_loop()
        future = self._bg.submit(self._run(list(requests)))
        self.batches += 1
        self.requests += len(requests)
        self.max_batch = max(self.max_batch, len(requests))
        self._futures = [(f, n) for f, n in self._futures if not f.done()] + [(future, len(requests))]
        inflight = sum(n for f, n in self._futures if not f.done())
        self.inflight_sum += inflight
        self.max_inflight = max(self.max_inflight, inflight)
        return future

    def end_window(self, chain: int) -> None:
        """A synchronous window ended: record its requests and its longest chain of dependent calls."""
        self.windows += 1
        self.window_log.append((self.requests - self._requests_at_window, chain))
        self._requests_at_window = self.requests

    def wait(self, future) -> list:
        """The results of a future from ``send``, waiting (in wall-clock time) if they are not in yet."""
        return self._result(future)

    def stats(self) -> dict[str, Any]:
        out = {"batches": self.batches, "requests": self.requests, "max_batch": self.max_batch,
               "mean_batch": round(self.requests / self.batches, 2) if self.batches else 0.0,
               "window_minutes": self.window, "wait_seconds": round(self.waited_s, 3), "cancelled": self.cancelled}
        if self.sync_minutes:
            out.update(sync_minutes=self.sync_minutes, windows=self.windows, max_in_flight=self.max_inflight,
                       mean_in_flight=round(self.inflight_sum / self.batches, 2) if self.batches else 0.0)
        return out
