"""Athena for the embedded backend: queries really run, on DuckDB, over the emulated S3.

moto's Athena stores query executions but runs nothing. Here `StartQueryExecution` parses the
statement as Athena's SQL (Trino for queries, Hive for DDL) with sqlglot; DDL changes this
emulator's catalog, queries are translated to DuckDB's SQL over the catalog's external tables,
whose S3 objects are read from moto's state into a temporary folder (no network, no httpfs), and
the result is written to the output location as `<QueryExecutionId>.csv` plus `.csv.metadata`.

    catalog     databases, external tables and views, as CREATE / DROP statements define them
    tables      an external table's files (plain, partitioned with projection, symlink manifests) as a DuckDB view
    engine      one statement from text to result: translate, run, write the result, count bytes scanned
    responses   the JSON API: Start/Get/Stop/List/BatchGet query executions, GetQueryResults
"""
