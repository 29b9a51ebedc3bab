"""The bench's per-thread scheduler split: which thread bounds a drain, and whether it waited for
a CPU or for something else. Read from a /proc tree written here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import process_cost  # noqa: E402 (bench/ is a folder of scripts, not a package)


def _proc(root: Path, pid: int, threads: dict[str, tuple[str, int, int]]) -> None:
    for tid, (name, on_cpu, waiting) in threads.items():
        task = root / str(pid) / "task" / tid
        task.mkdir(parents=True, exist_ok=True)
        (task / "comm").write_text(name + "\n")
        (task / "schedstat").write_text(f"{on_cpu} {waiting} 17\n")


def test_the_busiest_threads_and_how_they_spent_the_drain(tmp_path: Path) -> None:
    second = 1_000_000_000
    before, after = tmp_path / "before", tmp_path / "after"
    _proc(before, 10, {"11": ("decode-features", 5 * second, 1 * second),
                       "12": ("Source: KafkaSo", 1 * second, 0)})  # fmt: skip
    _proc(before, 20, {"21": ("kafka-request-h", 0, 0)})
    _proc(after, 10, {"11": ("decode-features", 12 * second, 3 * second),
                      "12": ("Source: KafkaSo", 2 * second, 0),
                      "13": ("new-thread", second // 2, 0)})  # fmt: skip
    _proc(after, 20, {"21": ("kafka-request-h", 3 * second, second // 2)})
    processes = {"flink-taskmanager-0": 10, "kafka": 20, "gone": 30}
    rows = process_cost.busiest_threads(
        process_cost.thread_times(processes, before),
        process_cost.thread_times(processes, after),
        wall_s=10.0,
        top=3,
    )
    assert rows == [
        {"process": "flink-taskmanager-0", "thread": "decode-features", "on_cpu": 0.7,
         "waiting_for_cpu": 0.2, "asleep": 0.1},
        {"process": "kafka", "thread": "kafka-request-h", "on_cpu": 0.3,
         "waiting_for_cpu": 0.05, "asleep": 0.65},
        {"process": "flink-taskmanager-0", "thread": "Source: KafkaSo", "on_cpu": 0.1,
         "waiting_for_cpu": 0.0, "asleep": 0.9},
    ]  # fmt: skip


def test_a_thread_started_during_the_drain_counts_from_zero(tmp_path: Path) -> None:
    _proc(tmp_path, 10, {"13": ("new-thread", 2_000_000_000, 0)})
    rows = process_cost.busiest_threads({}, process_cost.thread_times({"tm": 10}, tmp_path), 4.0)
    assert rows == [{"process": "tm", "thread": "new-thread", "on_cpu": 0.5,
                     "waiting_for_cpu": 0.0, "asleep": 0.5}]  # fmt: skip


def test_children_of_the_servers_are_found_by_parent_and_named_after_it(tmp_path: Path) -> None:
    def stat(pid: int, name: str, parent: int) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({name}) S {parent} 1 1 0 -1\n")

    stat(100, "java", 1)
    stat(200, "redis-rewrite", 100)  # a process the server started
    stat(300, "a (b) c", 100)  # a name with parentheses and spaces
    stat(400, "python", 2)  # someone else's
    (tmp_path / "self").mkdir()
    found = process_cost.children_of({100: "flink-taskmanager-2", 999: "kafka"}, tmp_path)
    assert found == {
        "flink-taskmanager-2/redis-rewrite": 200,
        "flink-taskmanager-2/a (b) c": 300,
    }
