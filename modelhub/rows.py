"""Model instances from the rows of written-out SQL, without a QuerySet, and those statements run
as prepared statements.

For the statements that every generation start and finish runs: one round trip can then carry rows
of several tables (a JOIN), no ORM query is compiled for them, and PostgreSQL plans each once per
connection instead of on every call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache, lru_cache
from typing import Any, TypeVar

import psycopg
from django.db import connection
from django.db.models import Model
from psycopg.pq import ExecStatus

M = TypeVar("M", bound=Model)
TUPLES_OK = ExecStatus.TUPLES_OK


@cache
def columns(model: type[Model], alias: str) -> str:
    """`alias.column, ...` for every concrete field, in the order `instance` reads them."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(str(f.column))}" for f in model._meta.concrete_fields)


def width(model: type[Model]) -> int:
    return len(model._meta.concrete_fields)


@cache
def _layout(model: type[Model]) -> tuple[list[str], list[tuple[int, Callable[..., Any]]]]:
    fields = model._meta.concrete_fields
    converters = [
        (i, converter)
        for i, field in enumerate(fields)
        for converter in field.get_db_converters(connection)
    ]
    return [f.attname for f in fields], converters


def instance(model: type[M], values: Sequence[Any]) -> M:
    """The instance for `values` in `columns(model, ...)` order, as the ORM would load it."""
    names, converters = _layout(model)
    values = list(values)
    for i, converter in converters:
        values[i] = converter(values[i], None, connection)
    return model.from_db(connection.alias, names, values)


def execute(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run one written-out statement on this thread's connection as a prepared statement and
    return its rows (none for a statement without a result).

    Django's cursors bind parameters on the client, which rules out prepared statements; turning
    server-side binding on for every query breaks ORM queries whose parameters PostgreSQL cannot
    type (`inconsistent types deduced for parameter`). These statements are written for it.
    Prepared, the statement that claims a generation cost PostgreSQL 65-90 µs a call where
    planning it on every call cost 380-500 µs (measured here, with no row to claim).
    Errors come out as Django's database errors, and the statement takes part in the current
    transaction like any other. It is not in `connection.queries`.
    """
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        # Whether rows came back, from the result's status: `cursor.description` builds an object
        # per column (sixty for the claim), a tenth of this call's CPU.
        result = cursor.pgresult
        return cursor.fetchall() if result is not None and result.status == TUPLES_OK else []


def insert(obj: M) -> M:
    """`obj.save(force_insert=True)` for a model whose primary key is set in Python (a UUID
    default): one prepared statement per model, no ORM query compiled and no pre_save/post_save
    signals. For a generation, 578 µs of the caller's CPU where the ORM's INSERT took 654 (most of
    both is the round trip), and no planning in PostgreSQL.
    Fields that fill themselves in on save (`auto_now_add`) do so as with save()."""
    return insert_many([obj])[0]


def insert_many(objs: Sequence[M]) -> Sequence[M]:
    """`insert` for several instances of one model, in one statement (a battle's two answers)."""
    if not objs:
        return objs
    model = type(objs[0])
    fields = model._meta.concrete_fields
    values: list[Any] = []
    for obj in objs:
        assert type(obj) is model, "insert_many() takes instances of one model"
        assert obj.pk is not None, "insert_many() is for models whose primary key is set in Python"
        values += [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]  # type: ignore[union-attr]
    execute(_insert_sql(model, len(objs)), values)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
    return objs


@lru_cache(maxsize=32)
def _insert_sql(model: type[Model], count: int) -> str:
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    names = ", ".join(quote(str(f.column)) for f in fields)
    marks = ", ".join(["(" + ", ".join("%s" for _ in fields) + ")"] * count)
    return f"INSERT INTO {quote(model._meta.db_table)} ({names}) VALUES {marks}"


def update(obj: Model, names: Sequence[str]) -> None:
    """Write these fields of `obj` to its row: `save(update_fields=names)` without compiling an
    ORM query (the statement is made once per set of fields) and without pre_save/post_save
    signals, which nothing here listens to."""
    model = type(obj)
    fields = tuple(model._meta.get_field(name) for name in dict.fromkeys(names))
    values = [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields]  # type: ignore[union-attr]
    execute(_update_sql(model, tuple(f.name for f in fields)), [*values, obj.pk])


@lru_cache(maxsize=64)
def _update_sql(model: type[Model], names: tuple[str, ...]) -> str:
    quote = connection.ops.quote_name
    meta = model._meta
    columns = ", ".join(f"{quote(str(meta.get_field(n).column))} = %s" for n in names)  # type: ignore[union-attr]
    return f"UPDATE {quote(meta.db_table)} SET {columns} WHERE {quote(str(meta.pk.column))} = %s"  # type: ignore[union-attr]
