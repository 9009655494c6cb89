"""``python -m serverless_score.runner``: the entrypoint of every worker and container.

It reads its work order from ``SERVERLESS_SCORE_WORK`` (or a file named by ``--work FILE``), runs
the tasks one after another (the model is loaded once), and prints a marker line per task so a
group log can be split. A failing task does not stop the ones after it: the controller retries
only what failed. Exit code: 0 if every task succeeded, 1 otherwise, 2 for a bad work order.
"""

from __future__ import annotations

import os
import sys
import time
import traceback

from ..errors import ScoreError
from .contract import ENV_WORK, MARKER, WorkOrder


def _load_order(argv: list[str]) -> WorkOrder:
    if len(argv) == 2 and argv[0] == "--work":
        with open(argv[1], encoding="utf-8") as f:
            return WorkOrder.from_json(f.read())
    text = os.environ.get(ENV_WORK)
    if not text:
        raise SystemExit(f"runner: no work order: set {ENV_WORK} or pass --work FILE")
    return WorkOrder.from_json(text)


def main(argv: list[str] | None = None) -> int:
    try:
        work = _load_order(sys.argv[1:] if argv is None else argv)
    except (ValueError, TypeError, KeyError) as err:
        print(f"runner: malformed work order: {err}", file=sys.stderr)
        return 2
    if work.runtime == "r" and work.model and "://" not in work.model:
        # R and the model load (about a second) while this process imports what it needs.
        from .r_scorer import SESSIONS

        SESSIONS.start(work, work.model)
    from .execute import run_task

    failed = 0
    for order in work.orders:
        task_id = order.task.id
        print(f"{MARKER} {task_id} start attempt={order.attempt} {order.task.describe()}", flush=True)
        started = time.monotonic()
        try:
            result = run_task(work, order)
        except ScoreError as err:
            failed += 1
            hint = f" ({err.hint})" if err.hint else ""
            kind = "failed" if err.retryable else "failed-permanently"
            print(f"{MARKER} {task_id} {kind}: {err.message}{hint}", flush=True)
        except Exception as err:
            failed += 1
            traceback.print_exc()
            print(f"{MARKER} {task_id} failed: {type(err).__name__}: {err}", flush=True)
        else:
            print(f"{MARKER} {task_id} ok records_in={result.records_in} "
                  f"records_out={result.records_out} seconds={time.monotonic() - started:.2f}",
                  flush=True)
        sys.stderr.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
