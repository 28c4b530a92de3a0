"""The emulated Athena catalog: databases, external tables and views of one account and Region.

Statements are parsed with sqlglot (Athena dialect). Supported: CREATE DATABASE / SCHEMA,
DROP DATABASE, CREATE EXTERNAL TABLE (Parquet, ORC, and CSV or delimited text, each plain or
partitioned, read directly or through SymlinkTextInputFormat manifests, with partition projection
of type date, integer or enum), DROP TABLE, CREATE [OR REPLACE] VIEW, DROP VIEW. Table properties
are kept as written; `tables` reads them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlglot import exp

from runbook_lib.errors import BackendError

__all__ = ["AthenaCatalog", "Column", "ExternalTable", "QueryError", "View"]


class QueryError(BackendError):
    """A statement Athena would fail: its error type name and message, as Athena reports them."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True)
class Column:
    """One declared column: its name (lower case, as the Glue catalog keeps it) and type in DuckDB's words."""

    name: str
    duckdb_type: str


@dataclass(frozen=True)
class ExternalTable:
    """An external table: its columns, where its files are, how they are laid out and read."""

    database: str
    name: str
    columns: tuple[Column, ...]
    partitions: tuple[Column, ...]
    location: str
    storage: str  # parquet, orc, csv or text
    symlink: bool
    serde_properties: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class View:
    """A view: its query in Athena's SQL, translated again each time it is used."""

    database: str
    name: str
    query: str


_PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
_ORC_SERDE = "org.apache.hadoop.hive.ql.io.orc.OrcSerde"
_OPEN_CSV_SERDE = "org.apache.hadoop.hive.serde2.OpenCSVSerde"
_SYMLINK = "org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat"


