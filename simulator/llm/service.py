"""The LLM service: one per world, in front of any litellm provider.

- Our own concurrency limit (an asyncio semaphore: litellm's ``max_parallel_requests``
  rejects instead of queueing), retries with jittered exponential backoff on 429, 5xx,
  timeouts and dropped connections, and a per-call timeout.
- A response cache in SQLite keyed on (model, messages, parameters, seed), written
  synchronously, so a rerun of the same scenario makes no calls and sees the same answers.
- Structured answers: with a pydantic ``schema`` the server is asked for JSON matching it
  (``response_format``); an answer that does not validate gets one repair try, then the
  result says ``fallback=True`` and the caller decides for itself (e.g. the parametric brain).
- Scores instead of text: a request with ``logprobs=k`` asks for one token and the ``k`` most
  likely first tokens with their log-probabilities (``top_logprobs``), which the caller turns
  into a choice; a server that returns none gives ``fallback_reason="no_logprobs"``.
- Text scores: a request with ``score_text`` asks for the log-probability of each token of
  that text after a context (the messages' contents, as a plain prompt): llama.cpp's native
  ``/completion`` with ``n_probs`` and a grammar that forces exactly the text (the llguidance
  string grammar when ``constrain: llguidance``, else the text's token ids from ``/tokenize``);
  the per-token log-probabilities it returns are the model's own, before the grammar.  A
  server without those endpoints gives ``fallback_reason="no_logprobs"``.
- Requests marked ``shared`` that are identical (same cache key) and in flight at once get one
  answer: the later ones wait for the first, as for a cache hit.
- Accounting per call (tokens, latency, cost via ``litellm.completion_cost``, with prices
  given in the config for local models) and one JSON record per call in ``llm_calls.jsonl``.
- API keys are read from the environment variable the config names and never written:
  error texts, prompts and answers are scrubbed of the key before they are logged or returned.
- Only answers that validate (against the request's schema, if any) are cached; the cache
  runs in WAL mode with a busy timeout and retries, and a write that still fails is logged,
  never fatal.
- A circuit breaker: after ``breaker_failures`` consecutive failed calls, requests fall back
  at once for ``breaker_cooldown_s``, then one probe call is let through.  ``preflight()``
  makes one tiny call and raises ``LLMUnavailableError`` when the endpoint cannot answer.

The settings are ``LLMSettings`` (``settings.py``), the same model as a scenario's ``llm:``.

litellm is imported on first use (it takes seconds to import).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ValidationError

from recworld.simulator.llm.settings import LLMSettings

log = logging.getLogger("recworld.llm")

#: fallback reason categories (``metrics()["fallback_reasons"]``)
REASONS = ("unreachable", "timeout", "rate_limited", "http_5xx", "http_4xx", "invalid_answer", "no_logprobs",
           "circuit_open", "error")


class LLMUnavailableError(RuntimeError):
    """The LLM endpoint cannot answer (``LLMService.preflight``): unreachable, unknown model,
    malformed ``api_base``, or no answer within the preflight timeout."""


#: failures of a live endpoint that a retry may fix (the preflight lets them pass)
TRANSIENT = ("rate_limited", "http_5xx")


class CallFailed(RuntimeError):
    """A completion that gave no answer; ``reason`` is one of ``REASONS``."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class LLMResult:
    text: str | None
    parsed: Any = None                 # the validated pydantic object when a schema was given
    ok: bool = True                    # False: no usable answer (the caller falls back)
    fallback: bool = False
    cache_hit: bool = False
    calls: int = 0                     # network calls made for this request (retries and repair included)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    error: str | None = None
    fallback_reason: str | None = None  # one of REASONS when fallback
    #: with ``LLMRequest.logprobs``: per generated token, {token: log-probability} of its most likely candidates
    top_logprobs: list[dict[str, float]] | None = None
    #: with ``LLMRequest.score_text``: the text's tokens (their strings join to the text) and
    #: each one's log-probability under the model
    tokens: list[str] | None = None
    token_logprobs: list[float] | None = None


@dataclass
class Totals:
    calls: int = 0
    cache_hits: int = 0
    fallbacks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    errors: int = 0
    requests: int = 0                  # LLMRequests answered (from the network, the cache or a fallback)
    circuit_open: int = 0              # fallbacks because the circuit breaker was open
    fallback_reasons: dict = field(default_factory=dict)

    def add(self, r: LLMResult) -> None:
        self.requests += 1
        self.calls += r.calls
        self.cache_hits += int(r.cache_hit)
        self.fallbacks += int(r.fallback)
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens
        self.cost_usd += r.cost_usd
        self.errors += int(r.error is not None)
        if r.fallback:
            reason = r.fallback_reason or "error"
            self.fallback_reasons[reason] = self.fallback_reasons.get(reason, 0) + 1
            self.circuit_open += int(reason == "circuit_open")


@dataclass
class LLMRequest:
    messages: list[dict]
    schema: type[BaseModel] | None = None
    seed: int | None = None
    meta: dict = field(default_factory=dict)      # copied into llm_calls.jsonl (e.g. user, purpose)
    #: ask for one token and the log-probabilities of this many most likely first tokens (no schema)
    logprobs: int | None = None
    #: generate nothing: score this text, the log-probability of each of its tokens after the
    #: messages' contents (joined as a plain prompt, no chat template); needs a llama.cpp server
    score_text: str | None = None
    #: identical requests in flight at once share one answer (the later ones count as cache hits)
    shared: bool = False


def _locked(e: BaseException) -> bool:
    msg = str(e).lower()
    return isinstance(e, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg)


