from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recworld.simulator.engine.events import EventKind, EventLog, read_events
from recworld.simulator.data.social import SocialGraph

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("kind", ["small_world", "scale_free", "random"])
def test_generated_graphs(kind):
    g = SocialGraph.generate(kind, 200, np.random.default_rng(1), degree=6)
    deg = g.degrees()
    assert 3 <= deg.mean() <= 7
    again = SocialGraph.generate(kind, 200, np.random.default_rng(1), degree=6)
    assert all((a == b).all() for a, b in zip(g.friends, again.friends))
    for u in range(200):                    # friendship is symmetric
        for v in g.friends[u]:
            assert u in g.friends[v]
    if kind == "scale_free":
        assert deg.max() > 4 * np.median(deg)


def test_no_graph():
    g = SocialGraph.generate("none", 10, np.random.default_rng(0))
    assert g.n_edges == 0 and all(len(f) == 0 for f in g.followers)


def test_edgelist_undirected_and_directed():
    ids = np.array([1, 2, 3, 4, 5, 6])
    g = SocialGraph.from_edgelist(DATA / "edges_tiny.txt", ids)
    assert g.n_edges == 5                   # the pair with unknown user 99 is skipped
    assert sorted(g.friends[0].tolist()) == [1, 3]
    d = SocialGraph.from_edgelist(DATA / "edges_tiny.txt", ids, directed=True)
    assert d.followers[0].tolist() == [1, 3] and d.followers[1].tolist() == [2]
    assert d.followers[3].tolist() == []    # 4 follows 1, not the other way round


def test_edgelist_errors(tmp_path):
    bad = tmp_path / "e.txt"
    bad.write_text("1 2\n3\n")
    with pytest.raises(ValueError, match="e.txt:2"):
        SocialGraph.from_edgelist(bad, np.array([1, 2, 3]))


def test_event_log_streams_parts_and_merges(tmp_path):
    log = EventLog(tmp_path, flush_every=100)
    for t in range(250):
        log.emit(EventKind.SLATE, t, 7, session=1, slate_id=t, items=[1, 2, 3], page=0)
    parts = sorted((tmp_path / "events.parts").glob("part-*.arrow"))
    assert len(parts) == 2                  # 200 events already on disk while the run goes on
    assert len(read_events(tmp_path)) == 200
    log.close()
    assert not (tmp_path / "events.parts").exists()
    ev = read_events(tmp_path)
    assert len(ev) == 250 and ev["time"].is_monotonic_increasing
    assert ev["items"].iloc[0].tolist() == [1, 2, 3]
    assert str(ev["slate_id"].dtype) == "Int64" and pd.isna(ev["item_id"].iloc[0])


def test_event_log_rejects_unknown_fields(tmp_path):
    log = EventLog(tmp_path)
    with pytest.raises(TypeError, match="unknown event fields"):
        log.emit(EventKind.WATCH, 0, 1, colour="red")


def test_context_manager_merges_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with EventLog(tmp_path, flush_every=1000) as log:
            log.emit(EventKind.SEARCH, 1.0, 1, text="comedy")
            raise RuntimeError("boom")
    ev = read_events(tmp_path)
    assert ev["text"].tolist() == ["comedy"]


def test_read_events_explains_a_wrong_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="run folder"):
        read_events(tmp_path)