class AthenaCatalog:
    """Databases, tables and views of one account and Region; safe to use from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.databases: set[str] = {"default"}
        self.tables: dict[tuple[str, str], ExternalTable | View] = {}

    def lookup(self, database: str, name: str) -> ExternalTable | View:
        """Return a table or view, or raise Athena's TABLE_NOT_FOUND."""
        with self._lock:
            found = self.tables.get((database.lower(), name.lower()))
        if found is None:
            raise QueryError("TABLE_NOT_FOUND",
                             f"line 1:1: Table 'awsdatacatalog.{database.lower()}.{name.lower()}' does not exist")
        return found

    def apply(self, statement: exp.Expression, database: str, text: str) -> None:
        """Apply a DDL statement to the catalog, or raise QueryError as Athena would fail it."""
        if isinstance(statement, exp.Create):
            kind = str(statement.args.get("kind") or "").upper()
            if kind in ("DATABASE", "SCHEMA"):
                self._create_database(statement)
            elif kind == "TABLE":
                self._create_table(statement, database)
            elif kind == "VIEW":
                self._create_view(statement, database, text)
            else:
                raise QueryError("NOT_SUPPORTED", f"CREATE {kind} is not supported here")
        elif isinstance(statement, exp.Drop):
            self._drop(statement, database)
        else:
            raise QueryError("NOT_SUPPORTED", f"{statement.key.upper()} statements are not supported here")

    # ------------------------------------------------------------------ statements

    def _create_database(self, statement: exp.Create) -> None:
        name = statement.this.name.lower() if isinstance(statement.this, exp.Expression) else str(statement.this)
        with self._lock:
            if name in self.databases and not statement.args.get("exists"):
                raise QueryError("ALREADY_EXISTS", f"Database {name} already exists.")
            self.databases.add(name)

    def _qualified(self, table: exp.Table, database: str) -> tuple[str, str]:
        schema = (table.db or database).lower()
        with self._lock:
            known = schema in self.databases
        if not known:
            raise QueryError("SCHEMA_NOT_FOUND", f"line 1:1: Schema '{schema}' does not exist")
        return schema, table.name.lower()

    def _create_table(self, statement: exp.Create, database: str) -> None:
        schema_node = statement.this
        if not isinstance(schema_node, exp.Schema) or not isinstance(schema_node.this, exp.Table):
            raise QueryError("SYNTAX_ERROR", "CREATE TABLE needs a table name and its columns")
        properties = statement.args.get("properties")
        found = list(properties.expressions) if properties is not None else []
        if not any(isinstance(p, exp.ExternalProperty) for p in found):
            raise QueryError("NOT_SUPPORTED", "only CREATE EXTERNAL TABLE is supported here (no CTAS)")
        schema, name = self._qualified(schema_node.this, database)
        columns = tuple(_column(c) for c in schema_node.expressions if isinstance(c, exp.ColumnDef))
        partitions: tuple[Column, ...] = ()
        location = ""
        serde = ""
        serde_properties: dict[str, str] = {}
        storage = "text"
        symlink = False
        table_properties: dict[str, str] = {}
        for item in found:
            if isinstance(item, exp.PartitionedByProperty):
                partitions = tuple(_column(c) for c in item.this.expressions if isinstance(c, exp.ColumnDef))
            elif isinstance(item, exp.LocationProperty):
                location = item.this.name
            elif isinstance(item, exp.RowFormatSerdeProperty):
                serde = item.this.name
                nested = item.args.get("serde_properties")
                if nested is not None:
                    serde_properties = {p.this.name: p.args["value"].name for p in nested.expressions}
            elif isinstance(item, exp.FileFormatProperty):
                if isinstance(item.this, exp.InputOutputFormat):
                    input_format = item.this.args["input_format"].name
                    symlink = input_format == _SYMLINK
                    storage = _storage_of_input(input_format)
                else:
                    storage = item.this.name.lower()
            elif type(item) is exp.Property and item.args.get("value") is not None:
                table_properties[item.this.name] = item.args["value"].name
        if serde == _PARQUET_SERDE:
            storage = "parquet"
        elif serde == _ORC_SERDE:
            storage = "orc"
        elif serde == _OPEN_CSV_SERDE:
            storage = "csv"
        elif storage == "textfile":
            storage = "text"
        if storage not in ("parquet", "orc", "csv", "text"):
            raise QueryError("NOT_SUPPORTED", f"table storage {storage!r} is not supported here")
        if not location.startswith("s3://"):
            raise QueryError("INVALID_TABLE_PROPERTY", f"LOCATION must be an s3:// URL, not {location!r}")
        table = ExternalTable(schema, name, columns, partitions, location, storage, symlink,
                              serde_properties, table_properties)
        with self._lock:
            if (schema, name) in self.tables and not statement.args.get("exists"):
                raise QueryError("ALREADY_EXISTS", f"Table {schema}.{name} already exists.")
            self.tables.setdefault((schema, name), table)

    def _create_view(self, statement: exp.Create, database: str, text: str) -> None:
        target = statement.this
        if not isinstance(target, exp.Table) or statement.expression is None:
            raise QueryError("SYNTAX_ERROR", "CREATE VIEW needs a name and a query")
        schema, name = self._qualified(target, database)
        view = View(schema, name, statement.expression.sql(dialect="athena"))
        with self._lock:
            if (schema, name) in self.tables and not statement.args.get("replace"):
                raise QueryError("ALREADY_EXISTS", f"View {schema}.{name} already exists.")
            self.tables[(schema, name)] = view

    def _drop(self, statement: exp.Drop, database: str) -> None:
        kind = str(statement.args.get("kind") or "").upper()
        exists = bool(statement.args.get("exists"))
        targets = list(statement.args.get("tables") or [statement.this])
        if kind in ("DATABASE", "SCHEMA"):
            name = targets[0].name.lower()
            with self._lock:
                if name not in self.databases and not exists:
                    raise QueryError("SCHEMA_NOT_FOUND", f"Database {name} does not exist.")
                if any(key[0] == name for key in self.tables) and not statement.args.get("cascade"):
                    raise QueryError("SCHEMA_NOT_EMPTY", f"Database {name} is not empty.")
                self.databases.discard(name)
                for key in [k for k in self.tables if k[0] == name]:
                    del self.tables[key]
            return
        if kind not in ("TABLE", "VIEW"):
            raise QueryError("NOT_SUPPORTED", f"DROP {kind} is not supported here")
        for target in targets:
            key = ((target.db or database).lower(), target.name.lower())
            with self._lock:
                if key not in self.tables:
                    if exists:
                        continue
                    raise QueryError("TABLE_NOT_FOUND", f"Table {key[0]}.{key[1]} does not exist.")
                del self.tables[key]


def _column(definition: exp.ColumnDef) -> Column:
    kind = definition.args.get("kind")
    duckdb_type = kind.sql(dialect="duckdb") if isinstance(kind, exp.DataType) else "VARCHAR"
    return Column(definition.name.lower(), duckdb_type)


def _storage_of_input(input_format: str) -> str:
    lowered = input_format.lower()
    if "parquet" in lowered:
        return "parquet"
    if "orc" in lowered:
        return "orc"
    return "text"  # TextInputFormat, or SymlinkTextInputFormat whose data format the SerDe names
