"""Keyset pagination for lists of a million rows: "newer / older" by id, and a capped count.

OFFSET pages cost what they skip (the last of 19,338 pages was a backward scan of 966,900 rows),
and an exact count costs a scan of every matching row. A keyset page starts after an id the
previous page showed, through an index that ends in id, so the last page is as cheap as the
first; the count stops at COUNT_CAP ("10,000+"). No Flask here: the views read the ids.
"""
from dataclasses import dataclass

from sqlalchemy import func, select

from ..extensions import db

COUNT_CAP = 10_000


@dataclass
class Page:
    items: list
    newer: int | None  # pass as after= for the page of newer rows (None: this is the newest)
    older: int | None  # pass as before= for the page of older rows (None: nothing older)
    total: int  # matching rows, at most COUNT_CAP + 1
    capped: bool  # more than COUNT_CAP match

    @property
    def total_text(self):
        return f"{COUNT_CAP:,}+" if self.capped else f"{self.total:,}"


def page(query, id_column, before=None, after=None, per_page=50):
    """The newest per_page rows of query (ordered by id, newest first), or those just older than
    `before`, or just newer than `after`; the query's own ORDER BY is replaced."""
    base = query.order_by(None)
    if after is not None:
        items = list(db.session.scalars(base.where(id_column > after).order_by(id_column.asc())
                                        .limit(per_page + 1)).unique())
        has_newer, has_older = len(items) > per_page, True
        items = items[:per_page][::-1]
        if not items:  # nothing newer any more: the newest page
            return page(query, id_column, per_page=per_page)
    else:
        if before is not None:
            base = base.where(id_column < before)
        items = list(db.session.scalars(base.order_by(id_column.desc()).limit(per_page + 1)).unique())
        has_newer, has_older = before is not None, len(items) > per_page
        items = items[:per_page]
    total = capped_count(query, id_column)
    return Page(items, items[0].id if has_newer and items else None, items[-1].id if has_older and items else None,
                total, total > COUNT_CAP)


def capped_count(query, id_column):
    """How many rows the query matches, counting no further than COUNT_CAP + 1."""
    limited = query.order_by(None).with_only_columns(id_column).limit(COUNT_CAP + 1)
    return db.session.scalar(select(func.count()).select_from(limited.subquery()))


@dataclass
class CappedPagination:
    """Numbered pages (OFFSET) whose count stops at COUNT_CAP: for short lists such as a search's
    matches, where the page numbers are kept, but a search that matches most of a million rows
    must not count them all. Reads like Flask-SQLAlchemy's Pagination in the templates."""
    items: list
    page: int
    per_page: int
    total: int
    capped: bool

    @property
    def pages(self):
        return max(1, -(-min(self.total, COUNT_CAP) // self.per_page))

    @property
    def has_prev(self):
        return self.page > 1

    @property
    def has_next(self):
        return self.page * self.per_page < self.total

    @property
    def prev_num(self):
        return self.page - 1 if self.has_prev else None

    @property
    def next_num(self):
        return self.page + 1 if self.has_next else None

    @property
    def pages_text(self):
        return f"{self.pages:,}+" if self.capped else f"{self.pages:,}"

    @property
    def total_text(self):
        return f"{COUNT_CAP:,}+" if self.capped else f"{self.total:,}"


def numbered_page(query, id_column, page=1, per_page=50):
    """Page `page` of the query's rows (in its own order), with a capped count."""
    items = list(db.session.scalars(query.limit(per_page).offset((page - 1) * per_page)).unique())
    total = capped_count(query, id_column)
    return CappedPagination(items, page, per_page, total, total > COUNT_CAP)
