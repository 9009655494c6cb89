"""A black-box scorer: a shell command that reads records on stdin and writes one line per record
on stdout. Records are streamed in by a thread while stdout is streamed into the part, so neither
side holds the whole task in memory and a full pipe can never deadlock."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping

from ..errors import ScoreError

_READ = 1024 * 1024


def run_command(
    command: str,
    chunks: Iterable[bytes | memoryview],
    env: Mapping[str, str],
    sink: Callable[[bytes, int], None],
) -> int:
    """Run ``command``, feed it ``chunks``, pass stdout to ``sink(data, line_count)`` in whole
    lines; return the number of lines. Raises ScoreError on a non-zero exit."""
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=sys.stderr.fileno(), env=dict(env),
    )
    assert proc.stdin is not None and proc.stdout is not None
    feed_error: list[BaseException] = []

    def feed() -> None:
        assert proc.stdin is not None
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
        except BrokenPipeError:
            pass  # the command stopped reading; its exit code and line count tell what happened
        except BaseException as err:
            feed_error.append(err)
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()

    feeder = threading.Thread(target=feed, name="feed-stdin", daemon=True)
    feeder.start()
    lines = 0
    tail = b""
    try:
        while block := proc.stdout.read1(_READ):  # type: ignore[attr-defined]
            data = tail + block
            cut = data.rfind(b"\n") + 1
            if cut:
                count = data.count(b"\n", 0, cut)
                sink(data[:cut], count)
                lines += count
            tail = data[cut:]
        if tail:  # a last line without a newline still counts as a line
            sink(tail + b"\n", 1)
            lines += 1
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feeder.join(timeout=5)
    if feed_error:
        raise feed_error[0]
    if code != 0:
        raise ScoreError(f"the scoring command exited with code {code}: {command}",
                         hint="Its stderr is in the task log above.")
    return lines
