#!/usr/bin/env python
"""How fast a Python build runs our kind of code when embedded, as a TaskManager embeds it.

In thread mode PyFlink runs the operators in the TaskManager's JVM through a *shared* libpython
(pemja links against it), so what matters for the job is the speed of that library, not of the
``python`` executable: a distribution's executable may be linked statically with profile-guided
optimisation (PGO) and LTO while its shared library is built without them. This script runs one
pure-Python workload (dict and list updates, bisect, floats: the shape of the feature engine's
per-event work) both ways for each interpreter given:

* in the executable itself;
* embedded: a ten-line C program linked against the interpreter's own shared libpython
  (``pythonX.Y-config --embed``), compiled here with ``gcc``, runs the same workload.

    .venv/bin/python bench/interpreter_speed.py /usr/bin/python3.11 .venv/bin/python

It prints the best of five runs for each; lower is faster.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

WORKLOAD = """
import bisect, math, time

def work(n):
    users, recent, acc = {}, [], 0.0
    for i in range(n):
        key = "u%d" % (i % 1000)
        slot = users.get(key)
        if slot is None:
            slot = users[key] = [0.0, 0, []]
        slot[0] += i * 0.5
        slot[1] += 1
        bisect.insort(slot[2], i % 97)
        if len(slot[2]) > 20:
            del slot[2][0]
        acc += math.log1p(slot[0]) / slot[1]
        recent.append((key, acc))
        if len(recent) > 1000:
            recent.clear()
    return acc

best = float("inf")
for _ in range(5):
    started = time.perf_counter()
    work(300_000)
    best = min(best, time.perf_counter() - started)
print(f"{best:.3f}")
"""

EMBEDDER = r"""
#include <Python.h>
int main(int argc, char **argv) {
    Py_Initialize();
    FILE *f = fopen(argv[1], "r");
    int failed = PyRun_SimpleFile(f, argv[1]);
    Py_Finalize();
    return failed;
}
"""


def _embedded_seconds(python: str, workdir: Path, script: Path) -> str:
    config = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'), "
         "sysconfig.get_config_var('LDVERSION'), sysconfig.get_paths()['include'])"],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    libdir, version, include = config
    source, binary = workdir / "embed.c", workdir / f"embed-{abs(hash(python))}"
    source.write_text(EMBEDDER)
    subprocess.run(
        ["gcc", "-O2", "-o", str(binary), str(source), f"-I{include}", f"-L{libdir}",
         f"-lpython{version}", f"-Wl,-rpath,{libdir}"],
        check=True,
    )  # fmt: skip
    return subprocess.run(
        [str(binary), str(script)], check=True, capture_output=True, text=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pythons", nargs="+", help="interpreter executables to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        script = workdir / "workload.py"
        script.write_text(WORKLOAD)
        print("| interpreter | executable, s | embedded (shared libpython), s | configure |")
        print("|---|---:|---:|---|")
        for python in args.pythons:
            direct = subprocess.run(
                [python, str(script)], check=True, capture_output=True, text=True
            ).stdout.strip()
            embedded = _embedded_seconds(python, workdir, script)
            flags = subprocess.run(
                [python, "-c", "import sysconfig; print(sysconfig.get_config_var('CONFIG_ARGS'))"],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            wanted = ("--enable-optimizations", "--with-lto", "--enable-shared")
            shown = " ".join(flag for flag in wanted if flag in flags) or "(none of PGO/LTO)"
            print(f"| `{shlex.quote(python)}` | {direct} | {embedded} | {shown} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
