"""The embedded server counts as ready only once its task loop answers (no model needed)."""

import http.server
import json
import threading
import time

from recworld.simulator.llm.embedded import EmbeddedLLM


def _fake_server(loop_running: threading.Event, slots_status: int = 200):
    """/health says ok at once; /slots (served by the task loop) waits for ``loop_running``."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/slots":
                loop_running.wait(10)
                code, body = slots_status, b"[]"
            else:
                code, body = 200, json.dumps({"status": "ok"}).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _ready_after(loop_running: threading.Event, delay: float, slots_status: int = 200) -> float:
    srv = _fake_server(loop_running, slots_status)
    try:
        llm = EmbeddedLLM(startup_timeout_s=20)
        llm.port = srv.server_address[1]
        threading.Timer(delay, loop_running.set).start()
        t0 = time.monotonic()
        llm._wait_ready()
        return time.monotonic() - t0
    finally:
        srv.shutdown()


def test_ready_waits_for_the_task_loop_not_just_health():
    # a server stopped between /health and its task loop never stops: start() must not return then
    assert _ready_after(threading.Event(), 0.6) >= 0.5


def test_a_server_without_the_slots_endpoint_is_ready_on_health():
    loop = threading.Event()
    loop.set()
    assert _ready_after(loop, 0.0, slots_status=501) < 5
