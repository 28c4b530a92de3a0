"""Athena's query API (JSON 1.1, `X-Amz-Target: AmazonAthena.<Operation>`) over the emulated catalog.

The backend's middleware sends the operations in `OPERATIONS` here and every other Athena call
(work groups, data catalogs, named queries) to moto. Each account and Region has its own catalog
and executions. Queries run one at a time, in the order started, in a worker thread: a query is
QUEUED, then RUNNING, then SUCCEEDED, FAILED or CANCELLED, as `GetQueryExecution` reports.

Choices where Athena's behaviour is not documented (UNCONFIRMED), each a design decision:

| topic | what the emulator does |
|---|---|
| AthenaError.ErrorType | 1000 for every failure; ErrorCategory 2 (user) except 1 (system) for GENERIC_INTERNAL_ERROR |
| StateChangeReason | `<ERROR_NAME>: <message>`, the message starting `line L:C:` where the position is known |
| statistics | DataScannedInBytes: sizes of the files read (Athena counts only the columns read); times in ms |
| permissions | not checked: every caller may query every table and write to any existing output bucket |
| query string limit | 262,144 bytes, as the API model's MaxLength |
"""

from __future__ import annotations

import base64
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from runbook_lib.embedded import moto_state
from runbook_lib.embedded.athena.catalog import AthenaCatalog, QueryError
from runbook_lib.embedded.athena.engine import Outcome, run_statement, statement_type
from runbook_lib.embedded.athena.urls import TARGET_PREFIX

__all__ = ["AthenaApp"]

_CREDENTIAL = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/")
_MAX_QUERY_BYTES = 262_144
_MAX_RESULTS = 1000


class AthenaApiError(Exception):
    """An API error answered with HTTP 400 and Athena's JSON error shape."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Execution:
    """One query execution and everything GetQueryExecution reports about it."""

    id: str
    query: str
    database: str
    catalog: str
    workgroup: str
    output: str
    submitted: float
    state: str = "QUEUED"
    started: float | None = None
    completed: float | None = None
    reason: str = ""
    error: QueryError | None = None
    outcome: Outcome | None = None
    kind: str = "DML"
    cancel: threading.Event = field(default_factory=threading.Event)
    results: list[list[str | None]] | None = None

    def describe(self) -> dict[str, Any]:
        """Return the QueryExecution structure."""
        status: dict[str, Any] = {"State": self.state, "SubmissionDateTime": self.submitted}
        if self.completed is not None:
            status["CompletionDateTime"] = self.completed
        if self.reason:
            status["StateChangeReason"] = self.reason
        if self.error is not None:
            system = self.error.error_type == "GENERIC_INTERNAL_ERROR"
            status["AthenaError"] = {"ErrorCategory": 1 if system else 2, "ErrorType": 1000,
                                     "Retryable": False, "ErrorMessage": self.reason}
        queued = ((self.started or time.time()) - self.submitted) * 1000
        engine = ((self.completed or time.time()) - (self.started or time.time())) * 1000 if self.started else 0
        outcome = self.outcome
        statistics = {
            "EngineExecutionTimeInMillis": int(engine),
            "DataScannedInBytes": outcome.bytes_scanned if outcome else 0,
            "TotalExecutionTimeInMillis": int(queued + engine),
            "QueryQueueTimeInMillis": int(queued),
            "QueryPlanningTimeInMillis": outcome.planning_ms if outcome else 0,
            "ServicePreProcessingTimeInMillis": 0,
            "ServiceProcessingTimeInMillis": 1 if self.completed else 0,
            "ResultReuseInformation": {"ReusedPreviousResult": False},
        }
        result: dict[str, Any] = {
            "QueryExecutionId": self.id, "Query": self.query, "StatementType": self.kind,
            "ResultConfiguration": {"OutputLocation": self.output_location()},
            "ResultReuseConfiguration": {"ResultReuseByAgeConfiguration": {"Enabled": False}},
            "QueryExecutionContext": {"Database": self.database, "Catalog": self.catalog},
            "Status": status, "Statistics": statistics, "WorkGroup": self.workgroup,
            "EngineVersion": {"SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Athena engine version 3"},
        }
        return result

    def output_location(self) -> str:
        """Return where the result object is (or will be)."""
        suffix = ".txt" if self.kind == "DDL" else ".csv"
        return self.output.rstrip("/") + "/" + self.id + suffix


class _Region:
    """One account's Athena in one Region: its catalog, executions, and the worker running them."""

    def __init__(self) -> None:
        self.catalog = AthenaCatalog()
        self.executions: dict[str, Execution] = {}
        self.queue: queue.SimpleQueue[Execution] = queue.SimpleQueue()
        self.worker = threading.Thread(target=self._work, name="embedded-athena", daemon=True)
        self.worker.start()

    def _work(self) -> None:
        while True:
            execution = self.queue.get()
            if execution.cancel.is_set():
                continue
            execution.started = time.time()
            execution.state = "RUNNING"
            try:
                execution.outcome = run_statement(self.catalog, execution.query, execution.database,
                                                  execution.output, execution.id)
                execution.state = "CANCELLED" if execution.cancel.is_set() else "SUCCEEDED"
            except QueryError as error:
                # Kept without its traceback: its frames would keep the query's DuckDB objects alive.
                execution.error = QueryError(error.error_type, error.message)
                execution.reason = f"{error.error_type}: {error.message}"
                execution.state = "FAILED"
            except Exception as error:  # an emulator defect is reported as Athena's internal error
                execution.error = QueryError("GENERIC_INTERNAL_ERROR", str(error))
                execution.reason = f"GENERIC_INTERNAL_ERROR: {error}"
                execution.state = "FAILED"
            execution.completed = time.time()


