"""The executed notebook of a phase run in JupyterLab, written into the run folder by the phase's own kernel.

Headless runs keep the executed notebooks papermill writes. In JupyterLab the outputs live in the
page, which saves them when it sees fit (and takes output that arrives during a save as saved),
so a kernel cannot count on the notebook file to hold what it showed. It keeps its own record
instead: every message it publishes for an execution (streams, displays and their updates,
results, errors), and after each cell it writes the phase's notebook with those outputs to the
run folder's `notebooks/`, where headless runs keep theirs. `evidence.html` is built from there.

Each cell shows its latest execution. A cell this kernel did not run keeps the outputs it has in
the notebook file as last saved (an earlier kernel's, say); code it ran that no cell of the saved
file holds is added at the end.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook_lib.ledger import EXECUTED_NOTEBOOKS

__all__ = ["Execution", "KernelRecord", "record_phase"]

# Set by the Jupyter server for a kernel it starts for a notebook: the notebook's path.
SESSION_NAME_ENV = "JPY_SESSION_NAME"
_OUTPUT_TYPES = {"stream", "display_data", "execute_result", "error"}


@dataclass
class Execution:
    """One execution of a cell: its code, its execution count and the outputs it published (nbformat v4).

    `seen` is False for an execution that ran before the record began: its outputs are not known.
    """

    code: str
    execution_count: int | None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    seen: bool = True
    clear_before_next: bool = False


def _parent_id(parent: Any) -> str | None:
    """Return the msg_id of a message's parent, given a whole message or a header."""
    if not isinstance(parent, dict):
        return None
    header = parent.get("header", parent)
    msg_id = header.get("msg_id") if isinstance(header, dict) else None
    return str(msg_id) if msg_id else None


