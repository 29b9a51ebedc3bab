"""Our background threads carry their own names where the operating system shows them."""

from __future__ import annotations

import threading
from pathlib import Path

from streamscore.os_thread_names import name_os_thread


def _comm(thread: threading.Thread) -> str:
    return Path(f"/proc/self/task/{thread.native_id}/comm").read_text().strip()


def test_a_started_thread_takes_the_name_cut_to_what_linux_keeps() -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait, daemon=True)
    thread.start()
    try:
        inherited = _comm(thread)
        name_os_thread(thread, "a-name-longer-than-fifteen")
        assert _comm(thread) == "a-name-longer-t" != inherited
    finally:
        release.set()
        thread.join()


def test_a_thread_that_has_ended_is_left_alone() -> None:
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    name_os_thread(thread, "gone")  # its /proc entry is gone: no error
