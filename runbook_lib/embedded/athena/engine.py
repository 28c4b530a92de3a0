"""One Athena statement from text to result: parse, translate to DuckDB, run, write the result to S3.

A query's tables are resolved in the catalog (`database.table`, or the execution context's
database), each becomes a DuckDB view over its files (`tables`), a view's own query is translated
the same way, and the query is translated from Athena's SQL (Trino) to DuckDB's with sqlglot.
DuckDB runs in memory, in UTC, with a memory limit, spilling to the work folder.

Result files, as Athena writes them: `<output>/<QueryExecutionId>.csv` with a header row, every
value in double quotes and NULL as an empty unquoted field; DDL writes `<QueryExecutionId>.txt`.
Next to the CSV, `<QueryExecutionId>.csv.metadata` holds the column names and types. Athena's
metadata file is a binary format it does not document; ours is JSON (UNCONFIRMED by design).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from runbook_lib.embedded import moto_state
from runbook_lib.embedded.athena import tables
from runbook_lib.embedded.athena.catalog import AthenaCatalog, ExternalTable, QueryError, View

__all__ = ["Outcome", "athena_type", "run_statement"]

# DuckDB may use this much memory for one query before it spills to disk.
MEMORY_LIMIT = "4GB"
_DDL = ("CREATE", "DROP", "ALTER", "MSCK", "SHOW", "DESCRIBE")


@dataclass
class Outcome:
    """What one statement did: its type, the result's columns and rows, and what it read."""

    statement_type: str
    columns: list[tuple[str, str]] = field(default_factory=list)  # (name, Athena type)
    rows: int = 0
    bytes_scanned: int = 0
    result_key: str = ""
    planning_ms: int = 0


def athena_type(duckdb_type: str) -> str:
    """Return the type name Athena reports for a DuckDB result type."""
    upper = duckdb_type.upper()
    simple = {"VARCHAR": "varchar", "BIGINT": "bigint", "INTEGER": "integer", "BOOLEAN": "boolean",
              "DOUBLE": "double", "FLOAT": "real", "REAL": "real", "DATE": "date", "SMALLINT": "smallint",
              "TINYINT": "tinyint", "HUGEINT": "decimal", "UBIGINT": "decimal", "TIMESTAMP": "timestamp",
              "TIMESTAMP WITH TIME ZONE": "timestamp with time zone", "UUID": "uuid", "BLOB": "varbinary"}
    if upper in simple:
        return simple[upper]
    if upper.startswith("DECIMAL"):
        return "decimal"
    if upper.startswith("TIMESTAMP"):
        return "timestamp"
    if upper.endswith("[]"):
        return "array"
    if upper.startswith("STRUCT"):
        return "row"
    if upper.startswith("MAP"):
        return "map"
    return upper.lower()


def _parse(text: str, dialect: str) -> exp.Expression:
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        line, column = first.get("line", 1), first.get("col", 1)
        raise QueryError("SYNTAX_ERROR", f"line {line}:{column}: {first.get('description') or error}") from None
    if len(statements) != 1:
        raise QueryError("SYNTAX_ERROR", "line 1:1: exactly one statement is allowed per query")
    statement = statements[0]
    if not isinstance(statement, exp.Expression):
        raise QueryError("SYNTAX_ERROR", "line 1:1: not a statement")
    return statement


def statement_type(text: str) -> str:
    """Return DDL, DML or UTILITY as Athena classifies the statement."""
    first = text.lstrip().split(None, 1)[0].upper() if text.strip() else ""
    if first in _DDL:
        return "DDL"
    if first in ("EXPLAIN", "PREPARE", "EXECUTE", "DEALLOCATE"):
        return "UTILITY"
    return "DML"


