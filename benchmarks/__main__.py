"""Run every benchmark in this folder, one after another: `python -m benchmarks`.

Each `bench_*.py` module's `main()` is called in turn (a module without one is run as `__main__`),
under a header naming it. The exit status is non-zero when any benchmark failed or reported failure.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import runpy
import sys
import time
import traceback
from pathlib import Path

__all__ = ["benchmark_modules", "main", "run_benchmark"]


def benchmark_modules() -> list[str]:
    """Return the importable names of every benchmark module, in file name order."""
    folder = Path(__file__).resolve().parent
    return [f"{__package__ or 'benchmarks'}.{path.stem}" for path in sorted(folder.glob("bench_*.py"))]


def run_benchmark(module_name: str) -> int:
    """Run one benchmark and return its exit status (0 when it succeeded)."""
    saved_argv = sys.argv
    # Benchmarks parse their own arguments; give them none of ours.
    sys.argv = [module_name]
    try:
        if _defines_main(module_name):
            status = importlib.import_module(module_name).main()
        else:
            # Importing first would run a script's top-level code twice.
            runpy.run_module(module_name, run_name="__main__", alter_sys=True)
            status = 0
    except SystemExit as stop:
        status = stop.code
    except Exception:  # one broken benchmark must not hide the others' figures
        traceback.print_exc()
        return 1
    finally:
        sys.argv = saved_argv
    if status is None:
        return 0
    return status if isinstance(status, int) else 1


def _defines_main(module_name: str) -> bool:
    """Return whether the module's source defines a top-level `main` function."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module_name)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def main() -> int:
    """Run every benchmark, print a header and the time each took; return 1 if any failed."""
    failed: list[str] = []
    for module_name in benchmark_modules():
        print(f"\n=== {module_name} ===", flush=True)
        started = time.perf_counter()
        status = run_benchmark(module_name)
        seconds = time.perf_counter() - started
        outcome = "ok" if status == 0 else f"FAILED (status {status})"
        print(f"--- {module_name}: {outcome} in {seconds:,.1f} s", flush=True)
        if status != 0:
            failed.append(module_name)
    if failed:
        print(f"\nfailed benchmarks: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
