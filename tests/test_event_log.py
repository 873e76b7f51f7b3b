"""The event log's buffer and parts: every way a field can be given comes back as given."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recworld.recommenders.base import without
from recworld.simulator.engine.events import EVENT_SCHEMA, EventKind as K, EventLog, read_events


def _emit_mixed(log):
    log.emit(K.SLATE, 0, 1, session=1, slate_id=1, page=0, items=np.array([5, 6, 7]), propensities=np.ones(3))
    log.emit(K.SLATE, 1.5, 1, session=1, slate_id=2, page=1, items=[8, 9], propensities=[0.5, 0.25], text="q")
    log.emit(K.SLATE, 2.0, 2, session=3, slate_id=3, page=0, items=[], text=None)          # an empty slate
    log.emit(K.POST, 3.0, 2, session=3, post_id=1, root_id=1, item_id=5, value=0.0, other_id=None, text="hi")
    log.emit(K.WATCH, 4.0, 1, session=1, item_id=5, slate_id=1, page=0, position=0, value=float("nan"))
    log.emit(K.CHAT, 5.0, 1, session=2, other_id=2, items=[5], text="a: b")


EXPECTED = {
    "time": [0.0, 1.5, 2.0, 3.0, 4.0, 5.0],
    "kind": ["slate", "slate", "slate", "post", "watch", "chat"],
    "user_id": [1, 1, 2, 2, 1, 1],
    "session": [1, 1, 3, 3, 1, 2],
    "item_id": [None, None, None, 5, 5, None],
    "other_id": [None, None, None, None, None, 2],
    "slate_id": [1, 2, 3, None, 1, None],
    "page": [0, 1, 0, None, 0, None],
    "position": [None, None, None, None, 0, None],
    "items": [[5, 6, 7], [8, 9], [], None, None, [5]],
    "propensities": [[1.0, 1.0, 1.0], [0.5, 0.25], None, None, None, None],
    "text": [None, "q", None, "hi", None, "a: b"],
}


@pytest.mark.parametrize("flush_every", [1, 2, 4, 1000])
def test_fields_come_back_as_given_however_the_parts_fall(tmp_path, flush_every):
    log = EventLog(tmp_path, flush_every=flush_every, flush_seconds=None)
    _emit_mixed(log)
    assert log.count == 6 and log.counts == {"slate": 3, "post": 1, "watch": 1, "chat": 1}
    before_close = read_events(tmp_path) if flush_every < 6 else None     # the parts of a run still going
    log.close()
    table = pq.read_table(tmp_path / "events.parquet")
    assert table.schema.equals(EVENT_SCHEMA)
    rows = table.to_pylist()
    for field, want in EXPECTED.items():
        assert [r[field] for r in rows] == want, field
    value = [r["value"] for r in rows]
    assert value[:3] == [None] * 3 and value[3] == 0.0 and np.isnan(value[4])
    if before_close is not None:
        assert len(before_close) == 6 // flush_every * flush_every
        assert before_close["kind"].tolist() == EXPECTED["kind"][:len(before_close)]


def test_an_unknown_field_is_refused_and_leaves_the_buffer_whole(tmp_path):
    log = EventLog(tmp_path, flush_seconds=None)
    log.emit(K.RATE, 1.0, 3, session=1, item_id=4, value=4.0)
    with pytest.raises(TypeError, match="unknown event fields \\['colour'\\]"):
        log.emit(K.RATE, 2.0, 3, session=1, item_id=5, colour="red", value=5.0)
    log.emit(K.RATE, 3.0, 3, session=1, item_id=6, value=3.0)
    assert log.count == 2
    log.close()
    ev = read_events(tmp_path)
    assert ev["item_id"].tolist() == [4, 6] and ev["value"].tolist() == [4.0, 3.0]


def test_parquet_parts_of_earlier_runs_are_still_read(tmp_path):
    """A run folder left by an earlier version (Parquet parts, no merged file) loads."""
    log = EventLog(tmp_path / "new", flush_every=2, flush_seconds=None)
    _emit_mixed(log)
    table = pq.read_table(log.close())
    parts = tmp_path / "old" / "events.parts"
    parts.mkdir(parents=True)
    pq.write_table(table.slice(0, 3), parts / "part-00000.parquet")
    pq.write_table(table.slice(3), parts / "part-00001.parquet")
    ev = read_events(tmp_path / "old")
    pd.testing.assert_frame_equal(ev, read_events(tmp_path / "new"))


def test_without_is_isin_with_the_order_kept():
    rng = np.random.default_rng(0)
    for _ in range(300):
        items = rng.permutation(60)[: rng.integers(0, 30)]
        exclude = rng.integers(0, 70, size=rng.integers(0, 25))
        np.testing.assert_array_equal(without(items, exclude), items[~np.isin(items, exclude)])
