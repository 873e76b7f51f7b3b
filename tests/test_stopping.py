"""Stopping an LLM run: Ctrl-C and SIGTERM end it within seconds with everything written;
kill -9 loses at most ``output.flush_seconds`` of events; an interrupted run resumes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("litellm")

from recworld.simulator.run import load_run  # noqa: E402
from recworld.simulator.testing.fakellm import FakeLLMServer  # noqa: E402
from recworld.simulator.testing.scripted import answer  # noqa: E402


def slow(body, n):
    """Scripted answers, each after 0.4 s: a run takes minutes, so it is stopped mid-way."""
    r = answer(body, n)
    r.delay = 0.4
    return r


def scenario_file(tmp_path: Path, tiny_ml: Path, url: str, days: float = 5, **output) -> Path:
    scn = {
        "name": "stopping", "seed": 3, "duration_days": days,
        "data": {"source": "movielens", "path": str(tiny_ml), "min_ratings": 5},
        "population": {"size": 10, "activity": {"median_sessions_per_day": 8}, "brain": {"name": "llm"}},
        "session": {"page_size": 5},
        "llm": {"model": "openai/fake", "api_base": url, "cache_path": str(tmp_path / "cache.sqlite"),
                "timeout_s": 30, "retries": 1, "backoff_s": 0.01, "max_concurrency": 4},
        "output": {"plots": False, **output},
    }
    path = tmp_path / "stopping.yaml"
    path.write_text(yaml.safe_dump(scn))
    return path


def start(path: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "recworld.simulator.cli", "run", str(path), "--out", str(out),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_events(srv: FakeLLMServer, n: int, proc: subprocess.Popen, limit: float = 60.0) -> None:
    t0 = time.time()
    while len(srv.requests) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < limit, "the run made too few LLM calls"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 130)])
def test_a_signal_ends_an_llm_run_within_seconds_with_everything_written(sig, code, tmp_path, tiny_ml):
    with FakeLLMServer(slow) as srv:
        path = scenario_file(tmp_path, tiny_ml, srv.url)
        out = tmp_path / "run"
        proc = start(path, out)
        wait_for_events(srv, 12, proc)
        t0 = time.time()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
        took = time.time() - t0
    assert took < 15, f"took {took:.1f} s to stop"
    assert proc.returncode == code, (proc.returncode, stderr[-2000:])
    assert "Traceback" not in stderr
    run = load_run(out)
    assert run.metrics["status"] == "interrupted"
    assert (out / "report.md").read_text().count("INTERRUPTED") >= 1
    assert len(run.events) > 0 and (out / "events.parquet").exists()


@pytest.mark.slow
def test_kill_9_loses_at_most_flush_seconds_and_the_run_resumes(tmp_path, tiny_ml):
    with FakeLLMServer(slow) as srv:
        path = scenario_file(tmp_path, tiny_ml, srv.url, days=0.5, flush_seconds=1)
        out = tmp_path / "run"
        proc = start(path, out)
        wait_for_events(srv, 20, proc)
        time.sleep(2.5)                          # more than flush_seconds since events were emitted
        proc.kill()
        proc.wait(timeout=30)
        killed = load_run(out)                   # opens the folder: parts flushed by time
        assert len(killed.events) > 0
        called = len(srv.requests)
        # resume: replays the answered calls from the cache, asks the server only for the rest
        res = subprocess.run([sys.executable, "-m", "recworld.simulator.cli", "run", "--resume", str(out),
                              "--no-progress"], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        assert "replayed" in res.stdout + res.stderr
    run = load_run(out)
    assert run.metrics["status"] == "completed"
    resumed = run.metrics["resumed"]
    assert resumed["replayed_from_cache"] > 0 and resumed["new_calls"] >= 0
    assert resumed["replayed_from_cache"] + resumed["new_calls"] >= called - 4
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