def run_statement(
    catalog: AthenaCatalog, text: str, database: str, output_url: str, execution_id: str,
) -> Outcome:
    """Run one statement and write its result under `output_url`; raise QueryError as Athena fails it."""
    kind = statement_type(text)
    started = time.monotonic()
    if kind == "DDL":
        # Hive DDL (EXTERNAL, ROW FORMAT, TBLPROPERTIES) and Trino views both parse in this dialect.
        statement = _parse(text, "athena")
        catalog.apply(statement, database, text)
        key = _write(output_url, f"{execution_id}.txt", b"")
        return Outcome("DDL", result_key=key, planning_ms=int((time.monotonic() - started) * 1000))
    statement = _parse(text, "athena")
    if not isinstance(statement, (exp.Query, exp.Select)):
        raise QueryError("NOT_SUPPORTED", f"{statement.key.upper()} statements are not supported here")
    return _run_query(catalog, statement, database, output_url, execution_id, started)


def _partition_literals(statement: exp.Expression) -> dict[str, set[str]]:
    """Return, per column compared only with string literals (= or IN), the literals: for pruning."""
    literals: dict[str, set[str]] = {}
    spoiled: set[str] = set()
    for column in statement.find_all(exp.Column):
        parent = column.parent
        name = column.name.lower()
        if isinstance(parent, exp.EQ):
            other = parent.expression if parent.this is column else parent.this
            if isinstance(other, exp.Literal) and other.is_string:
                literals.setdefault(name, set()).add(other.this)
                continue
        if isinstance(parent, exp.In) and parent.this is column and parent.expressions and all(
                isinstance(e, exp.Literal) and e.is_string for e in parent.expressions):
            literals.setdefault(name, set()).update(e.this for e in parent.expressions)
            continue
        spoiled.add(name)
    return {name: values for name, values in literals.items() if name not in spoiled}


class _Resolver:
    """Turns each table a query names into a DuckDB view, views of views included."""

    def __init__(self, catalog: AthenaCatalog, con: Any, workdir: Path, wanted: dict[str, set[str]]) -> None:
        self.catalog = catalog
        self.con = con
        self.workdir = workdir
        self.wanted = wanted
        self.views: dict[tuple[str, str], str] = {}
        self.bytes_scanned = 0

    def translate(self, statement: exp.Expression, database: str, depth: int = 0) -> str:
        if depth > 10:
            raise QueryError("VIEW_IS_RECURSIVE", "a view refers to itself")
        names = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
        for table in list(statement.find_all(exp.Table)):
            if not table.name or (not table.db and table.name.lower() in names):
                continue
            schema = (table.db or database).lower()
            view = self.view_for(schema, table.name.lower(), depth)
            alias = table.alias_or_name
            replacement = exp.Table(this=exp.to_identifier(view, quoted=True))
            replacement.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
            table.replace(replacement)
        return _trino_semantics(statement).sql(dialect="duckdb")

    def view_for(self, schema: str, name: str, depth: int) -> str:
        if (schema, name) in self.views:
            return self.views[(schema, name)]
        found = self.catalog.lookup(schema, name)
        view = f"t{len(self.views) + 1}_{schema}_{name}"
        self.views[(schema, name)] = view
        if isinstance(found, View):
            body = self.translate(_parse(found.query, "athena"), found.database, depth + 1)
            self.con.execute(f'CREATE OR REPLACE TEMP VIEW "{view}" AS {body}')
        else:
            assert isinstance(found, ExternalTable)
            self.bytes_scanned += tables.create_view(self.con, found, view, self.workdir, self.wanted)
        return view


def _trino_semantics(statement: exp.Expression) -> exp.Expression:
    """Rewrite the functions whose DuckDB namesake means something else than Trino's."""
    for call in list(statement.find_all(exp.Anonymous)):
        if str(call.this).lower() == "url_decode" and len(call.expressions) == 1:
            # Trino decodes form-encoding ('+' is a space); DuckDB's url_decode leaves '+' alone.
            argument = call.expressions[0].copy()
            spaced = exp.Anonymous(this="replace", expressions=[argument, exp.Literal.string("+"),
                                                                exp.Literal.string(" ")])
            call.replace(exp.Anonymous(this="url_decode", expressions=[spaced]))
    return statement


