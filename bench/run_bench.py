#!/usr/bin/env python
"""Benchmark of a running streamscore stack: the command line (see bench/README.md).

This file only parses the arguments and wires the parts together. It is run as a script, so
bench/ is ``sys.path[0]`` and the parts are plain top-level modules; the spawned child processes
get the parent's ``sys.path`` and import them the same way.

* ``orchestrate``: the measurements (backlog drain, rate steps) and their order;
* ``systems``: the systems under test (the scoring job per delivery guarantee, the pass-through,
  the hand-written script of ``handwritten``);
* ``load``: the events offered; ``collect``: the outputs received; ``topics``: the run's topics;
* ``report``: figures, ratios, the JSON document and the Markdown table;
* ``environment``: machine, versions, git, command line, model and stale-code checks;
* ``host_speed``: how fast the shared host ran (a fixed CPU gauge, the box's CPU shares).

The stack's ports and paths come from ``Settings()`` (STREAMSCORE_* variables, ``--set``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamscore.config import DeliveryGuarantee, add_set_argument, settings_from

from environment import ensure_model, stale_code
from host_speed import HostSpeed
from orchestrate import Bench
from report import finish_report, markdown, new_report, write_report
from systems import FlinkSystem, HandwrittenSystem, PassthroughSystem, System

log = logging.getLogger("bench")
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with ``rates`` and ``modes`` already split into lists."""
    parser = argparse.ArgumentParser(
        description="Throughput and latency of a running streamscore stack, against a "
        "pass-through baseline. Stack settings come from STREAMSCORE_* / --set."
    )
    parser.add_argument(
        "--events",
        type=int,
        default=300_000,
        help="backlog size for the drain measurement (0: skip it)",
    )
    parser.add_argument(
        "--rates",
        default="1000,5000,10000",
        help="offered rates in events/s, comma-separated ('' : skip)",
    )
    parser.add_argument(
        "--backlog-rate",
        type=float,
        default=None,
        help="the backlog's spacing in event time, events/s (default: the highest of --rates, "
        "or 1000 without rate steps). The shorter the backlog's span of event time against the "
        "labels' delays, the more of its labels come after its last event, whose work the "
        "drain's rate leaves out (the report gives their share): compare drains at one spacing",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each rate step")
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="seconds at the start of each step left out of the figures",
    )
    parser.add_argument(
        "--modes",
        default="exactly-once,at-least-once",
        help="delivery guarantees to measure, comma-separated",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the pass-through")
    parser.add_argument(
        "--no-script",
        action="store_true",
        help="skip the hand-written script (bench/handwritten.py: what a user could run instead "
        "of the job, measured on the same box)",
    )
    parser.add_argument(
        "--no-labels",
        action="store_true",
        help="send no labels (default: a label per event, so the job also joins labels to "
        "predictions and runs the online challenger; compare to see what that costs)",
    )
    parser.add_argument(
        "--label-delay-ms",
        type=int,
        default=2000,
        help="in the rate steps, each event's label is sent this long after the event (the "
        "backlog's labels have produce's own delays)",
    )
    parser.add_argument("--users", type=int, default=2000, help="distinct users in the load")
    parser.add_argument(
        "--seed",
        type=int,
        default=0x5EED00,
        help="first generator seed (each backlog/step uses the next one)",
    )
    parser.add_argument(
        "--passthrough-batch",
        type=int,
        default=1000,
        help="max records per consume() call of the pass-through",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=1800.0,
        help="max seconds to wait for all outputs of a backlog or a step",
    )
    add_set_argument(parser)  # also passed to the job
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON result file (default bench/results/bench-<time>-<run>.json)",
    )
    parser.add_argument(
        "--keep-topics",
        action="store_true",
        help="keep the bench-<run>-* topics instead of deleting them",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    args.modes = [DeliveryGuarantee(m.strip()) for m in args.modes.split(",") if m.strip()]
    if args.backlog_rate is None:
        args.backlog_rate = max(args.rates or [1000.0])
    elif args.backlog_rate <= 0:
        parser.error("--backlog-rate must be positive")
    if args.seconds <= args.warmup and args.rates:
        parser.error("--seconds must be longer than --warmup")
    if args.label_delay_ms < 0:
        parser.error("--label-delay-ms must not be negative")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Check the stack, measure every system, write the JSON, print the table. Exit status 0;
    1 if a measurement failed or was interrupted; 2 if the stack is not running."""
    args = parse_args(argv)
    # SIGTERM (e.g. from `timeout`) cleans up like Ctrl-C: job cancelled, topics deleted.
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    s = settings_from(args.overrides)

    from streamscore.stack import stack as stack_module

    down = [c.name for c in stack_module.status(s) if not c.running]
    if down:
        log.error(
            "stack not running (%s down): run `streamscore stack up` with the same settings",
            ", ".join(down),
        )
        return 2
    model_version = ensure_model(s, args.overrides)
    stale = stale_code(s)
    if stale:
        log.warning("%s", stale)
    run = uuid.uuid4().hex[:6]
    started = datetime.now(UTC)
    report = new_report(args, s, run, started, model_version)
    bench = Bench(args, s)
    if stale:
        bench.notes.append(stale)
    systems: list[System] = []
    if not args.no_baseline:
        systems.append(PassthroughSystem(s, run, bench.ctx, args.passthrough_batch))
    if not args.no_script:
        systems.append(HandwrittenSystem(s, run, bench.ctx, model_version))
    systems += [FlinkSystem(s, run, mode, args.overrides) for mode in args.modes]
    host = HostSpeed()
    host.start()
    failed = bench.run(systems, report["systems"])
    report["host"] = host.stop()
    finish_report(report, bench.notes)
    output = args.output or RESULTS_DIR / f"bench-{started:%Y%m%dT%H%M%SZ}-{run}.json"
    write_report(report, output)
    print(markdown(report))
    print(f"\nresults: {output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
