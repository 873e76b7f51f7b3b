"""The discrete-event world: one simpy environment, one process per user.

Time is in simulated minutes.  A user waits for its next session (exponential gaps at its
own activity rate), picks an activity with its brain and runs it; every decision costs
``session.think_minutes`` and watching an item keeps the user busy for what it watches.
"""

from __future__ import annotations

from typing import Iterator

import heapq

import numpy as np
import simpy

from recworld.simulator.data.catalog import Catalog
from recworld.simulator.engine.events import EventKind as K
from recworld.simulator.engine.events import EventLog
from recworld.simulator.data.population import Population
from recworld.simulator.protocols import Brain, Feedback, Post, Recommender, Slate, SlateRequest, Think, UserState
from recworld.simulator.scenario import Scenario
from recworld.simulator.data.social import SocialGraph

READ_MINUTES = 0.25       # time to read one post
RUN_GC_YOUNG = 50_000     # objects allocated between the garbage collector's scans during a run
_NO_CLICKS = np.empty(0, dtype=np.int64)     # a page where nothing was watched
_NO_VALUES = np.empty(0)


class World:
    def __init__(self, scenario: Scenario, catalog: Catalog, population: Population, graph: SocialGraph,
                 recommender: Recommender, brain: Brain | list[Brain], log: EventLog,
                 user_seeds: np.random.SeedSequence, llm=None):
        self.scenario = scenario
        self.catalog = catalog
        self.population = population
        self.graph = graph
        self.recommender = recommender
        # one brain for everybody, or one per user (a mixed population)
        self.brains = list(brain) if isinstance(brain, (list, tuple)) else [brain] * len(population)
        if len(self.brains) != len(population):
            raise ValueError(f"{len(self.brains)} brains for {len(population)} users")
        self.brain = self.brains[0] if self.brains else brain
        self.distinct_brains = list({id(b): b for b in self.brains}.values())
        self.log = log
        self.env = simpy.Environment()
        self.llm = llm
        self.owns_llm = False            # build_world started it: close() stops it
        self.batcher = None
        if llm is not None:
            from recworld.simulator.engine.batching import LookaheadBatcher

            self.batcher = LookaheadBatcher(self.env, llm, scenario.session.think_minutes,
                                            scenario.session.think_minutes * scenario.session.batch_window,
                                            on_wait=log.flush_if_due)
        self.end = scenario.duration_days * 1440.0
        self.sync = float(scenario.world.sync_minutes)
        self._lanes: list | None = None          # synchronous windows: one lane per active user while running
        if self.batcher is not None:
            self.batcher.sync_minutes = self.sync
        cfg = scenario.session
        self.k, self.max_pages, self.think = cfg.page_size, cfg.max_pages, cfg.think_minutes
        ids = population.ids
        self.states = [
            UserState(i, int(ids[i]), np.random.default_rng(s), seen=set(population.history[i].tolist()))
            for i, s in enumerate(user_seeds.spawn(len(population)))
        ]
        self._activity = population.profiles["activity"].to_numpy(dtype=np.float64)
        self.oracle = scenario.output.oracle and any(b.oracle for b in self.brains)
        self._slate_id = 0
        self._excludes: dict[int, tuple[int, np.ndarray]] = {}     # user -> (len(seen), seen as an array)
        self._post_id = 0
        self._ids_list: list[int] | None = None
        self._started = False
        # set by the Gymnasium World env: slate requests wait in this queue for an action
        self.external: list | None = None
        self.on_feedback = None          # callable(slate_id, request, Feedback) at decision time

    def start(self) -> None:
        """Start every user's process (``run`` does this; an env drives ``env.step`` itself)."""
        if self._started:
            raise RuntimeError("a World runs once; build a new one for another run")
        self._started = True
        for st in self.states:
            if self._activity[st.index] > 0:
                self.env.process(self._life(st))

    # ------------------------------------------------------------------ running

    def run(self, progress: bool = True) -> None:
        """Run to ``duration_days``; shows a progress bar over simulated time.

        What the build made (catalog, users, graph, recommender state) lives as long as the
        run: it is moved out of the garbage collector's sight for the run (``gc.freeze``) so
        that its scans cost in proportion to what the run allocates, not to the build.  The
        run also scans less often (``gc.set_threshold``: a young generation of
        ``RUN_GC_YOUNG`` objects, not 700): a world allocates a stream of short-lived objects
        (a process's timeouts, a page's records) that reference counting frees, and a parametric
        world creates no reference cycles, so frequent scans find nothing to collect.
        """
        import gc

        gc.collect()
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], RUN_GC_YOUNG), *thresholds[1:])
        try:
            if self.sync > 0:
                return self._run_windows(progress)
            return self._run_strict(progress)
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()

    def _run_strict(self, progress: bool) -> None:
        self.start()
        from recworld.simulator.output.progress import progress_bar

        step = max(self.end / 200, 1.0)
        with progress_bar(total=round(self.end), unit="sim-min", desc=self.scenario.name, enabled=progress,
                          dynamic_ncols=True, mininterval=0.5) as bar:
            t = 0.0
            while t < self.end:
                nxt = min(self.end, t + step)
                self.env.run(until=nxt)
                bar.update(round(nxt) - round(t))
                bar.set_postfix(events=self.log.count, refresh=False)
                t = nxt

    # ------------------------------------------------------------------ synchronous windows

    def _run_windows(self, progress: bool) -> None:
        """Run in synchronous windows of ``world.sync_minutes`` (``docs/windows.md``).

        Each active user is a lane with a simpy environment of its own.  In a window, every lane
        runs on its own until it asks an LLM something or reaches the barrier; its requests go
        out at once, so the calls of all lanes are in flight together.  Lanes resume in a fixed
        order (a lane's first, second, ... request of the window, then user order) whatever
        order the answers come in, so everything they share (the recommender's random draws,
        counters) is used in the same order in every run.  At the barrier the recommender learns
        the window's feedback and the social effects (posts reach inboxes, a chat reaches the
        partner) are delivered, in simulated-time order; then the window's events are written
        in time order.
        """
        if self._started:
            raise RuntimeError("a World runs once; build a new one for another run")
        if self.external is not None:
            raise RuntimeError("synchronous windows need the world to run on its own; "
                               "the Gymnasium envs keep strict time (world.sync_minutes: 0)")
        self._started = True
        from recworld.simulator.output.progress import progress_bar

        main_env, main_log = self.env, self.log
        lanes: dict[int, _Lane] = {}
        for st in self.states:
            if self._activity[st.index] > 0:
                lane = _Lane(st.index, simpy.Environment())
                self.env = lane.env
                lane.env.process(self._life(st))
                lanes[st.index] = lane
        self._lanes = lanes
        self._pending: list = []                 # heap of (round, user index, future, event) for LLM answers
        self._deferred: list = []                # (time, order, fn, args): applied at the barrier
        buffer = _WindowLog(main_log)
        self.log = buffer
        # lanes by the time of their next event, to wake only those with something to do
        wake = [(lane.env.peek(), i) for i, lane in lanes.items()]
        heapq.heapify(wake)
        t = 0.0
        try:
            with progress_bar(total=round(self.end), unit="sim-min", desc=self.scenario.name, enabled=progress,
                              dynamic_ncols=True, mininterval=0.5) as bar:
                while t < self.end:
                    stop = min(self.end, t + self.sync)
                    due = []
                    while wake and wake[0][0] < stop:
                        due.append(heapq.heappop(wake)[1])
                    for i in sorted(due):
                        self._step_lane(lanes[i], stop)
                    while self._pending:
                        _, i, future, ev = heapq.heappop(self._pending)
                        lane = lanes[i]
                        results = self.batcher.wait(future)
                        lane.blocked = False
                        self.env = lane.env
                        ev.succeed(results)
                        self._step_lane(lane, stop)
                    chain = 0                   # the longest chain of dependent LLM calls of a lane
                    for i in due:
                        nxt = lanes[i].env.peek()
                        if nxt < float("inf"):
                            heapq.heappush(wake, (nxt, i))
                        chain = max(chain, lanes[i].round)
                        lanes[i].round = 0
                    self._barrier()
                    if self.batcher is not None:
                        self.batcher.end_window(chain)
                    bar.update(round(stop) - round(t))
                    bar.set_postfix(events=main_log.count, refresh=False)
                    t = stop
        finally:
            buffer.write()                      # an interrupted window keeps what it did, in time order
            self.log, self.env = main_log, main_env
            self._lanes = None
            if self.env.now < t:
                self.env.run(until=t)

    def _step_lane(self, lane: "_Lane", stop: float) -> None:
        """Run one lane until it waits for an LLM answer or its next event is at the barrier or later."""
        env = self.env = lane.env
        self._current = lane
        while not lane.blocked and env.peek() < stop:
            env.step()

    def _lane_submit(self, requests: list) -> simpy.Event:
        lane = self._current
        ev = self.env.event()
        lane.blocked = True
        lane.round += 1
        heapq.heappush(self._pending, (lane.round, lane.index, self.batcher.send(requests), ev))
        return ev

    def _defer(self, time: float, fn, *args) -> None:
        self._deferred.append((time, len(self._deferred), fn, args))

    def _barrier(self) -> None:
        """Apply what the window deferred (feedback, deliveries) in time order, then write its events."""
        deferred, self._deferred = sorted(self._deferred, key=lambda d: (d[0], d[1])), []
        for _, _, fn, args in deferred:
            fn(*args)
        self.log.write()

    def _emit(self, kind: K, st: UserState, **kw) -> None:
        self.log.emit(kind, self.env.now, st.user_id, session=st.session, **kw)

    def _wait(self, minutes: float):
        return self.env.timeout(max(0.0, minutes))

    def _think(self, decision) -> Iterator:
        """Resolve a brain's ``Think`` (LLM requests) into its decision through the batcher."""
        while isinstance(decision, Think):
            if self.batcher is None:
                raise RuntimeError("a brain asked for an LLM, but this world has no LLM service "
                                   "(build it with build_world, which starts the scenario's llm)")
            if self._lanes is None:
                results = yield self.batcher.submit(decision.requests)
            else:       # a lane of a synchronous window: the answer arrives ``think`` minutes after asking
                results = yield self._lane_submit(decision.requests)
                yield self.env.timeout(self.think)
            decision = decision.then(results)
        return decision

    def close(self, cancel: bool = False) -> None:
        """Flush the event log and stop the LLM service (and an embedded server) if any;
        ``cancel`` (an interrupted run) cancels LLM requests still in flight instead of waiting."""
        self.log.close()
        if self.batcher is not None:
            self.batcher.close(cancel=cancel)
        if self.llm is not None and self.owns_llm:
            self.llm.close()

    # ------------------------------------------------------------------ a user's life

    def _life(self, st: UserState) -> Iterator:
        mean_gap = 1440.0 / self._activity[st.index]
        while True:
            yield self.env.timeout(st.rng.exponential(mean_gap))
            yield from self._session(st)

    def _session(self, st: UserState) -> Iterator:
        st.session += 1
        st.pages_seen = 0
        st.session_watched = []
        env, log = self.env, self.log          # a lane's own (synchronous windows) for the whole session
        start = env.now
        brain = self.brains[st.index]
        choice = brain.choose_activity(st, start)
        if isinstance(choice, Think):
            choice = yield from self._think(choice)
        kind = choice.kind
        if kind == "chat" and len(self.graph.friends[st.index]) == 0:
            kind = "browse"           # nobody to talk to
        log.emit(K.SESSION_START, env.now, st.user_id, session=st.session, text=kind)
        if st.inbox:
            yield from self._read_inbox(st)
        if kind == "browse":
            yield from self._browse(st, None)
        elif kind == "search":
            yield self._wait(self.think)
            query = choice.query or brain.search_query(st, env.now)
            if isinstance(query, Think):
                query = yield from self._think(query)
            yield from self._browse(st, query)
        elif kind == "chat":
            yield from self._chat(st)
        elif kind == "post":
            yield from self._post(st)
        log.emit(K.SESSION_END, env.now, st.user_id, session=st.session, value=env.now - start, text=kind)

    def _exclude(self, st: UserState) -> np.ndarray:
        """The user's seen items as an array (a request's ``exclude``), rebuilt only when ``seen``
        has grown since the last page (it only grows, so an unchanged size is an unchanged set)."""
        cached = self._excludes.get(st.index)
        if cached is not None and cached[0] == len(st.seen):
            return cached[1]
        arr = np.fromiter(st.seen, dtype=np.int64, count=len(st.seen))
        self._excludes[st.index] = (len(st.seen), arr)
        return arr

    def _browse(self, st: UserState, query: str | None) -> Iterator:
        page = 0
        brain = self.brains[st.index]
        emit, env = self.log.emit, self.env      # a lane's own (synchronous windows) for the whole visit
        timeout = env.timeout
        ids, id_array, titles = self._item_ids(), self.catalog.ids, self.catalog.titles
        think, k, max_pages = max(0.0, self.think), self.k, self.max_pages
        uid, session = st.user_id, st.session
        oracle = self.oracle and brain.oracle
        if query:
            emit(K.SEARCH, env.now, uid, session=session, text=query)
        while True:
            yield timeout(think)
            now = env.now
            st.query = query
            request = SlateRequest(st.index, k, page, self._exclude(st), query, now, uid)
            if self.external is None:
                slate, listed = self._check_slate(self.recommender.recommend(request))
            else:
                pending = env.event()
                self.external.append((request, pending))
                slate, listed = self._check_slate((yield pending))
            items = slate.items
            self._slate_id += 1
            sid = self._slate_id
            # arrays, not lists, into the log: the garbage collector does not track them
            props = slate.propensities
            if props is not None:          # a copy: the recommender may reuse its array
                props = np.array(props, dtype=np.float64)
            shown = id_array[items]
            extra = {} if props is None else {"propensities": props}
            if oracle and listed:
                allowed = np.ones(len(self.catalog), dtype=bool)
                allowed[request.exclude] = False
                extra["p_click"] = brain.slate_click_probability(st, items)
                extra["p_oracle"] = brain.best_click_probability(st, len(items), np.flatnonzero(allowed))
            emit(K.SLATE, now, uid, session=session, slate_id=sid, page=page, items=shown, text=query, **extra)
            st.pages_seen += 1
            if not listed:
                emit(K.LEAVE, now, uid, session=session, slate_id=sid, text="empty slate")
                return
            choice = brain.choose_from_slate(st, items, page, now)
            if isinstance(choice, Think):
                choice = yield from self._think(choice)
            # what each pick is worth to the user is settled when it is picked
            watch = choice.watch
            if len(watch):
                cons = [brain.consume(st, listed[pos], now) for pos in watch]
                clicked = np.asarray(watch, dtype=np.int64)
                ratings = np.array([c.rating for c in cons])
                minutes = np.array([c.minutes for c in cons])
            else:
                cons, clicked, ratings, minutes = (), _NO_CLICKS, _NO_VALUES, _NO_VALUES
            if self.on_feedback is not None:
                self.on_feedback(sid, request, Feedback(user=st.index, slate=slate, clicked=clicked, ratings=ratings,
                                                        watch_minutes=minutes, time=now, query=query,
                                                        user_id=uid))
            for pos, con in zip(watch, cons):
                item = listed[pos]
                item_id = ids[item]
                emit(K.WATCH, env.now, uid, session=session, item_id=item_id, slate_id=sid, page=page,
                     position=int(pos), value=con.minutes)
                st.seen.add(item)
                st.heard_of.pop(item, None)
                yield timeout(max(0.0, con.minutes))
                emit(K.RATE, env.now, uid, session=session, item_id=item_id, slate_id=sid, value=con.rating,
                     text=con.feeling or None)
                st.watched.append((item, con.rating))
                st.session_watched.append(item)
                feeling = f" ({con.feeling})" if con.feeling else ""
                st.remember(env.now, f"watched {titles[item]} and rated it {con.rating:g}/5{feeling}")
            if self.external is None:      # the recommender learns once the user has watched
                fb = Feedback(user=st.index, slate=slate, clicked=clicked, ratings=ratings, watch_minutes=minutes,
                              time=env.now, query=query, user_id=uid)
                if self._lanes is None:
                    self.recommender.update(fb)
                else:                      # synchronous windows: it learns at the barrier
                    self._defer(env.now, self.recommender.update, fb)
            nxt = choice.next
            if nxt == "leave":
                emit(K.LEAVE, env.now, uid, session=session, slate_id=sid, text="done")
                return
            if (nxt == "next" and page + 1 >= max_pages) or st.pages_seen >= 3 * max_pages:
                emit(K.LEAVE, env.now, uid, session=session, slate_id=sid, text="last page")
                return
            if nxt == "search" and choice.query:
                query, page = choice.query, 0
                emit(K.SEARCH, env.now, uid, session=session, text=query)
            else:
                page += 1

    def _item_ids(self) -> list[int]:
        """The catalog's public item ids as Python ints (what events carry), made once."""
        if self._ids_list is None:
            self._ids_list = self.catalog.ids.tolist()
        return self._ids_list

    def _check_slate(self, slate: Slate) -> tuple[Slate, list[int]]:
        """The slate with its items as an int64 array, and its items as a list; a clear error
        for a slate that is too long, out of the catalog or repeats an item."""
        items = slate.items
        if type(items) is not np.ndarray or items.dtype != np.int64:
            items = np.asarray(items, dtype=np.int64)
        name = self.recommender.name if self.recommender is not None else "env policy"
        if items.ndim != 1 or len(items) > self.k:
            raise ValueError(f"recommender {name!r} returned {items.shape} items for a slate of size {self.k}")
        listed = items.tolist()
        if listed and (min(listed) < 0 or max(listed) >= len(self.catalog)):
            raise ValueError(f"recommender {name!r} returned an item index outside the catalog")
        if len(set(listed)) != len(listed):
            raise ValueError(f"recommender {name!r} returned a slate with duplicate items")
        return (slate if slate.items is items else Slate(items, slate.propensities)), listed

    def _chat(self, st: UserState) -> Iterator:
        friends = self.graph.friends[st.index]
        other = self.states[int(friends[st.rng.integers(len(friends))])]
        yield self._wait(self.think)
        dialogue = self.brains[st.index].chat(st, other, self.env.now)
        if isinstance(dialogue, Think):
            dialogue = yield from self._think(dialogue)
        yield self._wait(max(1.0, self.think) * max(1, len(dialogue.lines)))
        mentioned = list(dialogue.mentioned.items())
        self._emit(K.CHAT, st, other_id=other.user_id, items=[int(self.catalog.ids[i]) for i, _ in mentioned],
                   text=dialogue.text)
        about = "; ".join(self.catalog.titles[i] for i, _ in mentioned)
        if self._lanes is not None:      # synchronous windows: the partner's lane hears of it at the barrier
            now = self.env.now
            self._chat_effects(st, other, mentioned, about, now)
            self._defer(now, self._chat_effects, other, st, mentioned, about, now)
            return
        for person, partner in ((st, other), (other, st)):
            person.remember(self.env.now, f"chatted with user {partner.user_id}" + (f" about {about}" if about else ""))
        for item, speaker in mentioned:
            listener = other if speaker == st.index else st
            if item not in listener.seen and item not in listener.heard_of:
                listener.heard_of[item] = speaker
                self.log.emit(K.HEARD, self.env.now, listener.user_id, session=listener.session,
                              item_id=int(self.catalog.ids[item]), other_id=self.states[speaker].user_id, text="chat")

    def _chat_effects(self, person: UserState, partner: UserState, mentioned: list, about: str,
                      now: float) -> None:
        """What a chat leaves with ``person``: the memory of it, and the items ``partner`` mentioned."""
        person.remember(now, f"chatted with user {partner.user_id}" + (f" about {about}" if about else ""))
        for item, speaker in mentioned:
            if speaker == person.index:
                continue
            if item not in person.seen and item not in person.heard_of:
                person.heard_of[item] = speaker
                self.log.emit(K.HEARD, now, person.user_id, session=person.session,
                              item_id=int(self.catalog.ids[item]), other_id=self.states[speaker].user_id, text="chat")

    def _post(self, st: UserState) -> Iterator:
        yield self._wait(self.think)
        draft = self.brains[st.index].write_post(st, self.env.now)
        if isinstance(draft, Think):
            draft = yield from self._think(draft)
        if draft is None:
            return
        self._post_id += 1
        post = Post(self._post_id, self._post_id, st.index, draft.item, draft.text, 0, self.env.now)
        self._publish(st, post)

    def _publish(self, st: UserState, post: Post, parent: UserState | None = None) -> None:
        """Send a post (or a re-post of ``parent``'s post) to ``st``'s followers' inboxes."""
        followers = self.graph.followers[st.index]
        self._emit(K.POST, st, post_id=post.post_id, root_id=post.root_id, item_id=int(self.catalog.ids[post.item]),
                   value=float(post.hop), other_id=None if parent is None else parent.user_id, text=post.text)
        st.remember(self.env.now, f"posted about {self.catalog.titles[post.item]}")
        if self._lanes is not None:      # synchronous windows: followers get it at the barrier
            self._defer(self.env.now, self._deliver, post, followers)
            return
        self._deliver(post, followers)

    def _deliver(self, post: Post, followers: np.ndarray) -> None:
        for f in followers.tolist():
            self.states[f].inbox.append(post)

    def _read_inbox(self, st: UserState) -> Iterator:
        if not st.inbox:
            return
        posts = list(st.inbox)
        st.inbox.clear()
        yield self._wait(READ_MINUTES * len(posts))
        reposted: set = st.extra.setdefault("reposted", set())
        for post in posts:
            author = self.states[post.author]
            item_id = int(self.catalog.ids[post.item])
            self._emit(K.READ_POST, st, post_id=post.post_id, root_id=post.root_id, other_id=author.user_id,
                       item_id=item_id)
            reaction = self.brains[st.index].read_post(st, post, self.env.now)
            if isinstance(reaction, Think):
                reaction = yield from self._think(reaction)
            st.remember(self.env.now, f"read user {author.user_id}'s post about {self.catalog.titles[post.item]}: "
                                      f"{post.text[:120]}")
            if reaction.interested and post.item not in st.seen and post.item not in st.heard_of:
                st.heard_of[post.item] = post.author
                self._emit(K.HEARD, st, item_id=item_id, other_id=author.user_id, text="post")
            if reaction.repost and post.root_id not in reposted and post.author != st.index:
                reposted.add(post.root_id)
                self._post_id += 1
                self._publish(st, Post(self._post_id, post.root_id, st.index, post.item, post.text,
                                       post.hop + 1, self.env.now), parent=author)


class _Lane:
    """A user's own clock in a synchronous window."""

    __slots__ = ("index", "env", "blocked", "round")

    def __init__(self, index: int, env: simpy.Environment):
        self.index, self.env, self.blocked, self.round = index, env, False, 0


class _WindowLog:
    """Holds a window's events and writes them to the run's log in time order at the barrier
    (lanes run one after another, each on its own clock)."""

    def __init__(self, log):
        self.log = log
        self.events: list = []

    def emit(self, kind: K, time: float, user_id: int, **fields) -> None:
        self.events.append((time, len(self.events), kind, user_id, fields))

    def write(self) -> None:
        events, self.events = self.events, []
        events.sort(key=lambda e: (e[0], e[1]))
        emit = self.log.emit
        for time, _, kind, user_id, fields in events:
            emit(kind, time, user_id, **fields)

    def __getattr__(self, name):            # count, counts, flush_if_due, close ... of the run's log
        return getattr(self.log, name)
