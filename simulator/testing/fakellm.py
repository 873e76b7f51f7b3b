"""A scriptable OpenAI-compatible chat server on loopback, for tests and benchmarks.

It speaks real HTTP (``POST /v1/chat/completions``), so everything above it, litellm
included, runs for real.  A ``responder(body, n)`` decides each answer: content, status
code, delay, or a malformed body; ``max_in_flight`` makes it a server of limited capacity.
A reply with ``top_logprobs`` answers a request that asks for ``logprobs`` the way an
OpenAI-compatible server does (``choices[0].logprobs.content``); a request without it gets none.

    with FakeLLMServer(lambda body, n: Reply(content='{"ok": true}')) as srv:
        LLMService({"model": "openai/fake", "api_base": srv.url, "cache": False}).complete(...)
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Reply:
    content: str = "{}"
    status: int = 200
    delay: float = 0.0                 # seconds before answering
    raw: str | None = None             # send this body verbatim (e.g. broken JSON)
    error_message: str = "fake error"
    prompt_tokens: int = 10
    completion_tokens: int = 5
    #: per generated token, {candidate token: log-probability}, most likely first; sent only when
    #: the request asks for logprobs (at most its ``top_logprobs`` candidates)
    top_logprobs: list[dict[str, float]] | None = None


def logprob_content(top: list[dict[str, float]], k: int | None) -> list[dict]:
    """The OpenAI ``logprobs.content`` list for ``top`` (each token's ``k`` best candidates)."""
    out = []
    for cands in top:
        ranked = sorted(cands.items(), key=lambda kv: -kv[1])[:k if k else None]
        best = ranked[0] if ranked else ("", 0.0)
        out.append({"token": best[0], "logprob": best[1], "bytes": list(best[0].encode()),
                    "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in ranked]})
    return out


def _default(body: dict, n: int) -> Reply:
    return Reply(content='{"answer": "ok"}')


class FakeLLMServer:
    def __init__(self, responder: Callable[[dict, int], Reply] | None = None, max_in_flight: int | None = None,
                 host: str = "127.0.0.1"):
        self.responder = responder or _default
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_seen_in_flight = 0
        self.stopped = False               # after stop(): kept-alive connections are dropped too
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_in_flight) if max_in_flight else None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if server.stopped:           # a dead server answers nothing, also on an open connection
                    self.close_connection = True
                    return
                if server._slots:
                    server._slots.acquire()
                try:
                    with server._lock:
                        n = len(server.requests)
                        server.requests.append(body)
                        server.in_flight += 1
                        server.max_seen_in_flight = max(server.max_seen_in_flight, server.in_flight)
                    reply = server.responder(body, n)
                    if reply.delay:
                        time.sleep(reply.delay)
                    if reply.raw is not None:
                        payload = reply.raw.encode()
                    elif reply.status != 200:
                        payload = json.dumps({"error": {"message": reply.error_message, "type": "fake",
                                                        "code": reply.status}}).encode()
                    else:
                        choice = {"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": reply.content}}
                        if body.get("logprobs") and reply.top_logprobs is not None:
                            choice["logprobs"] = {"content": logprob_content(reply.top_logprobs,
                                                                             body.get("top_logprobs"))}
                        payload = json.dumps({
                            "id": f"fake-{n}", "object": "chat.completion", "created": int(time.time()),
                            "model": body.get("model", "fake"),
                            "choices": [choice],
                            "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                                      "total_tokens": reply.prompt_tokens + reply.completion_tokens},
                        }).encode()
                    try:
                        self.send_response(reply.status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                    except (BrokenPipeError, ConnectionResetError):
                        pass                     # the client gave up (timeout): fine
                finally:
                    with server._lock:
                        server.in_flight -= 1
                    if server._slots:
                        server._slots.release()

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://{host}:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def start(self) -> "FakeLLMServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (a server that dies: later calls are refused, and
        requests on connections kept alive from before are dropped unanswered)."""
        self.stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        except OSError:
            pass
