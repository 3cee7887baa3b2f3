"""The intake's inserts as SQL text, built once per database kind and table, run with
Connection.exec_driver_sql (the DBAPI's execute or executemany, still seen by SQLAlchemy's events).

SQLAlchemy's compiling and its per-row parameter processing were most of each insert's time; here
a row is a tuple the intake builds with the two conversions it needs (times, and JSON). A column
left out gets its Python-side default, as a Core insert gives it. Plain SQL: no Flask here.
"""
import functools
import json

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects import postgresql

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
        # PostgreSQL: the rows as one array a given column, whatever their number (see _arrays);
        # the defaulted columns' values, the same for every row, one parameter each
        self.arrays_sql = None if name != "postgresql" else (
            f"INSERT INTO {table.name} ({', '.join(_quoted(n) for n in names)}) SELECT given.*"
            + "".join(f", %s::{_pg_type(c.type)}" for c in self.defaulted) + " FROM unnest("
            + ", ".join(f"%b::{_pg_type(table.c[n].type)}[]" for n in columns) + ") AS given" + tail)

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
        """Insert rows (tuples in `columns` order): one executemany (PostgreSQL: one statement
        over arrays), no rows back."""
        suffix = self.defaults(now)
        if self.arrays_sql:
            connection.exec_driver_sql(self.arrays_sql, self._arrays(rows, suffix))
            return
        connection.exec_driver_sql(self._sql(1), [row + suffix for row in rows])

    def returning(self, connection, rows, now, first=()):
        """Insert rows with multi-row VALUES (PostgreSQL: one statement over arrays; RETURNING
        in the tail); the rows it returns. first: (Insert, rows) pairs to insert before these,
        whose rows nothing here refers to; on PostgreSQL in the same statement (WITH ... AS
        (INSERT ...)), one round trip for all."""
        suffix = self.defaults(now)
        if self.arrays_sql:
            first = [(statement, part) for statement, part in first if part]
            sql = self.arrays_sql
            params = self._arrays(rows, suffix)
            if first:
                sql = "WITH " + ", ".join(f"first_{n} AS ({statement.arrays_sql})"
                                          for n, (statement, _) in enumerate(first)) + " " + sql
                params = sum((statement._arrays(part, statement.defaults(now)) for statement, part in first), ()) + params
            return connection.exec_driver_sql(sql, params).fetchall()
        for statement, part in first:
            if part:
                statement.run(connection, part, now)
        found = []
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            part = rows[start:start + ROWS_PER_STATEMENT]
            params = [value for row in part for value in row + suffix]
            found += connection.exec_driver_sql(self._sql(len(part)), tuple(params)).fetchall()
        return found

    @staticmethod
    def _arrays(rows, suffix):
        """The defaulted columns' values, then the rows as a list a column, for INSERT ... SELECT
        given.*, defaults FROM unnest(array, ...) AS given: a statement of one parameter a column,
        where a multi-row VALUES has one a value (11,000 for 1,000 events), which psycopg parses
        in Python at each execution, and executemany runs a statement a row: on PostgreSQL those
        were half of a 1,000-event body's time."""
        return suffix + tuple(list(column) for column in zip(*rows))

    @functools.lru_cache(maxsize=32)  # noqa: B019 (statements live as long as the process)
    def _sql(self, n):
        return self.head + ", ".join([self.row_sql] * n) + self.tail


class Lookup:
    """One statement for several look-ups by key: SELECT part, columns FROM table WHERE key IN (...)
    for each part, joined by UNION ALL (a round trip, not one per table), for a kind of database
    (as Insert's). parts: (table, columns, key) each; a part's columns sit in slots of their own,
    NULL in the other parts' rows."""

    def __init__(self, kind, parts):
        self.marker = "?" if kind[1] == "qmark" else "%s"
        self.arrays = kind[0] == "postgresql"  # key = ANY(array): one parameter a part (see Insert._arrays)
        widths = [len(columns) for _, columns, _ in parts]
        self.parts = []
        for n, (table, columns, key) in enumerate(parts):
            slots = ["NULL"] * sum(widths)
            first = sum(widths[:n])
            slots[first:first + len(columns)] = [_quoted(c) for c in columns]
            where = (f"{_quoted(key)} = ANY(%b::{_pg_type(table.c[key].type)}[]" if self.arrays
                     else f"{_quoted(key)} IN (")
            self.parts.append((f"SELECT {n}, {', '.join(slots)} FROM {table.name} WHERE {where}",
                               slice(first + 1, first + 1 + len(columns))))

    def rows(self, connection, values):
        """For each part, the rows (tuples of its columns) whose key is one of its values (a list
        of values per part; a statement per ROWS_PER_STATEMENT values of each)."""
        found = [[] for _ in self.parts]
        if self.arrays:
            sql = " UNION ALL ".join(head + ")" for (head, _), v in zip(self.parts, values) if v)
            for row in connection.exec_driver_sql(sql, tuple(list(v) for v in values if v)) if sql else ():
                found[row[0]].append(tuple(row[self.parts[row[0]][1]]))
            return found
        longest = max(len(v) for v in values)
        for start in range(0, longest, ROWS_PER_STATEMENT):
            parts = tuple(tuple(v[start:start + ROWS_PER_STATEMENT]) for v in values)
            params = tuple(value for part in parts for value in part)
            for row in connection.exec_driver_sql(self._sql(tuple(len(p) for p in parts)), params):
                found[row[0]].append(tuple(row[self.parts[row[0]][1]]))
        return found

    @functools.lru_cache(maxsize=64)  # noqa: B019 (statements live as long as the process)
    def _sql(self, counts):
        return " UNION ALL ".join(head + ", ".join([self.marker] * n) + ")"
                                  for (head, _), n in zip(self.parts, counts) if n)


def _default(column):
    """A column's Python-side default as a parameter; NOW for a time column's callable (utcnow)."""
    value = column.default.arg
    if column.default.is_callable:
        value = NOW if isinstance(column.type, DateTime) else value(None)  # dict, list: called as Core does
    return json.dumps(value) if isinstance(column.type, JSON) else value


def _pg_type(type_):
    """A column's type in PostgreSQL's words, for an array of it (VARCHAR(120), JSON, ...)."""
    return type_.compile(dialect=postgresql.dialect())


def _quoted(name):
    return f'"{name}"' if name == "order" else name