class ResponseCache:
    """SQLite: key -> (text, prompt_tokens, completion_tokens).  Every write is committed at once.

    Several processes may share one file: WAL mode (readers never wait for a writer), a busy
    timeout, and retries with backoff when the database stays locked longer.  A write that
    still fails is logged as a warning and dropped (``put`` returns False): a cache must never
    fail a run.  ``write_errors`` counts such writes.  Reads and writes use separate
    connections, so a write waiting for a lock does not hold up reads."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 10.0, attempts: int = 3, backoff_s: float = 0.1):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_s, self.attempts, self.backoff_s = busy_timeout_s, max(1, attempts), backoff_s
        self.write_errors = 0
        self._rng = random.Random()                        # backoff jitter only
        self._wlock, self._rlock = threading.Lock(), threading.Lock()
        self._wdb = self._rdb = None
        try:
            # autocommit mode: transactions are explicit (BEGIN IMMEDIATE takes the write lock up front)
            self._wdb = self._connect()
            self._retry(self._wdb, self._setup)
            self._rdb = self._connect()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self.busy_timeout_s, check_same_thread=False, isolation_level=None)

    def _setup(self) -> None:
        db = self._wdb
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.info("LLM cache %s: journal mode %s (WAL unavailable on this file system)", self.path, mode)
        db.execute("PRAGMA synchronous=NORMAL")            # in WAL mode: safe against a crashed process
        db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, text TEXT, "
                   "prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)")

    def _retry(self, db: sqlite3.Connection, fn):
        """``fn()``, tried again with jittered exponential backoff while the database is locked."""
        delay = self.backoff_s
        for attempt in range(self.attempts):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if not _locked(e) or attempt == self.attempts - 1:
                    raise
                time.sleep(delay * (0.5 + self._rng.random()))
                delay *= 2

    def get(self, key: str) -> tuple[str, int, int] | None:
        def read():
            return self._rdb.execute("SELECT text, prompt_tokens, completion_tokens FROM responses WHERE key=?",
                                     (key,)).fetchone()
        if self._rdb is None:                              # closed
            return None
        try:
            with self._rlock:
                row = self._retry(self._rdb, read)
        except sqlite3.Error as e:
            log.warning("LLM cache read failed (%s); asking the model instead", e)
            return None
        return None if row is None else (row[0], int(row[1]), int(row[2]))

    def put(self, key: str, text: str, prompt_tokens: int, completion_tokens: int) -> bool:
        def write():
            self._wdb.execute("BEGIN IMMEDIATE")
            self._wdb.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                              (key, text, prompt_tokens, completion_tokens, time.time()))
            self._wdb.execute("COMMIT")
        if self._wdb is None:                              # closed (a request finished after the run)
            return False
        try:
            with self._wlock:
                self._retry(self._wdb, write)
            return True
        except sqlite3.Error as e:
            self.write_errors += 1
            log.warning("LLM cache write failed after %d tries (%s); the answer is used but not cached",
                        self.attempts, e)
            return False

    def close(self) -> None:
        for lock, name in ((self._wlock, "_wdb"), (self._rlock, "_rdb")):
            with lock:
                db = getattr(self, name)
                if db is not None:
                    db.close()
                    setattr(self, name, None)


def cache_key(model: str, messages: list[dict], params: dict, seed: int | None) -> str:
    blob = json.dumps({"model": model, "messages": messages, "params": params, "seed": seed},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


RETRYABLE = ("RateLimitError", "Timeout", "APIConnectionError", "InternalServerError", "ServiceUnavailableError",
             "BadGatewayError", "APITimeoutError")


def _retryable(exc: BaseException) -> bool:
    return any(cls.__name__ in RETRYABLE for cls in type(exc).__mro__)


def _reason(exc: BaseException) -> str:
    """The fallback category of a failed call (see ``REASONS``)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    status = getattr(exc, "status_code", None)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or names & {"Timeout", "APITimeoutError"}:
        return "timeout"
    if "RateLimitError" in names or status == 429:
        return "rate_limited"
    if "APIConnectionError" in names or "connection error" in str(exc).lower():   # litellm wraps refused
        return "unreachable"                                                        # connections as a 500
    if isinstance(status, int) and 500 <= status < 600:
        return "http_5xx"
    if isinstance(status, int) and 400 <= status < 500:
        return "http_4xx"
    return "error"


class CircuitBreaker:
    """After ``failures`` consecutive failed calls (a call fails when it has no answer after its
    retries) the circuit opens: calls are refused for ``cooldown_s``; then one probe call is
    let through (the others are still refused).  An answer closes the circuit, a failed probe
    opens it for another cool-down."""

    def __init__(self, failures: int, cooldown_s: float, clock=time.monotonic):
        self.failures, self.cooldown_s, self.clock = failures, cooldown_s, clock
        self.consecutive = 0
        self.opened_at: float | None = None
        self.probing = False
        self.times_opened = 0
        self.last_error = ""
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def allow(self) -> tuple[bool, bool, str]:
        """(may call, is the probe, why not)."""
        with self._lock:
            if self.opened_at is None:
                return True, False, ""
            left = self.cooldown_s - (self.clock() - self.opened_at)
            if left <= 0 and not self.probing:
                self.probing = True
                return True, True, ""
            return False, False, self._status(left)

    def _status(self, left: float) -> str:
        wait = "a probe call is in flight" if self.probing else f"next probe in {max(left, 0):.1f}s"
        return f"{self.consecutive} consecutive failed calls ({wait}); last: {self.last_error[:200]}"

    def status(self) -> str:
        """Why calls are refused (while open)."""
        with self._lock:
            left = self.cooldown_s - (self.clock() - self.opened_at) if self.opened_at is not None else 0.0
            return self._status(left)

    def success(self) -> None:
        with self._lock:
            was_open = self.opened_at is not None
            self.consecutive, self.opened_at, self.probing = 0, None, False
        if was_open:
            log.warning("LLM circuit closed: the endpoint answers again")

    def failure(self, error: str) -> None:
        with self._lock:
            self.consecutive += 1
            self.last_error = error
            opening = self.probing or (self.opened_at is None and self.consecutive >= self.failures)
            if opening:
                self.opened_at, self.probing = self.clock(), False
                self.times_opened += 1
        if opening:
            log.warning("LLM circuit open after %d consecutive failed calls (last: %s); requests fall back "
                        "for %.0fs, then one probe call", self.consecutive, error[:200], self.cooldown_s)

    def release_probe(self) -> None:
        """The probe ended without a verdict (cancelled): let the next request probe."""
        with self._lock:
            self.probing = False


