"""``report.html``: one self-contained, offline page per run folder (and per comparison).

The page is a small script and stylesheet shipped with RecWorld (``assets/``), inlined,
plus the run's data as JSON in a ``<script type="application/json">`` element: no CDN, no
web fonts, nothing fetched.  What the data holds is built by ``view.RunView``; how many
users' timelines are embedded is bounded by a count and a byte budget (``output.html_users``
in the scenario, ``recworld view RUN --write --users N`` afterwards); ``recworld view RUN``
(``explorer.py``) serves the same page with every user loaded on demand.
"""

from __future__ import annotations

import html as _html
from importlib import resources
from pathlib import Path

from recworld.simulator.output.view import DEFAULT_MAX_BYTES, DEFAULT_USERS, RunView, dumps

_ASSETS = ("explorer.css", "explorer.js")
#: page kinds drawn by ``assets/studies.js`` (``output.studies``)
_STUDY_KINDS = ("sts", "fidelity")


def _asset(name: str) -> str:
    try:
        return resources.files("recworld.simulator.output").joinpath("assets", name).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        path = Path(__file__).resolve().parent / "assets" / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: the explorer's {name} is missing from this installation "
                                    "(package data of recworld.simulator.output)") from None
        return path.read_text(encoding="utf-8")


def _script_json(data: dict) -> str:
    """JSON that is safe inside a <script> element (no '</script>', no '<!--')."""
    return dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_page(data: dict) -> str:
    """The HTML page for ``data`` (a run's ``RunView.bundle``, ``arms_data``, or a study's
    ``studies.sts_data`` / ``studies.fidelity_data``)."""
    css, js = (_asset(n) for n in _ASSETS)
    if data.get("kind") in _STUDY_KINDS:                # their pages draw with the explorer's helpers
        js += "\n</script><script>" + _asset("studies.js")
    title = _html.escape(str(data.get("title") or "RecWorld"))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'\">"
            f"<title>{title}</title><style>{css}</style></head><body>"
            "<noscript>This report needs JavaScript (it is inlined in this file: nothing is downloaded).</noscript>"
            f"<script id=\"recworld-data\" type=\"application/json\">{_script_json(data)}</script>"
            f"<script>{js}</script></body></html>\n")


def write_html(folder, run, max_users: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
               name: str = "report.html") -> Path:
    """Write ``folder/report.html`` for a loaded run (``recworld.load_run(folder)``); returns
    its path.

    ``max_users``: how many users' timelines to embed (default: the scenario's
    ``output.html_users`` if it has one, else ``DEFAULT_USERS``); ``max_bytes`` bounds their
    JSON."""
    folder = Path(folder)
    if max_users is None:
        out_cfg = (run.scenario or {}).get("output") or {}
        max_users = int(out_cfg.get("html_users", DEFAULT_USERS)) if isinstance(out_cfg, dict) else DEFAULT_USERS
    data = RunView(run).bundle(max_users=max_users, max_bytes=max_bytes)
    path = folder / name
    tmp = folder / f".{name}.tmp"
    try:
        tmp.write_text(render_page(data), encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)          # a failed write leaves nothing behind in the run folder
    return path
