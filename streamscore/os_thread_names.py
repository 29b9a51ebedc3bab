"""Names of our background threads as the operating system shows them (``top -H``, ``ps -L``).

Python 3.11 does not give its threads an operating-system name: a thread keeps the name of the
thread that started it. In a TaskManager the scoring task thread is named after its vertex
(``decode-features``, cut to 15 characters), so the feature store's writer and the metrics
endpoint started from it looked like more scoring threads, and the endpoint, when the learner's
task in an earlier job of the same TaskManager started it, like the learner. A person reading
``top -H`` for where the CPU goes, and the test that checks which threads run at a real-time
priority (job/thread_priority.py), need to tell them apart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# Linux keeps 15 bytes of a thread's name (TASK_COMM_LEN 16, with the terminating zero).
MAX_NAME_BYTES = 15


def name_os_thread(thread: threading.Thread, name: str) -> None:
    """Give a started thread of this process its operating-system name (cut to 15 bytes).

    Best effort: where the kernel has no such file (not Linux) or refuses, the thread keeps the
    name it inherited, which only makes ``top -H`` harder to read."""
    if thread.native_id is None:
        return
    comm = Path(f"/proc/self/task/{thread.native_id}/comm")
    try:
        comm.write_bytes(name.encode()[:MAX_NAME_BYTES])
    except OSError as error:
        log.debug("thread %s keeps its inherited name: %s", thread.name, error)


def threads_named(prefixes: Sequence[str]) -> list[int]:
    """The kernel ids of this process's threads whose name starts with one of ``prefixes``
    (the JVM's too, in a TaskManager: see job/thread_priority.py)."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue  # it ended meanwhile
        if name.startswith(tuple(prefixes)):
            found.append(int(task.name))
    return found
