"""``recworld view RUN``: the run explorer of a folder, served on loopback or rewritten.

Served, the page embeds no timelines and fetches each user's (``/user/ID.json``) when it is
picked, so runs of any size can be explored; ``--write`` rewrites ``RUN/report.html``
(e.g. with more users embedded, or for a folder written before the explorer existed).

Register it in the CLI's ``COMMANDS`` table as
``"view": (help, add_view_arguments, cmd_view)``.
"""

from __future__ import annotations

import threading
from pathlib import Path

# Light to import (the CLI builds its parser from it): pandas and the run loader load on use.

HELP = ("explore a run in the browser: serve its report.html on loopback with every user loaded on demand "
        "(--write: rewrite report.html)")
#: as ``view.DEFAULT_USERS`` (not imported here: importing this module stays light)
_DEFAULT_USERS = 200


def write_report_html(folder, max_users: int | None = None, max_bytes: int | None = None) -> Path:
    """(Re)write ``folder/report.html`` from the run folder's files; returns its path."""
    from recworld.simulator.output.html import write_html
    from recworld.simulator.output.view import DEFAULT_MAX_BYTES
    from recworld.simulator.run import load_run

    return write_html(folder, load_run(folder), max_users=max_users,
                      max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes)


def add_view_arguments(parser) -> None:
    """Arguments of ``recworld view RUN``."""
    parser.add_argument("run", help="a run folder (written by recworld run)")
    parser.add_argument("--port", type=int, default=0, help="loopback port to serve on (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default 127.0.0.1: this machine only)")
    parser.add_argument("--open", action="store_true", help="open the page in the default web browser")
    parser.add_argument("--write", action="store_true",
                        help="(re)write RUN/report.html and exit instead of serving")
    parser.add_argument("--users", type=int, default=None,
                        help=f"with --write: how many users' timelines the file embeds (default: the scenario's "
                             f"output.html_users, else {_DEFAULT_USERS})")


def cmd_view(args) -> int:
    """``recworld view RUN``: serve the explorer of a run folder on loopback, every user's
    timeline loaded on demand (``--write``: rewrite ``report.html`` instead)."""
    import sys

    folder = Path(args.run)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder {folder} does not exist")
    if not (folder / "events.parquet").exists() and not (folder / "events.parts").is_dir():
        raise FileNotFoundError(f"{folder} has no events.parquet: is it a run folder (recworld run writes one)?")
    if args.users is not None and args.users < 0:
        raise ValueError("--users must be 0 or more")
    if args.write:
        path = write_report_html(folder, max_users=args.users)
        print(f"report: {path} ({path.stat().st_size / 1e6:.2f} MB)")
        return 0
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: anyone who can reach it can read the run", file=sys.stderr)
    server = make_server(folder, args.host, args.port)
    url = f"http://{args.host}:{server.server_address[1]}/"
    print(f"serving {folder} at {url} (Ctrl-C to stop)", flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def make_server(folder, host: str = "127.0.0.1", port: int = 0):
    """An HTTP server for one run folder: ``/`` is the explorer (no timelines embedded),
    ``/user/ID.json`` one user's timeline, ``/plots/...`` and the folder's other files as
    they are.  Call ``serve_forever()`` on it (``shutdown()`` from another thread)."""
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from recworld.simulator.output.html import render_page
    from recworld.simulator.output.view import RunView, dumps
    from recworld.simulator.run import load_run

    folder = Path(folder).resolve()
    view = RunView(load_run(folder))
    lock = threading.Lock()
    data = view.bundle(max_users=0)
    data["served"] = True
    page = render_page(data).encode("utf-8")

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(folder), **kw)

        def log_message(self, *a):  # quiet
            pass

        def _send(self, body: bytes, ctype: str, status: int = 200):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html", "/report.html"):
                return self._send(page, "text/html; charset=utf-8")
            if path.startswith("/user/") and path.endswith(".json"):
                try:
                    uid = int(path[len("/user/"):-len(".json")])
                except ValueError:
                    return self._send(b'{"error": "bad user id"}', "application/json", 400)
                if uid not in view.by_user and uid not in view.profiles:
                    return self._send(b'{"error": "no such user"}', "application/json", 404)
                with lock:
                    body = dumps(view.user(uid)).encode("utf-8")
                return self._send(body, "application/json")
            return super().do_GET()

        def list_directory(self, path):        # no folder listings
            self.send_error(404)
            return None

    return ThreadingHTTPServer((host, port), Handler)
