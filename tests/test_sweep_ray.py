"""`recworld sweep` on Ray: a local Ray head started by hand the way a user would
(``ray start --head`` on loopback, then ``--address``), and a local Ray the sweep starts
itself.  Both give the summary of the same sweep run in-process."""

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("ray")

from recworld.simulator import load_run  # noqa: E402
from recworld.simulator.cli import main  # noqa: E402
from recworld.simulator.studies.sweep import run_sweep  # noqa: E402

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
SWEEP = {"seeds": 2, "grid": {"recommender.name": ["random", "popularity"]}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tiny(small_scenario, tmp_path) -> Path:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(dict(small_scenario, output={"plots": False}, sweep=SWEEP), sort_keys=False))
    return f


@pytest.fixture
def ray_head():
    """``ray start --head --block`` on loopback in a short temporary folder, with its own
    token.  ``--block`` keeps the head in one process we started, so the cluster is
    stopped by signalling that process (``ray stop`` would stop every Ray on the machine)."""
    temp = Path(tempfile.mkdtemp(prefix="rw-ray-", dir="/tmp"))      # Ray's socket paths must stay short
    port = _free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    env.pop("RAY_ADDRESS", None)
    log = open(temp / "head.log", "w")
    proc = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                             f"--port={port}", f"--temp-dir={temp}", "--num-cpus=2", "--include-dashboard=false",
                             "--disable-usage-stats"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 180
        while "Ray runtime started" not in (temp / "head.log").read_text():
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("ray start --head did not come up:\n" + (temp / "head.log").read_text()[-3000:])
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", env
    finally:
        proc.terminate()                                 # the head drains and stops the processes it started
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)                       # its own process group only
            proc.wait(30)
        log.close()
        subprocess.run(["rm", "-rf", str(temp)], check=False)


def test_a_sweep_on_a_ray_cluster_started_by_hand_gives_the_in_process_summary(tiny, tmp_path, ray_head):
    address, env = ray_head
    out = tmp_path / "on-ray"
    done = subprocess.run([str(BIN / "recworld"), "sweep", str(tiny), "--address", address, "--out", str(out),
                           "--no-progress"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "engine ray" in done.stdout.strip().splitlines()[-1]
    here = run_sweep(tiny, tmp_path / "here", engine="sequential", progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), pd.read_csv(tmp_path / "here" / "summary.csv"))
    for f in ("random-seed3", "popularity-seed4"):
        pd.testing.assert_frame_equal(load_run(out / f).events, load_run(tmp_path / "here" / f).events)
    import json

    state = json.loads((out / "sweep.json").read_text())
    assert state["engine"] == "ray" and state["address"] == address and state["cluster_cpus"] == 2


def test_a_local_ray_sweep_records_failures_and_matches_in_process(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")      # nothing written to ~/.ray by this test
    cfg = yaml.safe_load(tiny.read_text())
    cfg["sweep"] = {"seeds": 2}
    tiny.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "local"
    rc = main(["sweep", str(tiny), "--engine", "ray", "--num-cpus", "2", "--out", str(out), "--no-progress",
               "--grid", "recommender=[{name: random}, {name: policy, path: /nonexistent/model.zip, label: broken}]"])
    assert rc == 1, capsys.readouterr()
    runs = pd.read_csv(out / "sweep.csv").set_index("folder")
    for s in (3, 4):
        assert runs.loc[f"random-seed{s}", "status"] == "completed"
        bad = runs.loc[f"broken-seed{s}"]
        assert bad["status"] == "failed" and bad["attempts"] == 2 and "FileNotFoundError" in bad["error"]
    here = run_sweep(tiny, tmp_path / "here", config={"seeds": 2}, overrides=["recommender.name=random"],
                     engine="sequential", progress=False)
    mine = pd.read_csv(out / "summary.csv")
    mine = mine[mine["arm"] == "random"].drop(columns="arm").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, here.summary.drop(columns="arm").reset_index(drop=True),
                                  check_dtype=False)
