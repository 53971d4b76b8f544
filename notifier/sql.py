"""Small SQL helpers for the set-based writes (services) and delivery bookkeeping."""
import json

from django.db import connection


def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def int_array(ids) -> str:
    """Integer ids as one PostgreSQL array literal ("{1,2,3}", cast with ::bigint[] in the SQL).
    psycopg adapts a Python list element by element, in Python: for a fan-out chunk's arrays that
    was a tenth of the chunk's time; one string is one parameter to send."""
    return "{" + ",".join(str(int(i)) for i in ids) + "}"


def among(column: str, ids: list[int]) -> tuple[str, list]:
    """SQL for "column is one of ids" with the ids as one parameter (an array on PostgreSQL, JSON
    on SQLite): no statement with hundreds of placeholders to build, send and parse."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s::bigint[])", [int_array(ids)]
    if connection.vendor == "sqlite":
        return f"{column} IN (SELECT value FROM json_each(%s))", [json.dumps(list(ids))]
    return f"{column} IN ({', '.join(['%s'] * len(ids))})", list(ids)