def _as_output(msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    """Return the nbformat output of a published message."""
    if msg_type == "stream":
        return {"output_type": "stream", "name": content.get("name", "stdout"), "text": content.get("text", "")}
    if msg_type == "error":
        return {"output_type": "error", "ename": content.get("ename", ""), "evalue": content.get("evalue", ""),
                "traceback": list(content.get("traceback", []))}
    output: dict[str, Any] = {"output_type": msg_type, "data": dict(content.get("data", {})),
                              "metadata": dict(content.get("metadata", {}))}
    if msg_type == "execute_result":
        output["execution_count"] = content.get("execution_count")
    return output


class KernelRecord:
    """What one kernel published, execution by execution, and the phase notebook it writes from it."""

    def __init__(self, target: Path, source: Path) -> None:
        self.target = target
        self.source = source
        self.executions: dict[str, Execution] = {}
        self._display_ids: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def begin(self, msg_id: str, code: str, execution_count: int | None, seen: bool = True) -> None:
        """Start recording an execution (its execute_input); `seen=False` for one that ran before the record began."""
        with self._lock:
            self.executions[msg_id] = Execution(code, execution_count, seen=seen)

    def published(self, msg_type: str, content: dict[str, Any], parent_id: str | None) -> None:
        """Record one message the kernel published on behalf of the execution `parent_id`."""
        with self._lock:
            if msg_type == "execute_input" and parent_id:
                self.executions[parent_id] = Execution(str(content.get("code", "")), content.get("execution_count"))
                return
            if msg_type == "update_display_data":
                self._update_display(content)
                return
            execution = self.executions.get(parent_id or "")
            if execution is None:
                return  # output of something this record did not see start (a comm, another kernel's request)
            if msg_type == "clear_output":
                if content.get("wait"):
                    execution.clear_before_next = True
                else:
                    execution.outputs.clear()
                return
            if msg_type not in _OUTPUT_TYPES:
                return
            if execution.clear_before_next:
                execution.outputs.clear()
                execution.clear_before_next = False
            self._append(execution, msg_type, content)

    def _append(self, execution: Execution, msg_type: str, content: dict[str, Any]) -> None:
        output = _as_output(msg_type, content)
        last = execution.outputs[-1] if execution.outputs else None
        if output["output_type"] == "stream" and last and last["output_type"] == "stream" \
                and last["name"] == output["name"]:
            last["text"] += output["text"]  # as nbformat keeps a stream: one output per run of writes
            return
        execution.outputs.append(output)
        display_id = content.get("transient", {}).get("display_id")
        if display_id:
            self._display_ids.setdefault(str(display_id), []).append(output)

    def _update_display(self, content: dict[str, Any]) -> None:
        for output in self._display_ids.get(str(content.get("transient", {}).get("display_id")), []):
            output["data"] = dict(content.get("data", {}))
            output["metadata"] = dict(content.get("metadata", {}))

    def notebook(self) -> dict[str, Any]:
        """Return the phase notebook as saved, with the outputs of every cell this kernel ran."""
        with self._lock:
            executions = list(self.executions.values())
        document = json.loads(self.source.read_text(encoding="utf-8"))
        latest: dict[str, Execution] = {}
        for execution in executions:
            latest[execution.code.strip()] = execution
        in_file: set[str] = set()
        for cell in document.get("cells", []):
            if cell.get("cell_type") != "code":
                continue
            source = "".join(cell.get("source", [])).strip()
            in_file.add(source)
            found = latest.get(source)
            if found is not None:
                if found.seen:
                    cell["outputs"] = [dict(output) for output in found.outputs]
                cell["execution_count"] = found.execution_count
        for execution in latest.values():
            if execution.code.strip() not in in_file and execution.code.strip():
                document.setdefault("cells", []).append({
                    "cell_type": "code", "execution_count": execution.execution_count,
                    "id": f"run-{execution.execution_count}", "outputs": [dict(o) for o in execution.outputs],
                    "metadata": {"runbook": "run in this kernel, not in the notebook as saved"},
                    "source": execution.code})
        return dict(document)

    def write(self) -> Path:
        """Write the phase's executed notebook into the run folder (atomically) and return its path."""
        self.target.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.target.with_name(f".{self.target.name}.tmp")
        temporary.write_text(json.dumps(self.notebook(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        temporary.replace(self.target)
        return self.target


def _wrap_send(send: Callable[..., Any], record: Callable[[], KernelRecord | None]) -> Callable[..., Any]:
    """Return Session.send, recording what it publishes into the kernel's current record first."""

    def recording_send(stream: Any, msg_or_type: Any, content: Any = None, parent: Any = None,
                       *args: Any, **kwargs: Any) -> Any:
        current = record()
        if current is not None:
            if isinstance(msg_or_type, dict):
                msg_type = msg_or_type.get("header", {}).get("msg_type", msg_or_type.get("msg_type", ""))
                current.published(str(msg_type), msg_or_type.get("content", {}),
                                  _parent_id(msg_or_type.get("parent_header")))
            else:
                current.published(str(msg_or_type), content or {}, _parent_id(parent))
        return send(stream, msg_or_type, content, parent, *args, **kwargs)

    return recording_send


class _KernelHooks:
    """The one set of hooks a kernel gets: Session.send wrapped, and a write after each cell."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.record: KernelRecord | None = None
        sessions = {id(s): s for s in (shell.kernel.session, getattr(shell.display_pub, "session", None),
                                       getattr(shell.displayhook, "session", None)) if s is not None}
        for session in sessions.values():
            session.send = _wrap_send(session.send, lambda: self.record)
        shell.events.register("post_run_cell", self.after_cell)

    def after_cell(self, _: Any = None) -> None:
        """Write the record once the cell's last output has left the kernel."""
        if self.record is None:
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # an OutStream sends what it holds before this returns
        try:
            self.record.write()
        except OSError as error:
            print(f"the executed notebook could not be written to {self.record.target}: {error}", file=sys.stderr)


_hooks: _KernelHooks | None = None


def _current_execution(shell: Any) -> tuple[str | None, str, int, list[tuple[str, int]]]:
    """Return the msg_id, code and count of the execution running now, and the code and count of each earlier one."""
    parent = shell.kernel.get_parent("shell") if hasattr(shell.kernel, "get_parent") else None
    code = str(parent.get("content", {}).get("code", "")) if isinstance(parent, dict) else ""
    history = list(shell.user_ns.get("In", []))
    current = len(history) - 1  # IPython has entered the running cell into its history already
    earlier = [(str(source), count) for count, source in enumerate(history) if 0 < count < current]
    return _parent_id(parent), code, current, earlier


def record_phase(run_dir: str | Path, phase: str, template: Path) -> KernelRecord | None:
    """Record this kernel's executions as the phase's executed notebook in the run folder; None outside a kernel.

    The notebook the kernel serves (the Jupyter server names it) gives the cells; `template`,
    the committed phase notebook, stands in when the kernel was started without one. Opening the
    same phase again in the same kernel goes on with the same record.
    """
    global _hooks
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the kernel
        return None
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return None
    target = Path(run_dir).resolve() / EXECUTED_NOTEBOOKS / f"{phase}.ipynb"
    if _hooks is not None and _hooks.record is not None and _hooks.record.target == target:
        return _hooks.record
    served = Path(os.environ.get(SESSION_NAME_ENV, ""))
    source = served if served.suffix == ".ipynb" and served.is_file() else template
    record = KernelRecord(target, source)
    msg_id, code, current, earlier = _current_execution(shell)
    for code_before, execution_count in earlier:
        record.begin(f"earlier-{execution_count}", code_before, execution_count, seen=False)
    if msg_id:
        record.begin(msg_id, code, current)
    if _hooks is None:
        _hooks = _KernelHooks(shell)
    _hooks.record = record
    return record
