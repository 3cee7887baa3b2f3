"""The intake's inserts as SQL text, built once per database kind and table, run with
Connection.exec_driver_sql (the DBAPI's execute or executemany, still seen by SQLAlchemy's events).

SQLAlchemy's compiling and its per-row parameter processing were most of each insert's time; here
a row is a tuple the intake builds with the two conversions it needs (times, and JSON). A column
left out gets its Python-side default, as a Core insert gives it. Plain SQL: no Flask here.
"""
import functools
import json

from sqlalchemy import JSON, DateTime

ROWS_PER_STATEMENT = 1000  # a multi-row VALUES: at most 1000 x 10 parameters (SQLite allows 32,766)


def sqlite_time(value):
    """A naive UTC datetime as SQLAlchemy stores it in SQLite (text that sorts by time)."""
    return None if value is None else value.isoformat(" ", "microseconds")


NOW = object()  # a default the statement's clock reading fills in


def same(value):
    return value


class Insert:
    """INSERT INTO table (columns, then the other defaulted columns) VALUES ... tail, for a kind
    of database: (dialect name, DBAPI paramstyle)."""

    def __init__(self, kind, table, columns, tail=""):
        name, paramstyle = kind  # the dialect's
        self.sqlite = name == "sqlite"
        self.time = sqlite_time if self.sqlite else same  # psycopg takes datetimes as they are
        self.defaulted = [c for c in table.columns if c.default is not None and c.name not in columns]
        names = [*columns, *(c.name for c in self.defaulted)]
        marker = "?" if paramstyle == "qmark" else "%s"
        self.row_sql = "(" + ", ".join(self._cast(marker, table.c[n].type) for n in names) + ")"
        self.head = f"INSERT INTO {table.name} ({', '.join(_quoted(n) for n in names)}) VALUES "
        self.tail = tail
        self._defaults = tuple(_default(column) for column in self.defaulted)
        self._takes_now = any(value is NOW for value in self._defaults)

    def _cast(self, marker, type_):
        return f"CAST({marker} AS JSON)" if isinstance(type_, JSON) and not self.sqlite else marker

    def defaults(self, now):
        """The defaulted columns' values for this statement's rows: constants worked out once, and
        `now` (the body's one clock reading) where the default is utcnow."""
        if not self._takes_now:
            return self._defaults
        stamp = self.time(now)
        return tuple(stamp if value is NOW else value for value in self._defaults)

    def run(self, connection, rows, now):
        """Insert rows (tuples in `columns` order): one executemany, no rows back."""
        suffix = self.defaults(now)
        connection.exec_driver_sql(self._sql(1), [row + suffix for row in rows])

    def returning(self, connection, rows, now):
        """Insert rows with multi-row VALUES (RETURNING in the tail); the rows it returns."""
        suffix = self.defaults(now)
        found = []
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            part = rows[start:start + ROWS_PER_STATEMENT]
            params = [value for row in part for value in row + suffix]
            found += connection.exec_driver_sql(self._sql(len(part)), tuple(params)).fetchall()
        return found

    @functools.lru_cache(maxsize=32)  # noqa: B019 (statements live as long as the process)
    def _sql(self, n):
        return self.head + ", ".join([self.row_sql] * n) + self.tail


class SelectIn:
    """SELECT columns FROM table WHERE key IN (...), for a kind of database (as Insert's)."""

    def __init__(self, kind, table, columns, key):
        marker = "?" if kind[1] == "qmark" else "%s"
        self.marker = marker
        self.head = f"SELECT {', '.join(_quoted(c) for c in columns)} FROM {table.name} WHERE {_quoted(key)} IN ("

    def rows(self, connection, values):
        """The rows whose key is one of values, as tuples (a statement per ROWS_PER_STATEMENT values)."""
        found = []
        for start in range(0, len(values), ROWS_PER_STATEMENT):
            part = tuple(values[start:start + ROWS_PER_STATEMENT])
            found += [tuple(row) for row in connection.exec_driver_sql(self._sql(len(part)), part)]
        return found

    @functools.lru_cache(maxsize=32)  # noqa: B019 (statements live as long as the process)
    def _sql(self, n):
        return self.head + ", ".join([self.marker] * n) + ")"


def _default(column):
    """A column's Python-side default as a parameter; NOW for a time column's callable (utcnow)."""
    value = column.default.arg
    if column.default.is_callable:
        value = NOW if isinstance(column.type, DateTime) else value(None)  # dict, list: called as Core does
    return json.dumps(value) if isinstance(column.type, JSON) else value


def _quoted(name):
    return f'"{name}"' if name == "order" else name
