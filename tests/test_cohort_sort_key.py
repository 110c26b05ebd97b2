"""The cohort rules' "earliest per admission" helpers (docs/data.md §4): the one-value sort key
that ``arg_min`` / ``min`` aggregate over, and the single-thread section for the release-sized joins."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gated_symile.data.mimic.cohort import open_duckdb
from gated_symile.data.mimic.cohort_rules import one_thread, time_then_file_order

EVENTS = st.lists(
    st.tuples(
        st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2220, 12, 31)),
        st.integers(min_value=0, max_value=2**40 - 1),
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda event: event[1],  # file rows are unique, as in a file
)


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    connection = open_duckdb(2, None, tmp_path_factory.mktemp("duckdb"))
    yield connection
    connection.close()


@settings(max_examples=60, deadline=None)
@given(events=EVENTS, offsets=st.lists(st.integers(-3, 3), min_size=40, max_size=40))
def test_key_orders_by_time_then_file_row(con, events, offsets):
    """Sorting by the key is sorting by (time, file row), ties in time included (microseconds,
    times before 1970 and file rows up to 2**40 - 1); the earliest row is what ``arg_min`` picks."""
    # equal and near-equal times: move some events onto their neighbour's time plus 0-3 microseconds
    rows = [
        (events[max(i - 1, 0)][0] + timedelta(microseconds=offset) if offset >= 0 else time, row, i)
        for i, ((time, row), offset) in enumerate(zip(events, offsets))
    ]
    con.execute("CREATE OR REPLACE TEMP TABLE ev (t TIMESTAMP, file_row BIGINT, id INTEGER)")
    con.executemany("INSERT INTO ev VALUES (?, ?, ?)", rows)
    key = time_then_file_order("t", "file_row")
    by_key = [r[0] for r in con.execute(f"SELECT id FROM ev ORDER BY {key}").fetchall()]
    by_pair = [r[0] for r in con.execute("SELECT id FROM ev ORDER BY t, file_row").fetchall()]
    [(earliest,)] = con.execute(f"SELECT arg_min(id, {key}) FROM ev").fetchall()
    assert by_key == by_pair
    assert earliest == by_pair[0]


def test_one_thread_restores_the_setting_also_after_an_error(con):
    threads = lambda: con.execute("SELECT current_setting('threads')").fetchall()[0][0]  # noqa: E731
    assert threads() == 2
    with one_thread(con):
        assert threads() == 1
    assert threads() == 2
    with pytest.raises(RuntimeError), one_thread(con):
        raise RuntimeError("a statement failed")
    assert threads() == 2