def _connect(workdir: Path) -> Any:
    import duckdb

    con = duckdb.connect(database=":memory:", config={"threads": 2, "memory_limit": MEMORY_LIMIT,
                                                       "temp_directory": str(workdir / "spill")})
    con.execute("SET TimeZone='UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def _run_query(
    catalog: AthenaCatalog, statement: exp.Expression, database: str, output_url: str, execution_id: str,
    started: float,
) -> Outcome:
    import duckdb

    workdir = Path(tempfile.mkdtemp(prefix="athena-"))
    try:
        con = _connect(workdir)
        resolver = _Resolver(catalog, con, workdir, _partition_literals(statement))
        sql = resolver.translate(statement, database)
        planned = time.monotonic()
        try:
            con.execute(f"CREATE TEMP TABLE __result AS {sql}")
            described = con.execute("DESCRIBE __result").fetchall()
            result = workdir / "result.csv"
            con.execute(f"COPY __result TO '{result}' (HEADER, FORCE_QUOTE *, DELIMITER ',', QUOTE '\"', "
                        "DATEFORMAT '%Y-%m-%d', TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S.%g')")
            rows = int(con.execute("SELECT count(*) FROM __result").fetchone()[0])
        except duckdb.Error as error:
            raise _as_query_error(error) from None
        finally:
            con.close()
        columns = [(str(row[0]), athena_type(str(row[1]))) for row in described]
        body = _header_quoted(result.read_bytes(), [name for name, _ in columns])
        key = _write(output_url, f"{execution_id}.csv", body)
        _write(output_url, f"{execution_id}.csv.metadata", json.dumps(
            {"columns": [{"name": n, "type": t} for n, t in columns]}).encode())
        return Outcome("DML", columns, rows, resolver.bytes_scanned, key, int((planned - started) * 1000))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _header_quoted(body: bytes, names: list[str]) -> bytes:
    """Return the CSV with its header row quoted as Athena writes it (DuckDB quotes only values)."""
    header = io.StringIO()
    csv.writer(header, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(names)
    newline = body.find(b"\n")
    rest = body[newline + 1:] if newline >= 0 else b""
    return header.getvalue().encode() + rest


_DUCKDB_ERRORS = (
    (re.compile(r"Catalog Error: Table .*does not exist", re.S), "TABLE_NOT_FOUND"),
    (re.compile(r"Referenced column .* not found|Binder Error: .*column", re.S | re.I), "COLUMN_NOT_FOUND"),
    (re.compile(r"Catalog Error: Scalar Function .* does not exist", re.S), "FUNCTION_NOT_FOUND"),
    (re.compile(r"Conversion Error|Invalid Input Error", re.S), "INVALID_CAST_ARGUMENT"),
    (re.compile(r"Out of Memory Error", re.S), "EXCEEDED_MEMORY_LIMIT"),
    (re.compile(r"Parser Error", re.S), "SYNTAX_ERROR"),
)


def _as_query_error(error: Exception) -> QueryError:
    text = str(error).strip()
    for pattern, name in _DUCKDB_ERRORS:
        if pattern.search(text):
            return QueryError(name, f"line 1:1: {text.splitlines()[0]}")
    return QueryError("GENERIC_INTERNAL_ERROR", text.splitlines()[0] if text else type(error).__name__)


def _write(output_url: str, name: str, body: bytes) -> str:
    """Write one result object under the output location and return its key."""
    bucket, prefix = tables.split_s3_url(output_url)
    key = (prefix if prefix.endswith("/") or not prefix else prefix + "/") + name
    owner = moto_state.bucket_owner(bucket)
    if owner is None:
        raise QueryError("PERMISSION_DENIED", f"Unable to verify/create output bucket {bucket}")
    moto_state.s3_backend(owner).put_object(bucket, key, body)
    return key
