"""Model instances from the rows of written-out SQL, without a QuerySet.

For the statements that every generation start runs: one round trip can then carry rows of
several tables (a JOIN), and no ORM query is compiled for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache, lru_cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Model

M = TypeVar("M", bound=Model)


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


def update(obj: Model, names: Sequence[str]) -> None:
    """Write these fields of `obj` to its row: `save(update_fields=names)` without compiling an
    ORM query (the statement is made once per set of fields) and without pre_save/post_save
    signals, which nothing here listens to."""
    model = type(obj)
    fields = tuple(model._meta.get_field(name) for name in dict.fromkeys(names))
    values = [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields]  # type: ignore[union-attr]
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(model, tuple(f.name for f in fields)), [*values, obj.pk])


@lru_cache(maxsize=64)
def _update_sql(model: type[Model], names: tuple[str, ...]) -> str:
    quote = connection.ops.quote_name
    meta = model._meta
    columns = ", ".join(f"{quote(str(meta.get_field(n).column))} = %s" for n in names)  # type: ignore[union-attr]
    return f"UPDATE {quote(meta.db_table)} SET {columns} WHERE {quote(str(meta.pk.column))} = %s"  # type: ignore[union-attr]