class BackgroundLoop:
    """An asyncio event loop on a daemon thread.  Synchronous code (the world, a recommender,
    a notebook cell, where a loop may already be running) hands it coroutines; litellm's
    logging worker lives on it for good instead of on a fresh loop per call."""

    def __init__(self, name: str = "recworld-llm"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro):
        """A ``concurrent.futures.Future`` of the coroutine's result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro):
        return self.submit(coro).result()

    def close(self) -> None:
        """Cancel what still runs on the loop (e.g. litellm's logging worker), then stop it."""
        loop = self.loop

        async def shutdown():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_asyncgens()
        try:
            self.submit(shutdown()).result(timeout=10)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        loop.close()


_SHARED: BackgroundLoop | None = None
_SHARED_LOCK = threading.Lock()


def shared_loop() -> BackgroundLoop:
    """The process's one background loop for LLM calls.  litellm keeps state per event loop
    (its logging worker); with one loop for every service, nothing is left pending on a
    loop another service abandoned.  It is stopped at interpreter exit."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            import atexit

            _SHARED = BackgroundLoop()
            atexit.register(_SHARED.close)
        return _SHARED


def as_settings(config: LLMSettings | BaseModel | dict | None) -> LLMSettings:
    """``config`` as ``LLMSettings`` (a dict or another pydantic model is validated into one)."""
    if isinstance(config, LLMSettings):
        return config
    if isinstance(config, BaseModel):
        config = config.model_dump()
    return LLMSettings.model_validate(config or {})


class LLMService:
    """The LLM service of a world.  ``config`` is an ``LLMSettings`` (or a dict validated into
    one); ``model: embedded`` starts the packaged local model on a loopback server that the
    service owns and stops on ``close()``.  ``self.settings`` is the configuration as given,
    ``self.config`` the resolved one the calls use (the server's model name and address,
    ``constrain: auto`` made concrete, a local model's zero prices)."""

    def __init__(self, config: LLMSettings | dict | None = None, log_path: str | Path | None = None,
                 jitter_seed: int = 0):
        self.settings = as_settings(config)
        s = self.settings
        self._key = os.environ.get(s.api_key_env) if s.api_key_env else None
        if s.api_key_env and not self._key:
            raise ValueError(f"llm.api_key_env names {s.api_key_env}, but that environment variable is not set")
        self.server = None                                 # an embedded server this service owns (stopped by close)
        self._in_flight = 0                                # calls sent and not yet answered (on the service's loop)
        self.cache: ResponseCache | None = None
        self._cache_write_errors = 0                       # of caches already closed
        self._log_file = None
        self._price_unknown = False                        # litellm had no price for the model: cost 0 from then on
        try:
            self.config = self._resolve(s)
            if s.cache:
                self.cache = ResponseCache(s.cache_path or Path.home() / ".cache" / "recworld" / "llm_cache.sqlite")
            self._log_file = open(log_path, "a", encoding="utf-8") if log_path else None
        except BaseException:
            self.close()
            raise
        self.totals = Totals()
        self.breaker = CircuitBreaker(s.breaker_failures, s.breaker_cooldown_s)
        self._jitter = random.Random(jitter_seed)          # timing only; never touches results
        self._record_lock = threading.Lock()               # batches may finish on a background loop
        self._litellm = None
        self._router = None                                # litellm's Router when api_base lists several servers
        self._endpoint_calls: dict[str, int] = {}          # answers per server (api_base as a list)
        self._shared: dict[tuple, asyncio.Future] = {}    # shared requests in flight, by (loop, cache key)

    def _resolve(self, s: LLMSettings) -> LLMSettings:
        """The settings the calls use: ``model: embedded`` (starting its server) and
        ``constrain: auto`` resolved.  Same values as a scenario always resolved to, so the
        same scenario keeps its cache keys."""
        update: dict[str, Any] = {}
        if s.model == "embedded":
            from recworld.simulator.llm.embedded import EmbeddedLLM

            self.server = EmbeddedLLM(s.embedded_model, parallel=s.server_slots, threads=s.server_threads).start()
            update["model"], update["api_base"] = self.server.model, self.server.api_base
            if s.constrain == "auto":
                update["constrain"] = "llguidance"
            for k in ("input_cost_per_token", "output_cost_per_token"):      # a local model costs nothing
                if getattr(s, k) is None:
                    update[k] = 0.0
        elif s.constrain == "auto":
            update["constrain"] = "json_schema"
        return s.model_copy(update=update)

    # ------------------------------------------------------------------ plumbing

    def _lib(self):
        if self._litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")    # no network for the price list
            import litellm

            litellm.suppress_debug_info = True
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):    # its per-call INFO lines drown ours
                logging.getLogger(name).setLevel(logging.WARNING)
            self._litellm = litellm
        return self._litellm

    @property
    def endpoints(self) -> list[str]:
        """The servers the calls are spread over (``llm.api_base`` as a list), else []."""
        return list(self.config.api_base) if isinstance(self.config.api_base, list) else []

    def _routed(self):
        """litellm's Router over the ``api_base`` list: one deployment per server, the same model;
        it picks a server per call and rests one that keeps failing.  Retries stay ours."""
        if self._router is None:
            self._lib()
            from litellm import Router

            cfg = self.config
            self._router = Router(model_list=[{"model_name": "recworld", "litellm_params": {
                "model": cfg.model, "api_base": url, "api_key": self._key or "none"}} for url in self.endpoints],
                routing_strategy="simple-shuffle", num_retries=0)
        return self._router

    def scrub(self, text: str) -> str:
        """Remove the API key from a text (error messages can echo request headers)."""
        return text.replace(self._key, "***") if self._key else text

    def _scrub_all(self, obj):
        """``scrub`` on every string inside lists and dicts."""
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, dict):
            return {k: self._scrub_all(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self._scrub_all(v) for v in obj]
        return obj

    def _params(self, schema: type[BaseModel] | None, logprobs: int | None = None) -> dict:
        cfg = self.config
        if logprobs is not None:        # a score request: one token, its candidates' log-probabilities
            if schema is not None:
                raise ValueError("a request asks either for log-probabilities or for a schema, not both")
            return {"temperature": 0.0, "max_tokens": 1, "logprobs": True, "top_logprobs": int(logprobs)}
        p: dict[str, Any] = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
        if schema is None or cfg.constrain == "none":
            return p
        if cfg.constrain == "json_schema":
            p["response_format"] = {"type": "json_schema",
                                    "json_schema": {"name": schema.__name__, "schema": closed_schema(schema),
                                                    "strict": True}}
        else:
            p["extra_body"] = {"grammar": compact_grammar(schema)}
        return p

    def _cost(self, response) -> float:
        cfg = self.config
        if not (cfg.input_cost_per_token or cfg.output_cost_per_token) and (
                cfg.input_cost_per_token is not None or cfg.output_cost_per_token is not None
                or self._price_unknown):
            return 0.0              # a free model, or one litellm has no price for: no lookup per call
        try:
            if cfg.input_cost_per_token is not None or cfg.output_cost_per_token is not None:
                return float(self._lib().completion_cost(
                    completion_response=response,
                    custom_cost_per_token={"input_cost_per_token": cfg.input_cost_per_token or 0.0,
                                           "output_cost_per_token": cfg.output_cost_per_token or 0.0}))
            return float(self._lib().completion_cost(completion_response=response))
        except Exception:  # noqa: BLE001 - unknown price: count tokens, cost 0
            self._price_unknown = True
            return 0.0

    def _record(self, req: LLMRequest, key: str, r: LLMResult, invalid_answer: str | None = None) -> None:
        with self._record_lock:
            self.totals.add(r)
            if self._log_file is None:
                return
            rec = {"time": time.time(), "prompt_hash": key[:16], "model": self.config.model, **req.meta,
                   **{k: v for k, v in asdict(r).items()
                      if k not in ("text", "parsed", "top_logprobs", "tokens", "token_logprobs")}}
            if req.logprobs is not None:
                rec["logprobs"] = req.logprobs
            if req.score_text is not None:
                rec["score_chars"] = len(req.score_text)
            if self.config.audit:                          # the prompt and the answer, key scrubbed
                rec["messages"] = req.messages
                rec["answer"] = r.text
                if r.top_logprobs is not None:
                    rec["top_logprobs"] = r.top_logprobs
                if r.token_logprobs is not None:
                    rec["tokens"], rec["token_logprobs"] = r.tokens, r.token_logprobs
                if req.schema is not None:
                    rec["parsed"] = r.parsed.model_dump(mode="json") if r.parsed is not None else None
                if invalid_answer is not None:             # the first answer, which needed a repair try
                    rec["invalid_answer"] = invalid_answer
            line = self.scrub(json.dumps(self._scrub_all(rec), ensure_ascii=False, default=str))
            self._log_file.write(line + "\n")
            self._log_file.flush()

    # ------------------------------------------------------------------ calls

    async def _call(self, messages: list[dict], params: dict, seed: int | None, r: LLMResult, *,
                    retries: int | None = None, timeout_s: float | None = None, breaker: bool = True,
                    extra: dict | None = None, endpoint: str | None = None):
        """One completion with retries; returns (text, prompt_tokens, completion_tokens, top
        log-probabilities per token or None) or raises ``CallFailed``.  With ``breaker``, the call goes through the circuit breaker: it is
        refused while the circuit is open, and its outcome (after its retries) is counted.
        With several servers (``api_base`` a list), the Router picks one per attempt, unless
        ``endpoint`` names one."""
        cfg, lib = self.config, self._lib()
        local = self.server is not None
        if timeout_s is None and local:
            # the embedded server decodes server_slots requests at once and queues the rest: a
            # request's time budget covers the queue ahead of it, not only its own decoding
            timeout = cfg.timeout_s * max(1, -(-(self._in_flight + 1) // max(1, self.server.parallel)))
        else:
            timeout = cfg.timeout_s if timeout_s is None else timeout_s
        retries = cfg.retries if retries is None else retries
        kwargs = dict(model=cfg.model, messages=messages, timeout=timeout, num_retries=0, **params, **(extra or {}))
        routed = bool(self.endpoints) and endpoint is None
        if endpoint or (cfg.api_base and not routed):
            kwargs["api_base"] = endpoint or cfg.api_base
        kwargs["api_key"] = self._key or "none"            # OpenAI-compatible local servers want some key
        if routed:
            router = self._routed()
            for k in ("model", "api_key", "num_retries"):
                kwargs.pop(k, None)
            send = lambda: router.acompletion(model="recworld", **kwargs)  # noqa: E731
        else:
            send = lambda: lib.acompletion(**kwargs)  # noqa: E731
        if seed is not None:
            kwargs["seed"] = seed
        probe = False
        if breaker:
            ok, probe, why = self.breaker.allow()
            if not ok:
                raise CallFailed(f"circuit open: {why}", "circuit_open")
        settled = False
        try:
            delay = cfg.backoff_s
            for attempt in range(retries + 1):
                if attempt and breaker and not probe and self.breaker.is_open:   # opened meanwhile: stop
                    raise CallFailed(f"circuit open: {self.breaker.status()}", "circuit_open")
                r.calls += 1
                self._in_flight += 1
                try:
                    resp = await asyncio.wait_for(send(), timeout=timeout + 5)
                    content = resp.choices[0].message.content or ""
                    lps = _top_logprobs(resp.choices[0]) if params.get("logprobs") else None
                except Exception as e:  # noqa: BLE001 - classified below
                    msg = self.scrub(f"{type(e).__name__}: {e}")[:500]
                    retry = _retryable(e) or isinstance(e, asyncio.TimeoutError)
                    if local and _reason(e) == "timeout":
                        retry = False        # sending it again to a busy local server only lengthens its queue
                    if not retry or attempt == retries:
                        if breaker:
                            self.breaker.failure(msg)
                        settled = True
                        raise CallFailed(msg, _reason(e)) from None
                    log.info("LLM call failed (%s); retry %d/%d in %.2fs", msg[:120], attempt + 1, retries, delay)
                    await asyncio.sleep(delay * (0.5 + self._jitter.random()))
                    delay *= 2
                    continue
                finally:
                    self._in_flight -= 1
                if breaker:
                    self.breaker.success()
                settled = True
                if routed:
                    url = str((getattr(resp, "_hidden_params", None) or {}).get("api_base") or "unknown")
                    self._endpoint_calls[url] = self._endpoint_calls.get(url, 0) + 1
                usage = getattr(resp, "usage", None)
                pt = int(getattr(usage, "prompt_tokens", 0) or 0)
                ct = int(getattr(usage, "completion_tokens", 0) or 0)
                r.cost_usd += self._cost(resp)
                return content, pt, ct, lps
        finally:
            if probe and not settled:                      # cancelled, or stopped without a verdict
                self.breaker.release_probe()

    async def _answer(self, messages: list[dict], params: dict, seed: int | None, r: LLMResult,
                      schema: type[BaseModel] | None):
        """(text, parsed, problem): from the cache or the model.  Only an answer that validates
        against ``schema`` (any answer when there is none) is cached, so a malformed answer is
        asked for again on the next run.  A score request (``logprobs`` in ``params``) needs
        log-probabilities: they are cached with the text and set on ``r.top_logprobs``."""
        key = cache_key(self.config.model, messages, params, seed)
        cache = self.cache
        scores = bool(params.get("logprobs"))
        if cache is not None:
            hit = cache.get(key)
            if hit is not None:
                text, lps = _unpack_scores(hit[0]) if scores else (hit[0], None)
                parsed, problem = _check(schema, text)
                if problem is None and (lps or not scores):
                    r.prompt_tokens += hit[1]
                    r.completion_tokens += hit[2]
                    r.top_logprobs = lps
                    return text, parsed, None
                # an invalid answer cached by an older version: ask again (and overwrite it)
        text, pt, ct, lps = await self._call(messages, params, seed, r)
        r.prompt_tokens += pt
        r.completion_tokens += ct
        parsed, problem = _check(schema, text)
        if scores:
            r.top_logprobs = lps
            if not lps:
                raise CallFailed(f"the server answered without log-probabilities (model {self.config.model!r} at "
                                 f"{self.config.api_base or 'the provider default endpoint'}): use a server that "
                                 "returns logprobs (llama.cpp, vLLM, OpenAI) or the brain's decision: json",
                                 "no_logprobs")
        if cache is not None and problem is None:
            # committed before the answer is returned; in a worker thread, so that a locked
            # database holds up this request only, not every request on the event loop
            stored = json.dumps({"text": text, "top_logprobs": lps}, ensure_ascii=False) if scores else text
            await asyncio.to_thread(cache.put, key, stored, pt, ct)
        return text, parsed, problem

    async def acomplete(self, req: LLMRequest, semaphore: asyncio.Semaphore | None = None) -> LLMResult:
        if req.shared:
            return await self._acomplete_shared(req, semaphore)
        return await self._acomplete(req, semaphore)

    def _request_key(self, req: LLMRequest) -> str:
        if req.score_text is not None:
            return cache_key(self.config.model, req.messages, _score_params(req.score_text), None)
        return cache_key(self.config.model, req.messages, self._params(req.schema, req.logprobs), req.seed)

    async def _acomplete_shared(self, req: LLMRequest, semaphore: asyncio.Semaphore | None) -> LLMResult:
        """``acomplete``, but an identical shared request already in flight answers this one too
        (no call of its own: counted and logged as a cache hit)."""
        slot = (id(asyncio.get_running_loop()), self._request_key(req))
        first = self._shared.get(slot)
        if first is None:
            fut = asyncio.get_running_loop().create_future()
            self._shared[slot] = fut
            try:
                r = await self._acomplete(req, semaphore)
                fut.set_result(r)
                return r
            except asyncio.CancelledError:
                fut.cancel()                                     # the waiters ask for themselves
                raise
            except BaseException as e:
                fut.set_exception(e)
                fut.exception()                                  # retrieved: no "never retrieved" warning
                raise
            finally:
                self._shared.pop(slot, None)
        t0 = time.perf_counter()
        try:
            got = await asyncio.shield(first)
        except asyncio.CancelledError:
            if not first.cancelled():                            # this request was cancelled
                raise
            return await self._acomplete_shared(req, semaphore)  # the first was: ask again
        r = LLMResult(text=got.text, parsed=got.parsed, ok=got.ok, fallback=got.fallback, cache_hit=got.ok,
                      prompt_tokens=got.prompt_tokens, completion_tokens=got.completion_tokens, error=got.error,
                      fallback_reason=got.fallback_reason, top_logprobs=got.top_logprobs, tokens=got.tokens,
                      token_logprobs=got.token_logprobs, latency_s=time.perf_counter() - t0)
        self._record(req, slot[1], r)
        return r

    async def _acomplete(self, req: LLMRequest, semaphore: asyncio.Semaphore | None = None) -> LLMResult:
        if req.score_text is not None:
            return await self._ascore(req, semaphore)
        params = self._params(req.schema, req.logprobs)
        r = LLMResult(text=None)
        key = cache_key(self.config.model, req.messages, params, req.seed)
        t0 = time.perf_counter()
        sem = semaphore or asyncio.Semaphore(self.config.max_concurrency)
        invalid = None
        try:
            async with sem:
                r.text, r.parsed, problem = await self._answer(req.messages, params, req.seed, r, req.schema)
                if problem is not None:                             # one repair try
                    invalid = r.text
                    repair = req.messages + [
                        {"role": "assistant", "content": r.text},
                        {"role": "user", "content": f"That answer is not valid: {problem}. Reply again with "
                                                    "only a JSON object that matches the schema."}]
                    r.text, r.parsed, problem = await self._answer(repair, params, req.seed, r, req.schema)
                    if problem is not None:
                        r.ok, r.fallback, r.error = False, True, f"invalid answer after repair: {problem}"
                        r.fallback_reason = "invalid_answer"
        except CallFailed as e:
            r.ok, r.fallback, r.error, r.fallback_reason = False, True, str(e), e.reason
        r.cache_hit = r.calls == 0 and not r.fallback          # every answer came from the cache
        r.latency_s = time.perf_counter() - t0
        if r.fallback:
            (log.debug if r.fallback_reason == "circuit_open" else log.warning)(
                "LLM answer unusable, falling back: %s", (r.error or "")[:200])
        self._record(req, key, r, invalid)
        return r

    # ------------------------------------------------------------------ text scores

    async def _ascore(self, req: LLMRequest, semaphore: asyncio.Semaphore | None) -> LLMResult:
        """A ``score_text`` request: the text's tokens and their log-probabilities, from the
        cache or the server (``_score_call``); cached only when the forced tokens spell the text."""
        text = req.score_text or ""
        key = cache_key(self.config.model, req.messages, _score_params(text), None)
        r = LLMResult(text=text)
        t0 = time.perf_counter()
        sem = semaphore or asyncio.Semaphore(self.config.max_concurrency)
        try:
            async with sem:
                hit = self.cache.get(key) if self.cache is not None else None
                got = _unpack_token_scores(hit[0]) if hit is not None else None
                if got is not None and "".join(got[0]) == text:
                    r.prompt_tokens += hit[1]
                    r.completion_tokens += hit[2]
                    r.tokens, r.token_logprobs = got
                else:
                    tokens, lps, pt, ct = await self._score_call(req.messages, text, r)
                    r.prompt_tokens += pt
                    r.completion_tokens += ct
                    r.tokens, r.token_logprobs = tokens, lps
                    if self.cache is not None:
                        stored = json.dumps({"tokens": tokens, "token_logprobs": lps}, ensure_ascii=False)
                        await asyncio.to_thread(self.cache.put, key, stored, pt, ct)
        except CallFailed as e:
            r.ok, r.fallback, r.error, r.fallback_reason = False, True, str(e), e.reason
        r.cache_hit = r.calls == 0 and not r.fallback
        r.latency_s = time.perf_counter() - t0
        if r.fallback:
            log.warning("LLM text score unusable: %s", (r.error or "")[:300])
        self._record(req, key, r)
        return r

    async def _score_call(self, messages: list[dict], text: str, r: LLMResult):
        """(tokens, log-probabilities, prompt tokens, scored tokens) of ``text`` after the
        messages' contents, from llama.cpp's ``/completion``: ``n_probs`` with a grammar that
        forces the text, so each returned log-probability is the model's for a token of it."""
        cfg = self.config
        if not text:
            return [], [], 0, 0
        bases = self.endpoints or ([cfg.api_base] if isinstance(cfg.api_base, str) and cfg.api_base else [])
        where = f"model {cfg.model!r} at {', '.join(bases) or 'the provider default endpoint'}"
        if not bases:
            raise CallFailed(f"scoring a text needs llama.cpp's /completion endpoint, and {where} has no api_base: "
                             "use llm.model: embedded or a llama.cpp server (llama-server)", "no_logprobs")
        base = bases[int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % len(bases)]
        root = native_root(base)
        prompt = "".join(str(m.get("content") or "") for m in messages)
        raw = text.encode()
        if cfg.constrain == "llguidance":             # one request: llguidance forces the string itself
            grammar = "%llguidance {}\nstart: " + json.dumps(text, ensure_ascii=False)
            n_predict = len(raw) + 1
        else:                                         # its token ids, forced one by one by a GBNF grammar
            tok = await self._native(root, "/tokenize", {"content": text, "with_pieces": False}, r, where)
            if not isinstance(tok.get("tokens"), list):
                raise CallFailed(f"{where}: /tokenize answered without tokens: not a llama.cpp server, so it cannot "
                                 "score a text; use llm.model: embedded or a llama.cpp server", "no_logprobs")
            ids = [int(t["id"] if isinstance(t, dict) else t) for t in tok["tokens"]]
            if not ids:
                raise CallFailed(f"{where}: /tokenize gave no tokens for a text of {len(text)} characters",
                                 "invalid_answer")
            grammar = "root ::= " + " ".join(f"<[{i}]>" for i in ids)
            n_predict = len(ids) + 1
        body = {"prompt": prompt, "n_predict": n_predict, "n_probs": 1, "grammar": grammar, "temperature": 0.0,
                "cache_prompt": True}
        resp = await self._native(root, "/completion", body, r, where)
        probs = resp.get("completion_probabilities")
        if not probs:
            raise CallFailed(f"{where}: /completion answered without per-token probabilities (completion_probabilities)"
                             ": this server cannot score a text; use llm.model: embedded or a llama.cpp server",
                             "no_logprobs")
        tokens, lps, done = [], [], b""
        for p in probs:
            if len(done) >= len(raw):
                break                                 # the end-of-text token the grammar forces after the text
            b = bytes(p.get("bytes") or str(p.get("token", "")).encode())
            before = len(done.decode("utf-8", errors="ignore"))
            done += b
            tokens.append(done.decode("utf-8", errors="ignore")[before:])
            lps.append(float(p["logprob"]))
        if done != raw:
            raise CallFailed(f"{where}: the forced tokens do not spell the text (got {done[:80]!r}, wanted "
                             f"{raw[:80]!r}): the server ignored the grammar", "invalid_answer")
        tokens[-1] += text[len("".join(tokens)):]     # a last character completed by the last byte
        pt = int(resp.get("tokens_evaluated") or (resp.get("timings") or {}).get("prompt_n") or 0)
        return tokens, lps, pt, len(lps)

    async def _native(self, root: str, path: str, body: dict, r: LLMResult, where: str) -> dict:
        """POST ``body`` to a llama.cpp server's native ``path``, with the service's retries,
        timeouts and circuit breaker; the JSON answer, or ``CallFailed``."""
        import httpx

        cfg = self.config
        if self.server is not None:                   # the queue ahead on the embedded server, as in _call
            timeout = cfg.timeout_s * max(1, -(-(self._in_flight + 1) // max(1, self.server.parallel)))
        else:
            timeout = cfg.timeout_s
        ok, probe, why = self.breaker.allow()
        if not ok:
            raise CallFailed(f"circuit open: {why}", "circuit_open")
        settled = False
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        try:
            delay = cfg.backoff_s
            for attempt in range(cfg.retries + 1):
                r.calls += 1
                self._in_flight += 1
                try:
                    async with httpx.AsyncClient(timeout=timeout) as client:
                        resp = await client.post(root + path, json=body, headers=headers)
                    status = resp.status_code
                    if status in (404, 405, 501):
                        settled = True
                        self.breaker.success()         # the server answered: it lacks the endpoint
                        raise CallFailed(f"{where}: no llama.cpp {path} endpoint (HTTP {status} at {root}{path}): "
                                         "scoring a text needs a llama.cpp server (llm.model: embedded, or "
                                         "llama-server)", "no_logprobs")
                    if status >= 400:
                        reason = "rate_limited" if status == 429 else "http_5xx" if status >= 500 else "http_4xx"
                        raise _NativeError(f"HTTP {status} from {root}{path}: {self.scrub(resp.text)[:300]}", reason)
                    data = resp.json()
                except CallFailed:
                    raise
                except Exception as e:  # noqa: BLE001 - classified below
                    reason = e.reason if isinstance(e, _NativeError) else (
                        "timeout" if isinstance(e, httpx.TimeoutException) else
                        "unreachable" if isinstance(e, httpx.TransportError) else "error")
                    msg = self.scrub(f"{type(e).__name__}: {e}")[:500]
                    retry = reason in ("rate_limited", "http_5xx", "unreachable") or (
                        reason == "timeout" and self.server is None)
                    if not retry or attempt == cfg.retries:
                        self.breaker.failure(msg)
                        settled = True
                        raise CallFailed(f"{where}: {msg}", reason) from None
                    log.info("LLM score call failed (%s); retry %d/%d in %.2fs", msg[:120], attempt + 1,
                             cfg.retries, delay)
                    await asyncio.sleep(delay * (0.5 + self._jitter.random()))
                    delay *= 2
                    continue
                finally:
                    self._in_flight -= 1
                self.breaker.success()
                settled = True
                if self.endpoints:
                    self._endpoint_calls[root] = self._endpoint_calls.get(root, 0) + 1
                return data if isinstance(data, dict) else {}
        finally:
            if probe and not settled:
                self.breaker.release_probe()
        raise CallFailed(f"{where}: no answer", "error")          # not reached

    async def acomplete_many(self, requests: list[LLMRequest]) -> list[LLMResult]:
        """All requests concurrently (at most ``max_concurrency`` in flight); results in request order."""
        sem = asyncio.Semaphore(self.config.max_concurrency)
        return list(await asyncio.gather(*(self.acomplete(q, sem) for q in requests)))

    def background(self) -> BackgroundLoop:
        """The event loop this service's calls run on: synchronous calls and the world's
        batches alike (see ``shared_loop``)."""
        return shared_loop()

    def complete_many(self, requests: list[LLMRequest]) -> list[LLMResult]:
        """Synchronous: works from plain code and from inside a running event loop (a notebook)."""
        return self.background().run(self.acomplete_many(requests))

    def complete(self, messages: list[dict], schema: type[BaseModel] | None = None, seed: int | None = None,
                 **meta) -> LLMResult:
        return self.complete_many([LLMRequest(messages, schema, seed, meta)])[0]

    # ------------------------------------------------------------------ health

    async def apreflight(self, timeout_s: float = 10.0) -> None:
        """One tiny real completion (no cache, no retries, outside the circuit breaker and the
        totals); raises ``LLMUnavailableError`` naming the model, the endpoint and the error."""
        cfg = self.config
        if self.endpoints:                  # several servers: each is checked; one that answers is enough
            failed = []
            for url in self.endpoints:
                try:
                    await self._preflight_one(url, timeout_s)
                except LLMUnavailableError as e:
                    failed.append(str(e))
            if len(failed) == len(self.endpoints):
                raise LLMUnavailableError(self.scrub("LLM unavailable on every server: " + "; ".join(failed)))
            for f in failed:
                log.warning("LLM preflight: %s; the calls go to the other servers", f)
            return
        await self._preflight_one(cfg.api_base, timeout_s)

    async def _preflight_one(self, api_base: str | None, timeout_s: float) -> None:
        cfg = self.config
        where = f"model {cfg.model!r} at {api_base or 'the provider default endpoint'}"
        if api_base:
            url = urlparse(api_base)
            if url.scheme not in ("http", "https") or not url.netloc:
                raise LLMUnavailableError(self.scrub(
                    f"LLM unavailable: {where}: api_base is not an http(s) URL (e.g. http://localhost:8000/v1)"))
        r = LLMResult(text=None)
        try:
            await self._call([{"role": "user", "content": "Reply with OK."}], {"temperature": 0.0, "max_tokens": 4},
                             None, r, retries=0, timeout_s=timeout_s, breaker=False, extra={"max_retries": 0},
                             endpoint=api_base if self.endpoints else None)
        except CallFailed as e:
            if e.reason in TRANSIENT:       # the endpoint is there and knows the model, only busy right now
                log.warning("LLM preflight: %s answered %s (%s); going on, the run retries such errors",
                            where, e.reason, self.scrub(str(e))[:200])
                return
            raise LLMUnavailableError(self.scrub(f"LLM unavailable: {where}: {e} ({e.reason})")) from None

    def preflight(self, timeout_s: float = 10.0) -> None:
        """Check that the endpoint answers, within about ``timeout_s`` (see ``apreflight``)."""
        fut = self.background().submit(self.apreflight(timeout_s))
        try:
            return fut.result(timeout=timeout_s + 10)
        except TimeoutError:
            fut.cancel()
            raise LLMUnavailableError(self.scrub(
                f"LLM unavailable: model {self.config.model!r} at {self.config.api_base}: "
                f"no answer within {timeout_s:.0f}s")) from None

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.cache is not None:
            cache, self.cache = self.cache, None
            self._cache_write_errors += cache.write_errors
            cache.close()
        if self.server is not None:
            server, self.server = self.server, None
            server.stop()

    def metrics(self) -> dict:
        """Totals for ``metrics.json`` under ``llm``.  ``fallback_reasons`` maps each reason
        (``REASONS``) to its count; ``fallback_rate`` is fallbacks / requests."""
        t = self.totals
        return {"calls": t.calls, "cache_hits": t.cache_hits, "fallbacks": t.fallbacks,
                "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
                "cost_usd": round(t.cost_usd, 6), "errors": t.errors,
                "requests": t.requests, "fallback_rate": round(t.fallbacks / t.requests, 6) if t.requests else 0.0,
                "fallback_reasons": dict(sorted(t.fallback_reasons.items())), "circuit_open": t.circuit_open,
                "cache_write_errors": self._cache_write_errors + (self.cache.write_errors if self.cache else 0),
                **({"endpoints": {url: self._endpoint_calls.get(url, 0) for url in self.endpoints}
                    | {u: n for u, n in self._endpoint_calls.items() if u not in self.endpoints}}
                   if self.endpoints else {})}


def service_from_scenario(section, log_path: str | Path | None = None) -> LLMService:
    """The LLM service a scenario's ``llm`` section (an ``LLMSettings`` or a dict) asks for.
    ``model: embedded`` starts the packaged local model on a loopback server that the service
    owns and stops on ``close()``."""
    return LLMService(as_settings(section), log_path=log_path)


def _check(schema: type[BaseModel] | None, text: str | None):
    """(parsed, None) when ``text`` is a usable answer (any text without a schema), else (None, problem)."""
    return (None, None) if schema is None else _validate(schema, text)


def closed_schema(schema: type[BaseModel]) -> dict:
    """The model's JSON schema made strict: no extra keys anywhere, every key required (what
    OpenAI's strict mode demands; without it a small model invents keys until max_tokens)."""
    js = schema.model_json_schema()

    def close(node):
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node.get("properties", {}))
            for v in node.values():
                close(v)
        elif isinstance(node, list):
            for v in node:
                close(v)
    close(js)
    return js


def compact_grammar(schema: type[BaseModel]) -> str:
    """An llguidance grammar for one-line JSON matching ``schema`` (fixed separators, no free
    whitespace), in the form llama.cpp's server takes as ``grammar``."""
    js = closed_schema(schema)
    js["x-guidance"] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ",
                        "whitespace_pattern": ""}
    return "%llguidance {}\nstart: %json " + json.dumps(js, separators=(",", ":"))


def _validate(schema: type[BaseModel], text: str | None):
    """(parsed object, None) or (None, what is wrong)."""
    if not text:
        return None, "empty answer"
    raw = text.strip()
    if raw.startswith("```"):                      # tolerate a fenced block
        raw = raw.strip("`")
        raw = raw[raw.find("{"):] if "{" in raw else raw
    start, end = raw.find("{"), raw.rfind("}")
    if start == -1 or end < start:
        return None, "no JSON object in the answer"
    try:
        return schema.model_validate_json(raw[start:end + 1]), None
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'answer'}: {x['msg']}" for x in e.errors()[:5])
        return None, errs


class _NativeError(RuntimeError):
    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def native_root(api_base: str) -> str:
    """A llama.cpp server's root URL from its OpenAI-compatible ``api_base`` (``.../v1``)."""
    root = api_base.rstrip("/")
    return root.removesuffix("/v1")


def _score_params(text: str) -> dict:
    """What a text score's cache key holds besides the model and the context."""
    return {"score_text": text, "method": "forced_tokens_v1"}


def _unpack_token_scores(stored: str) -> tuple[list[str], list[float]] | None:
    """A cached text score: (tokens, log-probabilities), or None if it is not one."""
    try:
        d = json.loads(stored)
        tokens, lps = [str(t) for t in d["tokens"]], [float(x) for x in d["token_logprobs"]]
    except (ValueError, TypeError, KeyError):
        return None
    return (tokens, lps) if len(tokens) == len(lps) else None


def _unpack_scores(stored: str) -> tuple[str | None, list[dict[str, float]] | None]:
    """A cached score answer: (text, top log-probabilities); (None, None) if it is not one."""
    try:
        d = json.loads(stored)
        return d["text"], d["top_logprobs"]
    except (ValueError, TypeError, KeyError):
        return None, None


def _top_logprobs(choice) -> list[dict[str, float]] | None:
    """{token: log-probability} of the candidates of each generated token, from an OpenAI-style
    choice (objects or dicts); None when the server sent no log-probabilities."""
    def get(obj, name):
        return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)

    content = get(get(choice, "logprobs") or {}, "content")
    if not content:
        return None
    out = []
    for tok in content:
        cands = {}
        for c in get(tok, "top_logprobs") or [{"token": get(tok, "token"), "logprob": get(tok, "logprob")}]:
            t, lp = get(c, "token"), get(c, "logprob")
            if t is not None and lp is not None:
                cands[str(t)] = max(float(lp), cands.get(str(t), float("-inf")))
        out.append(cands)
    return out if any(out) else None
