"""The LLM service: one per world, in front of any litellm provider.

- Our own concurrency limit (an asyncio semaphore: litellm's ``max_parallel_requests``
  rejects instead of queueing), retries with jittered exponential backoff on 429, 5xx,
  timeouts and dropped connections, and a per-call timeout.
- A response cache in SQLite keyed on (model, messages, parameters, seed), written
  synchronously, so a rerun of the same scenario makes no calls and sees the same answers.
- Structured answers: with a pydantic ``schema`` the server is asked for JSON matching it
  (``response_format``); an answer that does not validate gets one repair try, then the
  result says ``fallback=True`` and the caller decides for itself (e.g. the parametric brain).
- Accounting per call (tokens, latency, cost via ``litellm.completion_cost``, with prices
  given in the config for local models) and one JSON record per call in ``llm_calls.jsonl``.
- API keys are read from the environment variable the config names and never written:
  error texts are scrubbed of the key before they are logged or returned.

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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger("recworld.llm")


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field("openai/local", description="litellm model name, e.g. gpt-4o-mini or openai/NAME with api_base")
    api_base: str | None = Field(None, description="base URL of an OpenAI-compatible server")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(256, ge=1, le=32_768)
    timeout_s: float = Field(60.0, gt=0, le=3600, description="per call")
    max_concurrency: int = Field(8, ge=1, le=1024)
    retries: int = Field(3, ge=0, le=20, description="retries after the first try on 429/5xx/timeouts")
    backoff_s: float = Field(0.5, ge=0, le=60, description="first retry delay; doubles each retry, with jitter")
    cache: bool = True
    cache_path: str | None = Field(None, description="SQLite file (default: ~/.cache/recworld/llm_cache.sqlite)")
    constrain: Literal["json_schema", "llguidance", "none"] = Field("json_schema", description=(
        "how a schema constrains the answer: the OpenAI response_format, a compact llguidance grammar "
        "(llama.cpp servers; no free whitespace, which tiny models otherwise fill until max_tokens), or none"))
    input_cost_per_token: float | None = Field(None, ge=0, description="USD, for models litellm has no price for")
    output_cost_per_token: float | None = Field(None, ge=0)


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


@dataclass
class Totals:
    calls: int = 0
    cache_hits: int = 0
    fallbacks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    errors: int = 0

    def add(self, r: LLMResult) -> None:
        self.calls += r.calls
        self.cache_hits += int(r.cache_hit)
        self.fallbacks += int(r.fallback)
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens
        self.cost_usd += r.cost_usd
        self.errors += int(r.error is not None)


@dataclass
class LLMRequest:
    messages: list[dict]
    schema: type[BaseModel] | None = None
    seed: int | None = None
    meta: dict = field(default_factory=dict)      # copied into llm_calls.jsonl (e.g. user, purpose)


class ResponseCache:
    """SQLite: key -> (text, prompt_tokens, completion_tokens). Every write is committed at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, text TEXT, "
                         "prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)")
        self._db.commit()

    def get(self, key: str) -> tuple[str, int, int] | None:
        with self._lock:
            row = self._db.execute("SELECT text, prompt_tokens, completion_tokens FROM responses WHERE key=?",
                                   (key,)).fetchone()
        return None if row is None else (row[0], int(row[1]), int(row[2]))

    def put(self, key: str, text: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                             (key, text, prompt_tokens, completion_tokens, time.time()))
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def cache_key(model: str, messages: list[dict], params: dict, seed: int | None) -> str:
    blob = json.dumps({"model": model, "messages": messages, "params": params, "seed": seed},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


RETRYABLE = ("RateLimitError", "Timeout", "APIConnectionError", "InternalServerError", "ServiceUnavailableError",
             "BadGatewayError", "APITimeoutError")


def _retryable(exc: BaseException) -> bool:
    return any(cls.__name__ in RETRYABLE for cls in type(exc).__mro__)


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


class LLMService:
    def __init__(self, config: LLMConfig | dict | None = None, log_path: str | Path | None = None,
                 jitter_seed: int = 0):
        self.config = config if isinstance(config, LLMConfig) else LLMConfig.model_validate(config or {})
        cfg = self.config
        self._key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if cfg.api_key_env and not self._key:
            raise ValueError(f"llm.api_key_env names {cfg.api_key_env}, but that environment variable is not set")
        self.cache = (ResponseCache(cfg.cache_path or Path.home() / ".cache" / "recworld" / "llm_cache.sqlite")
                      if cfg.cache else None)
        self.totals = Totals()
        self._log_file = open(log_path, "a", encoding="utf-8") if log_path else None
        self._jitter = random.Random(jitter_seed)          # timing only; never touches results
        self._record_lock = threading.Lock()               # batches may finish on a background loop
        self._litellm = None
        self.server = None                                 # an embedded server this service owns (stopped by close)

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

    def scrub(self, text: str) -> str:
        """Remove the API key from a text (error messages can echo request headers)."""
        return text.replace(self._key, "***") if self._key else text

    def _params(self, schema: type[BaseModel] | None) -> dict:
        cfg = self.config
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
        try:
            if cfg.input_cost_per_token is not None or cfg.output_cost_per_token is not None:
                return float(self._lib().completion_cost(
                    completion_response=response,
                    custom_cost_per_token={"input_cost_per_token": cfg.input_cost_per_token or 0.0,
                                           "output_cost_per_token": cfg.output_cost_per_token or 0.0}))
            return float(self._lib().completion_cost(completion_response=response))
        except Exception:  # noqa: BLE001 - unknown price: count tokens, cost 0
            return 0.0

    def _record(self, req: LLMRequest, key: str, r: LLMResult) -> None:
        with self._record_lock:
            self.totals.add(r)
            if self._log_file is None:
                return
            rec = {"time": time.time(), "prompt_hash": key[:16], "model": self.config.model, **req.meta,
                   **{k: v for k, v in asdict(r).items() if k not in ("text", "parsed")}}
            self._log_file.write(json.dumps(rec) + "\n")
            self._log_file.flush()

    # ------------------------------------------------------------------ calls

    async def _call(self, messages: list[dict], params: dict, seed: int | None, r: LLMResult):
        """One completion with retries; returns (text, prompt_tokens, completion_tokens)."""
        cfg, lib = self.config, self._lib()
        kwargs = dict(model=cfg.model, messages=messages, timeout=cfg.timeout_s, num_retries=0, **params)
        if cfg.api_base:
            kwargs["api_base"] = cfg.api_base
        kwargs["api_key"] = self._key or "none"            # OpenAI-compatible local servers want some key
        if seed is not None:
            kwargs["seed"] = seed
        delay = cfg.backoff_s
        for attempt in range(cfg.retries + 1):
            r.calls += 1
            try:
                resp = await asyncio.wait_for(lib.acompletion(**kwargs), timeout=cfg.timeout_s + 5)
                usage = getattr(resp, "usage", None)
                pt = int(getattr(usage, "prompt_tokens", 0) or 0)
                ct = int(getattr(usage, "completion_tokens", 0) or 0)
                r.cost_usd += self._cost(resp)
                return resp.choices[0].message.content or "", pt, ct
            except Exception as e:  # noqa: BLE001 - classified below
                retry = _retryable(e) or isinstance(e, asyncio.TimeoutError)
                msg = self.scrub(f"{type(e).__name__}: {e}")[:500]
                if not retry or attempt == cfg.retries:
                    raise RuntimeError(msg) from None
                log.info("LLM call failed (%s); retry %d/%d in %.2fs", msg[:120], attempt + 1, cfg.retries, delay)
                await asyncio.sleep(delay * (0.5 + self._jitter.random()))
                delay *= 2

    async def _answer(self, messages: list[dict], params: dict, seed: int | None, r: LLMResult) -> str:
        key = cache_key(self.config.model, messages, params, seed)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                r.prompt_tokens += hit[1]
                r.completion_tokens += hit[2]
                return hit[0]
        text, pt, ct = await self._call(messages, params, seed, r)
        r.prompt_tokens += pt
        r.completion_tokens += ct
        if self.cache is not None:
            self.cache.put(key, text, pt, ct)
        return text

    async def acomplete(self, req: LLMRequest, semaphore: asyncio.Semaphore | None = None) -> LLMResult:
        params = self._params(req.schema)
        r = LLMResult(text=None)
        key = cache_key(self.config.model, req.messages, params, req.seed)
        t0 = time.perf_counter()
        sem = semaphore or asyncio.Semaphore(self.config.max_concurrency)
        try:
            async with sem:
                r.text = await self._answer(req.messages, params, req.seed, r)
                if req.schema is not None:
                    r.parsed, problem = _validate(req.schema, r.text)
                    if problem is not None:                         # one repair try
                        repair = req.messages + [
                            {"role": "assistant", "content": r.text},
                            {"role": "user", "content": f"That answer is not valid: {problem}. Reply again with "
                                                        "only a JSON object that matches the schema."}]
                        r.text = await self._answer(repair, params, req.seed, r)
                        r.parsed, problem = _validate(req.schema, r.text)
                        if problem is not None:
                            r.ok, r.fallback, r.error = False, True, f"invalid answer after repair: {problem}"
        except RuntimeError as e:
            r.ok, r.fallback, r.error = False, True, str(e)
        r.cache_hit = r.calls == 0               # every answer came from the cache
        r.latency_s = time.perf_counter() - t0
        if r.fallback:
            log.warning("LLM answer unusable, falling back: %s", (r.error or "")[:200])
        self._record(req, key, r)
        return r

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

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.cache is not None:
            self.cache.close()
            self.cache = None
        if self.server is not None:
            server, self.server = self.server, None
            server.stop()

    def metrics(self) -> dict:
        """Totals for ``metrics.json`` under ``llm``."""
        t = self.totals
        return {"calls": t.calls, "cache_hits": t.cache_hits, "fallbacks": t.fallbacks,
                "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
                "cost_usd": round(t.cost_usd, 6), "errors": t.errors}


SERVER_KEYS = ("embedded_model", "server_slots", "server_threads")


def service_from_scenario(section, log_path: str | Path | None = None) -> LLMService:
    """The LLM service a scenario's ``llm`` section asks for.  ``model: embedded`` starts the
    packaged local model on a loopback server that the service owns and stops on ``close()``."""
    raw = section.model_dump() if hasattr(section, "model_dump") else dict(section)
    cfg = {k: v for k, v in raw.items() if k not in SERVER_KEYS}
    server = None
    if cfg["model"] == "embedded":
        from recworld.simulator.llm.embedded import EmbeddedLLM

        server = EmbeddedLLM(raw.get("embedded_model", "gemma-3-270m"), parallel=raw.get("server_slots", 4),
                             threads=raw.get("server_threads", 2)).start()
        cfg["model"], cfg["api_base"] = server.model, server.api_base
        if cfg.get("constrain", "auto") == "auto":
            cfg["constrain"] = "llguidance"
        for k in ("input_cost_per_token", "output_cost_per_token"):      # a local model costs nothing
            if cfg.get(k) is None:
                cfg[k] = 0.0
    elif cfg.get("constrain", "auto") == "auto":
        cfg["constrain"] = "json_schema"
    try:
        service = LLMService(cfg, log_path=log_path)
    except Exception:
        if server is not None:
            server.stop()
        raise
    service.server = server
    return service


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
