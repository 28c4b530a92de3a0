"""Keep Python's cycle collector off the backend's stored state while a bulk phase writes to it.

The embedded backend holds every stored version as moto objects in this process: a million-version
drill keeps tens of millions of them alive, none of them garbage. Python's collector scans its
oldest generation again each time it has grown by a quarter, so a phase that writes a million
replicas (or seeds a million versions) paid for several full scans of the whole store, a second or
more per hundred thousand versions, for nothing: the time went to the collector, not to S3's work.

A bulk phase (seeding a vault, a Batch Operations job's manifest, tasks and report) runs inside
`bulk_phase()`: the collector pauses while it runs, and what is alive when the last such phase ends
(the store it wrote included) is moved out of the collector's sight with `gc.freeze()`, so later
phases do not scan it either. Memory is still freed as usual: reference counting releases every
object that is no longer used, frozen or not, so a deleted version or bucket goes away at once;
only reference cycles that became garbage in between wait, and they wait until `release()`,
which a backend reset calls, so a process that resets its backend gets all of its memory back.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["bulk_phase", "release"]

_lock = threading.Lock()
_running = 0  # bulk phases running now, in any thread
_paused = False  # whether this module turned the collector off (it leaves a collector someone else disabled alone)


@contextmanager
def bulk_phase() -> Iterator[None]:
    """Pause the cycle collector while the block writes stored state, then keep that state out of later scans."""
    global _running, _paused
    with _lock:
        if _running == 0 and gc.isenabled():
            gc.disable()
            _paused = True
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0:
                gc.collect(0)  # what the phase left as cyclic garbage is young: free it before freezing
                gc.freeze()
                if _paused:
                    gc.enable()
                    _paused = False


def release() -> None:
    """Give everything frozen back to the collector and collect it: the backend's state was just dropped."""
    with _lock:
        if _running:
            return  # a phase still writes: its end freezes, the next reset releases
        gc.unfreeze()
    gc.collect()