class AthenaApp:
    """WSGI app answering Athena's query calls; moto answers the rest."""

    def __init__(self) -> None:
        self._regions: dict[tuple[str, str], _Region] = {}
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[_Region, str, str, dict[str, Any]], dict[str, Any]]] = {
            "StartQueryExecution": self._start,
            "GetQueryExecution": self._get,
            "GetQueryResults": self._results,
            "StopQueryExecution": self._stop,
            "ListQueryExecutions": self._list,
            "BatchGetQueryExecution": self._batch_get,
        }

    def forget_all(self) -> None:
        """Forget every catalog and execution, as moto forgets everything on a reset."""
        with self._lock:
            self._regions.clear()

    def region(self, account: str, region: str) -> _Region:
        """Return the Athena of an account in a Region, made on first use."""
        with self._lock:
            if (account, region) not in self._regions:
                self._regions[(account, region)] = _Region()
            return self._regions[(account, region)]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        operation = str(environ.get("HTTP_X_AMZ_TARGET", ""))[len(TARGET_PREFIX):]
        credential = _CREDENTIAL.search(request.headers.get("Authorization", ""))
        account = moto_state.access_key_account(credential.group("key")) if credential else "123456789012"
        region_name = credential.group("region") if credential else "us-east-1"
        try:
            body = json.loads(request.get_data() or b"{}")
            answer = self._handlers[operation](self.region(account, region_name), account, region_name, body)
            response = Response(json.dumps(answer), status=200, content_type="application/x-amz-json-1.1")
        except AthenaApiError as error:
            response = Response(json.dumps({"__type": error.code, "Message": error.message}), status=400,
                                content_type="application/x-amz-json-1.1")
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return response(environ, start_response)

    # ------------------------------------------------------------------ operations

    @staticmethod
    def _workgroup(account: str, region: str, name: str) -> dict[str, Any]:
        from moto.athena.models import athena_backends

        found = athena_backends[account][region].get_work_group(name)
        if found is None:
            raise AthenaApiError("InvalidRequestException", f"WorkGroup {name} is not found.")
        return dict(found)

    def _start(self, athena: _Region, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
        query = str(body.get("QueryString") or "")
        if not query.strip() or len(query.encode()) > _MAX_QUERY_BYTES:
            raise AthenaApiError("InvalidRequestException",
                                 f"QueryString must be 1 to {_MAX_QUERY_BYTES} bytes long")
        workgroup_name = str(body.get("WorkGroup") or "primary")
        workgroup = self._workgroup(account, region, workgroup_name)
        configuration = workgroup.get("Configuration") or {}
        from_workgroup = (configuration.get("ResultConfiguration") or {}).get("OutputLocation")
        from_call = (body.get("ResultConfiguration") or {}).get("OutputLocation")
        enforced = configuration.get("EnforceWorkGroupConfiguration", True)
        output = (from_workgroup if enforced and from_workgroup else from_call or from_workgroup) or ""
        if not output:
            raise AthenaApiError(
                "InvalidRequestException",
                "No output location provided. An output location is required either through the Workgroup result "
                "configuration setting or as an API input.")
        if not str(output).startswith("s3://"):
            raise AthenaApiError("InvalidRequestException", f"OutputLocation must be an s3:// URL, not {output}")
        context = body.get("QueryExecutionContext") or {}
        execution = Execution(
            id=str(uuid.uuid4()), query=query, database=str(context.get("Database") or "default").lower(),
            catalog=str(context.get("Catalog") or "AwsDataCatalog"), workgroup=workgroup_name, output=str(output),
            submitted=time.time(), kind=statement_type(query),
        )
        athena.executions[execution.id] = execution
        athena.queue.put(execution)
        return {"QueryExecutionId": execution.id}

    @staticmethod
    def _find(athena: _Region, execution_id: Any) -> Execution:
        found = athena.executions.get(str(execution_id or ""))
        if found is None:
            raise AthenaApiError("InvalidRequestException", f"QueryExecution {execution_id} was not found")
        return found

    def _get(self, athena: _Region, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"QueryExecution": self._find(athena, body.get("QueryExecutionId")).describe()}

    def _batch_get(self, athena: _Region, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
        found, missing = [], []
        for execution_id in body.get("QueryExecutionIds") or []:
            execution = athena.executions.get(str(execution_id))
            if execution is None:
                missing.append({"QueryExecutionId": execution_id, "ErrorCode": "INVALID_INPUT",
                                "ErrorMessage": "QueryExecution was not found"})
            else:
                found.append(execution.describe())
        return {"QueryExecutions": found, "UnprocessedQueryExecutionIds": missing}

    def _list(self, athena: _Region, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
        workgroup = str(body.get("WorkGroup") or "primary")
        newest_first = sorted((e for e in athena.executions.values() if e.workgroup == workgroup),
                              key=lambda e: e.submitted, reverse=True)
        start = _offset(body.get("NextToken"))
        size = min(int(body.get("MaxResults") or 50), 50)
        page = [e.id for e in newest_first[start:start + size]]
        answer: dict[str, Any] = {"QueryExecutionIds": page}
        if start + size < len(newest_first):
            answer["NextToken"] = _token(start + size)
        return answer

    def _stop(self, athena: _Region, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
        execution = self._find(athena, body.get("QueryExecutionId"))
        if execution.state in ("QUEUED", "RUNNING"):
            execution.cancel.set()
            if execution.state == "QUEUED":
                execution.state = "CANCELLED"
                execution.completed = time.time()
        return {}

    def _results(self, athena: _Region, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
        execution = self._find(athena, body.get("QueryExecutionId"))
        if execution.state in ("QUEUED", "RUNNING"):
            raise AthenaApiError("InvalidRequestException",
                                 f"Query has not yet finished. Current state: {execution.state}")
        if execution.state != "SUCCEEDED" or execution.outcome is None:
            raise AthenaApiError("InvalidRequestException",
                                 f"Query did not finish successfully. Final query state: {execution.state}")
        size = int(body.get("MaxResults") or _MAX_RESULTS)
        if not 1 <= size <= _MAX_RESULTS:
            raise AthenaApiError("InvalidRequestException", f"MaxResults must be between 1 and {_MAX_RESULTS}")
        rows = self._rows(execution)
        start = _offset(body.get("NextToken"))
        page = rows[start:start + size]
        columns = execution.outcome.columns
        answer: dict[str, Any] = {
            "UpdateCount": 0,
            "ResultSet": {
                "Rows": [{"Data": [{} if value is None else {"VarCharValue": value} for value in row]} for row in page],
                "ResultSetMetadata": {"ColumnInfo": [
                    {"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": name, "Label": name,
                     "Type": kind, "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN",
                     "CaseSensitive": kind == "varchar"}
                    for name, kind in columns]},
            },
        }
        if start + size < len(rows):
            answer["NextToken"] = _token(start + size)
        return answer

    @staticmethod
    def _rows(execution: Execution) -> list[list[str | None]]:
        """Return the result's rows as Athena pages them: the header row first, values as text (None for NULL)."""
        if execution.results is not None:
            return execution.results
        outcome = execution.outcome
        assert outcome is not None
        if outcome.statement_type == "DDL":
            execution.results = []
            return []
        bucket, _, _ = execution.output[5:].partition("/")
        stored = moto_state.find_bucket(bucket)
        version = stored.keys.get(outcome.result_key) if stored is not None else None
        if version is None:
            raise AthenaApiError("InvalidRequestException",
                                 f"the result object s3://{bucket}/{outcome.result_key} no longer exists")
        rows = _parse_result_csv(bytes(version.value).decode())
        execution.results = rows
        return rows


def _parse_result_csv(text: str) -> list[list[str | None]]:
    """Return the rows of a result CSV; an unquoted empty field is NULL, a quoted one is text."""
    rows: list[list[str | None]] = []
    row: list[str | None] = []
    value: list[str] = []
    quoted = in_quotes = False
    index = 0
    while index < len(text):
        char = text[index]
        if in_quotes:
            if char == '"' and text[index + 1:index + 2] == '"':
                value.append('"')
                index += 1
            elif char == '"':
                in_quotes = False
            else:
                value.append(char)
        elif char == '"':
            in_quotes = quoted = True
        elif char in ",\n":
            row.append("".join(value) if quoted or value else None)
            value, quoted = [], False
            if char == "\n":
                rows.append(row)
                row = []
        elif char != "\r":
            value.append(char)
        index += 1
    if value or quoted or row:
        row.append("".join(value) if quoted or value else None)
        rows.append(row)
    return rows


def _token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: Any) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.b64decode(str(token)))["offset"])
    except (ValueError, KeyError, TypeError):
        raise AthenaApiError("InvalidRequestException", "NextToken is not valid") from None
