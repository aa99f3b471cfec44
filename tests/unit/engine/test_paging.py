"""The keyset pager: every row once, in order, across pages; ties broken by the unique
column; the first, last and empty pages; paging back; keys from a hand-edited address.

The rows live in a table of the test's own (on SQLite in memory, and on the database of
``QRM_TEST_DATABASE_URL`` too when it is set), so that the spelt-out key comparison is
checked on every backend the project runs on."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, select
from sqlalchemy.orm import Session

from engine.errors import ValidationError
from engine.paging import MAX_SIZE, KeysetPager

BACKENDS = ["sqlite://"] + ([os.environ["QRM_TEST_DATABASE_URL"]]
                            if os.environ.get("QRM_TEST_DATABASE_URL") else [])
T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(params=BACKENDS, ids=lambda url: url.split(":")[0])
def rows_table(request: pytest.FixtureRequest) -> Iterator[tuple[Session, Table]]:
    engine = create_engine(request.param)
    metadata = MetaData()
    table = Table(f"paging_rows_{uuid.uuid4().hex[:8]}", metadata,
                  Column("id", Integer, primary_key=True, autoincrement=False),
                  Column("state", String(10), nullable=False),
                  Column("seen", DateTime(timezone=True), nullable=False))
    metadata.create_all(engine)
    try:
        with Session(engine) as session:
            yield session, table
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def fill(session: Session, table: Table, count: int, *, ties: int = 1) -> None:
    """``count`` rows inserted in a shuffled order; every ``ties`` rows share one ``seen``."""
    order = sorted(range(1, count + 1), key=lambda n: (n * 7919) % (count + 13))
    session.execute(table.insert(), [
        {"id": n, "state": "even" if n % 2 == 0 else "odd",
         "seen": T0 + dt.timedelta(minutes=(n - 1) // ties)} for n in order] or None)
    session.commit()


def walk(pager: KeysetPager, session: Session, query: Any, size: int) -> list[list[Any]]:
    """Every page from the first, following ``next``."""
    pages, after = [], None
    while True:
        page = pager.page(session, query, after=after, size=size)
        pages.append(page)
        if page.next is None:
            return pages
        after = page.next


def ids(page: Any) -> list[int]:
    """The ids on a page: a row is the one thing selected, or a tuple (id first)."""
    return [row if isinstance(row, int) else row[0] for row in page.rows]


def every_id(pages: list[Any]) -> list[int]:
    return [row_id for page in pages for row_id in ids(page)]


def test_pages_hold_every_row_once_in_order(rows_table):
    session, table = rows_table
    fill(session, table, 23)
    pager = KeysetPager(table.c.id)

    pages = walk(pager, session, select(table.c.id), size=5)

    assert [ids(page) for page in pages] == [list(range(start, min(start + 5, 24)))
                                             for start in range(1, 24, 5)]
    assert pages[0].previous is None
    assert all(page.previous is not None for page in pages[1:])
    assert pages[-1].next is None


def test_filtered_pages_hold_every_matching_row(rows_table):
    session, table = rows_table
    fill(session, table, 30)
    pager = KeysetPager(table.c.id)

    pages = walk(pager, session, select(table).where(table.c.state == "even"), size=4)

    assert every_id(pages) == list(range(2, 31, 2))


def test_ties_are_broken_by_the_unique_column_without_loss(rows_table):
    """Rows with the same ``seen`` straddle page ends: none is lost or shown twice."""
    session, table = rows_table
    fill(session, table, 20, ties=3)
    pager = KeysetPager(table.c.seen, table.c.id)

    pages = walk(pager, session, select(table), size=4)

    assert every_id(pages) == list(range(1, 21))
    assert [len(page.rows) for page in pages] == [4, 4, 4, 4, 4]


def test_descending_order_with_ties(rows_table):
    session, table = rows_table
    fill(session, table, 11, ties=4)
    pager = KeysetPager(table.c.seen, table.c.id, descending=True)

    pages = walk(pager, session, select(table), size=3)

    assert every_id(pages) == list(range(11, 0, -1))


def test_paging_back_returns_the_same_pages(rows_table):
    session, table = rows_table
    fill(session, table, 17, ties=2)
    pager = KeysetPager(table.c.seen, table.c.id)
    forward = walk(pager, session, select(table), size=5)

    back, before = [], forward[-1].previous
    while before is not None:
        page = pager.page(session, select(table), before=before, size=5)
        back.append(ids(page))
        before = page.previous

    assert back == [ids(page) for page in reversed(forward[:-1])]
    # the page reached backwards offers the way forward again
    assert pager.page(session, select(table), before=forward[1].previous, size=5).next \
        == forward[0].next


def test_empty_table_gives_one_empty_page(rows_table):
    session, table = rows_table
    page = KeysetPager(table.c.id).page(session, select(table), size=10)

    assert (page.rows, page.next, page.previous) == ([], None, None)


def test_exactly_full_last_page_has_no_next(rows_table):
    session, table = rows_table
    fill(session, table, 10)
    pager = KeysetPager(table.c.id)

    first = pager.page(session, select(table), size=5)
    last = pager.page(session, select(table), after=first.next, size=5)

    assert ids(last) == [6, 7, 8, 9, 10]
    assert last.next is None
    assert pager.page(session, select(table), size=10).next is None


def test_a_row_added_meanwhile_does_not_shift_the_next_page(rows_table):
    session, table = rows_table
    fill(session, table, 10)
    pager = KeysetPager(table.c.id)
    first = pager.page(session, select(table), size=4)

    session.execute(table.insert(), [{"id": 0, "state": "odd", "seen": T0}])
    session.commit()

    assert ids(pager.page(session, select(table), after=first.next, size=4)) == [5, 6, 7, 8]


def test_page_size_is_bounded(rows_table):
    session, table = rows_table
    fill(session, table, 3)
    pager = KeysetPager(table.c.id)

    assert pager.page(session, select(table), size=0).size == 1
    assert pager.page(session, select(table), size=10**6).size == MAX_SIZE


@pytest.mark.parametrize("text", ["", "x", "[]", "[1,2]", '["7"]', "[null]", "[true]", "{}",
                                  "[1.5]"])
def test_a_key_that_is_not_one_is_refused_naming_the_field(rows_table, text):
    _session, table = rows_table
    pager = KeysetPager(table.c.id)

    with pytest.raises(ValidationError) as refused:
        pager.decode(text, field="after")

    assert refused.value.field == "after"


def test_datetime_keys_travel_as_text_and_back(rows_table):
    _session, table = rows_table
    pager = KeysetPager(table.c.seen, table.c.id)

    text = pager.encode((T0, 5))

    assert pager.decode(text, field="after") == (T0, 5)
    assert pager.decode('["2026-12-01T12:00:00",5]', field="after") == (T0, 5)
