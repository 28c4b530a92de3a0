"""Phase kernels started one phase ahead, so a headless run does not wait for each kernel to start.

Each phase runs in a fresh kernel, as it would in JupyterLab. Starting a kernel and importing
`runbook_lib` (pandas, pyarrow, boto3) takes about two seconds, paid once per phase: a drill of
nine phases spent some 15 s only on that. `KernelsAhead` starts the next phase's kernel while the
current phase runs and has it import the runbook's modules (silently: nothing is recorded in the
notebook, and its execution counts still start at 1). The notebook itself still runs every cell,
its imports included, in a kernel no other phase has used.

nbclient does not stop the channels of the client it makes for a kernel it was handed, so each
kernel keeps the clients made for it and `release` stops them with the kernel.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

__all__ = ["KernelsAhead", "PhaseKernel"]

# What the next kernel imports while it waits: the module every phase notebook starts with.
_WARM_UP = "import runbook_lib.guide"
# How long a phase waits for its kernel's warm-up before handing it to papermill anyway (papermill
# then waits for the kernel itself, as it does for one it starts).
_READY_SECONDS = 60.0


class PhaseKernel(AsyncKernelManager):
    """A kernel manager that keeps every client it makes, so that they are closed with the kernel."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clients_made: list[Any] = []
        self.warm_up_id: str | None = None  # the warm-up request's message id, until its answer came

    def client(self, **kwargs: Any) -> Any:
        """Return a new client of this kernel (nbclient asks for one), kept to be closed later."""
        made = super().client(**kwargs)
        self.clients_made.append(made)
        return made


class KernelsAhead:
    """Hands out started kernels for the phases of a run, starting each next one ahead of time.

    Use as a context manager: kernels handed out are shut down by `release`, and a kernel started
    for a phase that never came is shut down on exit. The kernels are the asynchronous kind
    nbclient makes for itself; their calls run on the thread's event loop, as papermill's do.
    """

    def __init__(self, extra_arguments: list[str], cwd: Path) -> None:
        self._arguments = [*extra_arguments, "--HistoryManager.hist_file=:memory:"]
        self._cwd = cwd
        self._next: PhaseKernel | None = None  # the kernel started for the phase to come

    def __enter__(self) -> KernelsAhead:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._next is not None:
            self.release(self._next)
            self._next = None

    def take(self, another_follows: bool) -> PhaseKernel:
        """Return a started kernel manager for this phase; start the next phase's kernel when one follows."""
        return run_sync(self._take)(another_follows)

    def release(self, manager: PhaseKernel) -> None:
        """Shut down a kernel handed out (its phase is over) and close every client made for it."""
        run_sync(self._release)(manager)

    async def _take(self, another_follows: bool) -> PhaseKernel:
        manager = await self._start() if self._next is None else self._next
        self._next = await self._start() if another_follows else None
        await self._warmed(manager)
        return manager

    async def _release(self, manager: PhaseKernel) -> None:
        try:
            if manager.context.closed:
                # nbclient could not reach the kernel (it died, or did not answer in time) and has already
                # stopped it and closed its sockets: a shutdown request cannot be sent; only make sure.
                if await manager.is_alive():
                    await manager.shutdown_kernel(now=True)
            elif manager.has_kernel:
                await manager.shutdown_kernel()
        finally:
            for client in manager.clients_made:
                if client.channels_running:
                    client.stop_channels()

    async def _warmed(self, manager: PhaseKernel) -> None:
        """Wait until the kernel has answered its warm-up (at once when it started a phase ago), then let go of it.

        nbclient then finds an idle kernel, and no answer of the warm-up is in flight when the
        kernel is shut down.
        """
        client, sent = manager.clients_made[0], manager.warm_up_id
        try:
            deadline = time.monotonic() + _READY_SECONDS
            while time.monotonic() < deadline:
                try:
                    answer = await client.get_shell_msg(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                except queue.Empty:
                    if not await manager.is_alive():
                        return  # it died warming up: papermill finds it dead and says so
                    continue
                if answer.get("parent_header", {}).get("msg_id") == sent:
                    return
        finally:
            manager.warm_up_id = None
            client.stop_channels()

    async def _start(self) -> PhaseKernel:
        """Start a kernel and send it the warm-up import; return without waiting for either."""
        manager = PhaseKernel(kernel_name="python3")
        await manager.start_kernel(extra_arguments=self._arguments, cwd=str(self._cwd))
        client = manager.client()  # the first of clients_made: the warm-up's
        client.start_channels()
        manager.warm_up_id = client.execute(_WARM_UP, silent=True, store_history=False)
        return manager
