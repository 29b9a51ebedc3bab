#!/usr/bin/env python
"""Instructions the scoring operator executes per record: a cost that does not move with the host.

On our shared machines a wall-clock or CPU-time figure moves by up to 2× from one run to the
next (bench/HISTORY.md, twelfth session), so a change worth 5–20 % of the operator's Python
cannot be seen in it. The number of instructions the operator executes for the same input does
not move with the host. This runs ``bench/operator_cost.py`` under valgrind's callgrind, counts
only inside the compiled operator's calls (``ScoringOperator.process_batch``: decode, features,
scores, the label join, the state writes and every output, not Flink or the JVM), and reports
the instructions per record (without the probe's stand-in for the JVM's state writes, which
in the job are the JVM's work) and the functions that take most of them (inclusive):

    .venv/bin/python bench/operator_instructions.py --events 5000

To compare two commits, run it from each one's folder (each with its own ``make native``) with
the same arguments. It needs valgrind (Debian: ``apt-get install valgrind``), the compiled
scoring path (``make native``) and the stack's Redis (``operator_cost.py`` writes the feature
store, as the job does); the feature store's writer thread runs beside the operator and its
instructions are counted while the operator's call is running, so two runs differ by a few
tenths of a percent. Valgrind runs the operator about 50 times slower: about three minutes for
``--events 5000`` (20,000 records: ``operator_cost.py`` sends ``2 × --events`` events and as
many labels, the first half of each to warm the users' state, and all of them are counted).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The compiled operator's entry point as mypyc names it (its Python-callable wrapper).
ENTRY = "CPyPy_scoring___ScoringOperator___process_batch"
# operator_cost.py's stand-in for the JVM's state writes (it unpickles what Flink would store):
# counted inside the operator's calls, but in the job that work is the JVM's, so it is shown
# apart and left out of the per-record figure.
STAND_IN = "CPyDef_state_writes___PythonStateWrites___write"
# callgrind_annotate's inclusive line: "1,234,567 (12.34%)  file:function [object]".
_ANNOTATED = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+\S*?:(CPyDef_\w+)")
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def count(events: int, users: int, checkpoint_records: int, label_lag: int, output: Path) -> int:
    """Runs ``operator_cost.py`` under callgrind; the instructions counted in the operator."""
    command = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={output}",
        "--collect-atstart=no", f"--toggle-collect={ENTRY}",
        sys.executable, str(HERE / "operator_cost.py"), "--events", str(events),
        "--users", str(users), "--checkpoint-records", str(checkpoint_records),
        "--label-lag", str(label_lag),
    ]  # fmt: skip
    # Fixed string hashing: sets and dicts of strings then iterate in the same order each run.
    # LightGBM's own trees, not lleaves' (model/compiled_forest.py): LLVM compiling them under
    # valgrind ends in a segmentation fault (llvmlite 0.44.0, valgrind 3.19.0).
    env = {**os.environ, "PYTHONHASHSEED": "0", "STREAMSCORE_MODEL_COMPILE_TREES": "false"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = _COLLECTED.findall(done.stderr)
    if done.returncode != 0 or not found:
        sys.exit(f"valgrind failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    return int(found[-1])


def heaviest(output: Path, top: int) -> list[tuple[str, int]]:
    """The operator's compiled functions that take most instructions, callees included."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", str(output)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return compiled_functions(annotated, top)


def compiled_functions(annotated: str, top: int) -> list[tuple[str, int]]:
    """From ``callgrind_annotate --inclusive=yes``'s text: the ``top`` compiled functions
    (mypyc's ``CPyDef_`` symbols) by instructions, each once (its first, largest line)."""
    seen: dict[str, int] = {}
    for line in annotated.splitlines():
        match = _ANNOTATED.match(line)
        if match and match.group(2) not in seen:
            seen[match.group(2)] = int(match.group(1).replace(",", ""))
    return sorted(seen.items(), key=lambda item: -item[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument(
        "--checkpoint-records", type=int, default=5_000,
        help="a checkpoint barrier (the operator's write-out) after this many records",
    )  # fmt: skip
    parser.add_argument(
        "--label-lag", type=int, default=-1,
        help="operator_cost.py's --label-lag: each label this many events after its event "
        "(by default every label after all the events)",
    )  # fmt: skip
    parser.add_argument("--top", type=int, default=15, help="functions to list")
    parser.add_argument("--keep", type=Path, help="keep callgrind's output file here")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_annotate"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as scratch:
        output = args.keep or Path(scratch) / "callgrind.out"
        total = count(args.events, args.users, args.checkpoint_records, args.label_lag, output)
        if total == 0:
            sys.exit(f"no instruction counted in {ENTRY}: is the scoring path compiled?")
        functions = heaviest(output, 10_000)
    records = 4 * args.events
    stand_in = dict(functions).get(STAND_IN, 0)
    print(
        f"{total:,} instructions in the operator's calls for {2 * args.events:,} events and "
        f"{2 * args.events:,} labels ({args.users:,} users), of which {stand_in:,} in the "
        f"probe's stand-in for the JVM's state writes: {(total - stand_in) / records:,.0f} per "
        "record without them"
    )
    print("share  per record  function (callees included)")
    for name, instructions in functions[: args.top]:
        print(f"{instructions / total:5.1%}  {instructions / records:10,.0f}  {name}")


if __name__ == "__main__":
    main()
