"""The job's JVM batch operators on a real (local) Flink: every record reaches Python once,
under its own user's key, never behind a watermark it came before; outputs come back whole.

``batch_job.py`` runs the job; this checks what it wrote. It fails if ``RecordBatcher`` held a
batch across a watermark (records would see a watermark at or past their own timestamp), lost
the last batch at the end of input, did not announce the end of input (``announce_barriers``)
under a user of its own, if the key switch left state or timers on another user, or if the
state written in one call through ``StateWrites`` is not what PyFlink's state API reads back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections import Counter, defaultdict
from pathlib import Path

from tests.e2e.batch_job import BATCH_RECORDS, RECORDS, USERS

ROOT = Path(__file__).resolve().parents[2]


def test_batches_keep_every_record_its_key_and_its_watermark(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    env = dict(os.environ)
    # The embedded interpreter of the local TaskManager imports from the venv and this checkout.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])
    result = subprocess.run(
        [sys.executable, "-m", "tests.e2e.batch_job", str(out), str(tmp_path / "jars")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = json.loads(out.read_text())

    records = [(key, json.loads(value)) for topic, key, value in rows if topic == "events"]
    assert len(records) == RECORDS  # nothing lost, nothing twice (the last batch included)
    assert len({offset for _, (_, _, _, offset) in records}) == RECORDS

    # Each user's state counted its own records 1, 2, ..., n: the key switch kept users apart.
    seen: dict[str, list[int]] = defaultdict(list)
    for key, (n, _, _, _) in records:
        seen[key].append(n)
    assert len(seen) == USERS
    per_user = Counter(i % USERS for i in range(RECORDS))
    for key, counts in seen.items():
        assert sorted(counts) == list(range(1, per_user[int(key.split("-")[1])] + 1)), key

    # Monotonous timestamps: no record may see a watermark at or past its own timestamp, which
    # it would if a batch were held back while the watermark went on.
    behind = [(key, ts, wm) for key, (_, ts, wm, _) in records if ts <= wm]
    assert not behind, behind[:5]

    # Timers fired under their own user's key, after all of that user's records.
    timers = {key: int(value) for topic, key, value in rows if topic == "timer"}
    assert timers == {key: len(counts) for key, counts in seen.items()}
    # What the JVM's StateWrites wrote, a batch at a time, is what PyFlink's state API reads
    # (the counts above) and what its walk of the map gives back: one entry per record, under
    # the record's own user. A cleared value reads as absent.
    offsets: dict[str, list[list[int]]] = defaultdict(list)
    for key, (n, _, _, offset) in records:
        offsets[key].append([n, offset])
    entries = {key: json.loads(value) for topic, key, value in rows if topic == "entries"}
    assert entries == {key: sorted(pairs) for key, pairs in offsets.items()}
    cleared = {value for topic, _, value in rows if topic == "cleared"}
    assert cleared == {"None"}

    # Records were batched, and no batch was larger than asked.
    sizes = [int(value) for topic, _, value in rows if topic == "batch"]
    assert sum(sizes) == RECORDS
    assert max(sizes) <= BATCH_RECORDS
    assert len(sizes) < RECORDS / 2

    # Each subtask announced the end of input, after its last batch, under one of its users.
    announced = [key for topic, key, _ in rows if topic == "announced"]
    assert len(announced) >= 2 and set(announced) <= set(seen)
