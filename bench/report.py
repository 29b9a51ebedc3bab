"""The results: figures from raw arrival times, the JSON document, and the Markdown table.

The measurements hand over raw receive and ingest times; this module turns them into latency
percentiles and output rates, puts every system's figures next to the pass-through baseline
measured in the same session (ratios), and writes the run down twice: the complete JSON document
under bench/results/ and the short Markdown table printed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streamscore import native
from streamscore.config import Settings
from streamscore.job import SCORING_OPERATOR

from environment import command_line, git_info, machine_info, versions
from load import backlog_label_delays
from systems import HANDWRITTEN, PASSTHROUGH


# --- figures ----------------------------------------------------------------------------------
def percentiles(values: np.ndarray) -> dict[str, float | None]:
    """p50/p95/p99, mean and max; all None when nothing was measured."""
    if values.size == 0:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(values.mean()),
        "max": float(values.max()),
    }


def latency_by_second(
    ingest_ms: np.ndarray, latency_ms: np.ndarray, start_s: float
) -> list[list[float | None]]:
    """Per second of ingest time from ``start_s``: [second, events, p50, p99, max] of the
    latency (ms). Shows whether a high p99 is a steady cost or periodic stalls (a checkpoint,
    a timer burst, a collection), and at what interval."""
    if latency_ms.size == 0:
        return []
    second = np.floor(ingest_ms / 1000.0 - start_s).astype(np.int64)
    return [_latency_row(int(s), latency_ms[second == s]) for s in np.unique(second)]


def _latency_row(key: int, values: np.ndarray) -> list[float | None]:
    """[key, events, p50, p99, max] of ``values`` (ms); the figures None without any."""
    if values.size == 0:
        return [key, 0, None, None, None]
    p50, p99 = np.percentile(values, [50, 99])
    return [key, int(values.size), round(float(p50), 1), round(float(p99), 1),
            round(float(values.max()), 1)]  # fmt: skip


def latency_by_checkpoint_phase(
    ingest_ms: np.ndarray,
    latency_ms: np.ndarray,
    triggers_ms: Sequence[float],
    interval_ms: float,
    bins: int = 10,
) -> list[list[float | None]]:
    """The latency by where in the checkpoint interval each record entered the job: per
    ``bins``-th of the interval since the last trigger before its ingest time, [phase start
    (ms), events, p50, p99, max] (ms; None for a bin without records, so that each row stays in
    its place). Records from before the first trigger are left out; a record after a late
    trigger counts in the last bin. ``latency_by_second`` shows that a p99
    is periodic; this shows what part of the interval it comes from (the write-ahead stretch
    before a barrier, the barrier itself, what follows it), from absolute trigger times."""
    triggers = np.sort(np.asarray(triggers_ms, dtype=np.float64))
    if latency_ms.size == 0 or triggers.size == 0 or interval_ms <= 0:
        return []
    last = np.searchsorted(triggers, ingest_ms, side="right") - 1
    inside = last >= 0
    phase = ingest_ms[inside] - triggers[last[inside]]
    width = interval_ms / bins
    index = np.minimum((phase // width).astype(np.int64), bins - 1)
    values_inside = latency_ms[inside]
    return [_latency_row(round(b * width), values_inside[index == b]) for b in range(bins)]


def window_rate(times: np.ndarray, start: float, end: float, min_span_s: float) -> float | None:
    """Outputs per second received in [start, end], measured between the first and the last
    arrival inside it, so bursty output (exactly-once commits once per checkpoint) is counted
    whole bursts over whole intervals; None if those arrivals are under ``min_span_s`` apart."""
    inside = np.sort(times[(times >= start) & (times <= end)])
    if inside.size < 2 or inside[-1] - inside[0] < min_span_s:
        return None
    return float((inside > inside[0]).sum() / (inside[-1] - inside[0]))


def kept_up(
    complete: bool, offered: float, output_rate: float | None, scored_rate: float | None
) -> bool | None:
    """Whether a step's system kept up with the offered rate: every output arrived, at 95 % of
    the offered rate or more. ``scored_rate`` (outputs per second by the time each was scored,
    inside the same window), when given, decides instead of the arrivals: read-committed output
    arrives once per commit, and whether a commit falls just inside or just outside the window
    moved the arrivals' rate by a fifth either way (0.91x and 1.16x of the offered rate in two
    runs that both kept up: bench/HISTORY.md, thirty-third session). None without a rate."""
    rate = scored_rate if scored_rate is not None else output_rate
    if rate is None:
        return None
    return bool(complete and rate >= 0.95 * offered)


def is_job(name: str) -> bool:
    """Whether a system of the report is the scoring job (not a baseline it is compared to)."""
    return name not in (PASSTHROUGH, HANDWRITTEN)


def add_script_ratios(report: dict[str, Any]) -> None:
    """Each job's drain relative to the hand-written script's in the same run (``vs_script``):
    the comparison the throughput issue asks for, a user's alternative on the same box."""
    script = (report["systems"].get(HANDWRITTEN) or {}).get("drain") or {}
    base = script.get("throughput")
    for name, system in report["systems"].items():
        drain = system.get("drain")
        if is_job(name) and drain and drain.get("throughput") and base:
            drain["vs_script"] = {"throughput": drain["throughput"] / base}


def add_ratios(report: dict[str, Any]) -> None:
    """Each system's figures relative to the pass-through's at the same rate (``vs_baseline``):
    absolute figures depend on the machine, the ratios much less."""
    add_script_ratios(report)
    base = report["systems"].get(PASSTHROUGH)
    if base is None:
        return
    base_drain = (base.get("drain") or {}).get("throughput")
    base_steps = {st["offered_rate"]: st for st in base.get("steps", [])}
    for name, system in report["systems"].items():
        if name == PASSTHROUGH:
            continue
        drain = system.get("drain")
        if drain and drain.get("throughput") and base_drain:
            drain["vs_baseline"] = {"throughput": drain["throughput"] / base_drain}
        for st in system.get("steps", []):
            b = base_steps.get(st["offered_rate"])
            if b is None:
                continue
            ratios: dict[str, float | None] = {}
            for key in ("input_rate", "output_rate"):
                ratios[key] = st[key] / b[key] if st[key] and b[key] else None
            for key in ("p50", "p95", "p99"):
                v, w = st["latency_ms"][key], b["latency_ms"][key]
                ratios[f"latency_{key}"] = v / w if v is not None and w else None
            st["vs_baseline"] = ratios


# --- the JSON document ------------------------------------------------------------------------
def new_report(
    args: argparse.Namespace, s: Settings, run: str, started: datetime, model_version: str
) -> dict[str, Any]:
    """The run's document before any measurement: parameters, settings and the environment
    (the load average at start is sampled here). The measurements fill ``systems``."""
    return {
        "run_id": run,
        "started_at": started.isoformat(timespec="seconds"),
        "command": command_line(),
        "argv": sys.argv,
        "parameters": {
            "events": args.events,
            "backlog_rate": args.backlog_rate,
            "rates": args.rates,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "modes": [m.value for m in args.modes],
            "baseline": not args.no_baseline,
            # Labels go to the job only (the pass-through reads none).
            "labels": not args.no_labels,
            "label_delay_ms": args.label_delay_ms if not args.no_labels else None,
            "backlog_label_delays": backlog_label_delays() if not args.no_labels else None,
            "users": args.users,
            "first_seed": args.seed,
            "passthrough_batch": args.passthrough_batch,
            "handwritten_script": not args.no_script,
            "set": args.overrides,
        },
        "settings": s.as_dict(),
        "model_version": model_version,
        # This process's; the TaskManagers decide the same from the environment `stack up` had.
        "scoring_path": native.mode,
        "git": git_info(),
        "machine": machine_info(),
        "versions": versions(),
        "systems": {},
        "notes": [],
    }


def finish_report(report: dict[str, Any], notes: list[str]) -> None:
    """Complete the document after the measurements: notes, end time and load, ratios, and
    each job's totals (labels sent, outcomes, dead letters)."""
    report["notes"] = notes
    for name, system in report["systems"].items():
        if is_job(name):
            system["totals"] = system_totals(system)
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["machine"]["load_average_at_end"] = os.getloadavg()
    add_ratios(report)


def write_report(report: dict[str, Any], output: Path) -> None:
    """The complete record of the run, for later comparison (the table shows only a summary)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=json_default) + "\n")


def json_default(value: Any) -> Any:
    """numpy scalars and paths, which ``json`` cannot write by itself."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")


# --- the Markdown table -----------------------------------------------------------------------
def fmt(value: float | None, digits: int = 0) -> str:
    """A figure for people: thousands separators, and a dash when there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _spacing(p: dict[str, Any]) -> str:
    """The backlog's event-time spacing, for the drain table's title (reports written before
    the option existed spaced it at the highest rate, or 1,000/s without rate steps)."""
    rate = p.get("backlog_rate")
    return f" spaced at {rate:,g}/s of event time" if rate else ""


def labels_summary(p: dict[str, Any]) -> str:
    """How the job got labels, in a few words for the table's header."""
    if not p.get("labels"):
        return "labels off"
    backlog = p.get("backlog_label_delays") or {}
    median_s = backlog.get("median_ms", 0) / 1000
    return (
        f"labels on (backlog: produce's delays, median {median_s:g} s; rate steps: "
        f"{p['label_delay_ms']:g} ms after each event)"
    )


def system_totals(system: dict[str, Any]) -> dict[str, Any]:
    """Labels sent to a system over the run, and its outcomes and dead letters at the end
    (topic sizes read when it stopped, else at its last measurement)."""
    parts = [system.get("drain"), *system.get("steps", [])]
    parts = [part for part in parts if part]
    labels = sum((part.get("labels") or 0) + (part.get("labels_sent") or 0) for part in parts)
    last = (system.get("info") or {}).get("final") or (parts[-1].get("system") if parts else None)
    last = last or {}
    return {
        "labels_sent": labels,
        "outcomes": last.get("outcomes"),
        "dead_letters": last.get("dead_letters"),
        "control_records": last.get("control_records"),
    }


def _count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}×)"


def _cost_lines(systems: dict[str, Any]) -> list[str]:
    """Per system, each process's CPU µs per output event and peak RSS while draining."""
    lines: list[str] = []
    for name, system in systems.items():
        cost = (system.get("drain") or {}).get("process_cost")
        if not cost:
            continue
        state = ((system.get("drain") or {}).get("system") or {}).get("state_size_bytes")
        lines += [
            f"CPU while draining, {name}: **{fmt(cost['total_us_per_event'])} µs per event** "
            f"in all ({cost['total_cpu_seconds']:g} CPU s over {cost['wall_seconds']:g} s)"
            + (f"; checkpointed state {state / 2**20:,.0f} MiB" if state else "")
            + _box_summary(cost.get("box")),
            "",
            "| process | µs/event | cores | peak RSS MiB |",
            "|---|---:|---:|---:|",
        ]
        for process, row in cost["processes"].items():
            if "us_per_event" not in row:
                lines.append(f"| {process} | – | – | – |")
                continue
            lines.append(
                f"| {process} | {fmt(row['us_per_event'])} | {row['cores']:.2f} | "
                f"{row['peak_rss_mib']:,} |"
            )
        lines.append("")
        lines += _observer_lines(cost.get("observers"))
        lines += _thread_lines(cost.get("threads"))
    return lines


def _observer_lines(observers: dict[str, Any] | None) -> list[str]:
    """What the bench's own collectors took of the same box while the system drained: not in the
    total above, but not free for the system either."""
    if not observers:
        return []
    parts = [
        f"{name} {fmt(row['us_per_event'])} µs per event ({row['cores']:.2f} cores)"
        for name, row in observers.items()
    ]
    return ["The bench's own processes meanwhile, not counted above: " + "; ".join(parts) + ".", ""]


def _thread_lines(threads: list[dict[str, Any]] | None) -> list[str]:
    """The busiest threads while draining, and how they spent the drain
    (``process_cost.busiest_threads``)."""
    if not threads:
        return []
    lines = [
        "| busiest threads | process | on a CPU | waiting for a CPU | asleep |",
        "|---|---|---:|---:|---:|",
    ]
    for row in threads:
        lines.append(
            f"| {row['thread']} | {row['process']} | {row['on_cpu']:.2f} | "
            f"{row['waiting_for_cpu']:.2f} | {row['asleep']:.2f} |"
        )
    return [*lines, ""]


def _box_summary(box: dict[str, Any] | None) -> str:
    """The whole box's CPU shares while draining (``host_speed.box_shares``)."""
    if not box:
        return ""
    return (
        f"; all CPUs {box['user']:g} % user, {box['system']:g} % system, {box['idle']:g} % "
        f"idle, {box['steal']:g} % stolen by other tenants"
    )


def host_line(report: dict[str, Any]) -> str:
    """How fast the host ran: the fixed gauge before and after the measurements
    (``host_speed``); a higher gauge is a slower host, and figures taken at different gauges
    do not compare."""
    host = report.get("host")
    if not host:
        return ""
    box = host.get("box_during_run") or {}
    return (
        f"host speed gauge {host['gauge_us_start']:,.0f} µs before the measurements and "
        f"{host['gauge_us_end']:,.0f} µs after (`bench/host_speed.py`: lower is faster)"
        + (f"; over the whole run {box['steal']:g} % of CPU time stolen" if box else "")
    )


def _script_lines(systems: dict[str, Any]) -> list[str]:
    """Each job's drain against the hand-written script's (``add_script_ratios``)."""
    ratios = [
        f"{name} {d['vs_script']['throughput']:.2f}×"
        for name, system in systems.items()
        if (d := system.get("drain") or {}).get("vs_script")
    ]
    if not ratios:
        return []
    return [
        "",
        f"Against the {HANDWRITTEN} (`bench/handwritten.py`: one Python process, the same "
        "features, batched predict and Redis, at least once, no durable state, no label join) "
        f"in this run, each job's drain: {', '.join(ratios)}.",
    ]


def _labels_after_lines(systems: dict[str, Any]) -> list[str]:
    """How much of each job's label work fell after its last prediction (read after the last
    event), which outputs/s, scored/s and the CPU per event leave out."""
    lines = []
    for name, system in systems.items():
        d = system.get("drain") or {}
        after, labels = d.get("labels_after_events"), d.get("labels")
        if after is None or not labels:
            continue
        lines += [
            "",
            f"{name}: {after:,} of the {labels:,} labels ({100 * after / labels:.0f} %) were "
            "read after the last event, so their work came after the last prediction: "
            "outputs/s, scored/s and the CPU per event leave it out, the rate to the last "
            "outcome counts it. The share grows as the backlog's span of event time shrinks "
            "against the labels' delays (`--backlog-rate`).",
        ]
    return lines


def _first_commit(drain: dict[str, Any]) -> str:
    """The outputs of the first exactly-once commit, which the rate does not count; with the
    rate that counting them gave (reports before the sixteenth session)."""
    if "first_commit_outputs" not in drain:
        return "–"
    with_first = drain.get("throughput_with_first_commit")
    return f"{drain['first_commit_outputs']:,}" + (
        f" (counted: {fmt(with_first)}/s)" if drain["first_commit_outputs"] > 1 else ""
    )


def _to_outcomes(drain: dict[str, Any]) -> str:
    """The drain timed to its last joined label (a system that joins labels)."""
    if "outcomes_received" not in drain:
        return "–"
    if not drain["outcomes_received"]:
        return "no outcome"
    return (
        f"{fmt(drain['throughput_to_last_outcome'])}/s over "
        f"{fmt(drain['first_to_last_outcome_seconds'], 1)} s, "
        f"{drain['outcomes_received']:,} outcomes"
    )


def checkpoint_phases(checkpoints: list[dict[str, Any]], task: str) -> dict[str, Any] | None:
    """Median and maximum of each phase of ``task``'s checkpoints (``systems.checkpoints_since``)
    and of their end-to-end durations; None without any."""
    rows = [c for c in checkpoints if task in c["tasks"]]
    if not rows:
        return None
    phases: dict[str, Any] = {"checkpoints": len(rows)}
    series = {
        "end_to_end_ms": [c["end_to_end_ms"] for c in rows],
        **{k: [c["tasks"][task][k] for c in rows] for k in ("barrier_ms", "sync_ms", "async_ms")},
    }
    for name, values in series.items():
        phases[name] = {"p50": float(np.median(values)), "max": float(max(values))}
    return phases


def _checkpoint_lines(systems: dict[str, Any]) -> list[str]:
    rows = []
    for name, system in systems.items():
        parts = [("drain", system.get("drain"))] + [
            (f"{st['offered_rate']:,.0f}/s", st) for st in system.get("steps", [])
        ]
        for label, part in parts:
            phases = checkpoint_phases((part or {}).get("checkpoints") or [], SCORING_OPERATOR)
            if phases is None:
                continue
            cells = [f"{fmt(phases[k]['p50'])} / {fmt(phases[k]['max'])}" for k in _PHASES]
            cells.append(_write_out_cell((part or {}).get("write_outs") or {}))
            rows.append(
                f"| {name} | {label} | {phases['checkpoints']} | " + " | ".join(cells) + " |"
            )
    if not rows:
        return []
    return [
        f"### Checkpoints of the scoring task ({SCORING_OPERATOR}), ms, median / max",
        "",
        "barrier: from the trigger until the task had its barriers (the state write-out before "
        "the barrier holds records and barrier back); sync: the synchronous snapshot (RocksDB's "
        "memtable flush), which holds records too; async: the upload, off the task's thread.",
        "",
        "write-outs: the scoring operators' own count of their write-outs of waiting state "
        "(streamscore_state_write_seconds), their mean, and the users written ahead of them "
        "while the operator kept up (state_write_ahead_ms); then the label join's reads of "
        "Flink's state (streamscore_join_state_reads): a label or an event whose entry was "
        "neither waiting to be written nor in the pending cache (pending_cache_outcomes), and "
        "how many found one (a parked label its event came for, or a pending entry that had "
        "left the cache).",
        "",
        "| system | part | checkpoints | end to end | barrier | sync | async | write-outs |",
        "|---|---|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
    ]


def _checkpoint_phase_lines(systems: dict[str, Any]) -> list[str]:
    """Each rate step's p99 by where its records entered the checkpoint interval."""
    rows, width = [], 0
    for name, system in systems.items():
        for step in system.get("steps", []):
            phases = step.get("latency_by_checkpoint_phase") or []
            if not phases:
                continue
            width = max(width, len(phases))
            cells = [f"{fmt(p99)} ({fmt(start)})" for start, _, _, p99, _ in phases]
            rate = f"{step['offered_rate']:,.0f}/s"
            rows.append(f"| {name} | {rate} | " + " | ".join(cells) + " |")
            to_scored = step.get("latency_to_scored_by_checkpoint_phase") or []
            if to_scored:
                cells = [fmt(p99) for _, _, _, p99, _ in to_scored]
                rows.append(f"| {name} | {rate}, until scored | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "### Latency p99 by where the records entered the checkpoint interval, ms",
        "",
        "Per tenth of the interval, counted from the last checkpoint trigger before each "
        "record's ingest time (in brackets, where the tenth starts, ms after the trigger): "
        "the last tenths are the write-ahead stretch before the next barrier, the first the "
        "barrier and what follows it. The rows marked until scored take each record's latency "
        "up to its prediction's scored_time only (the source, the batch's wait, the queue and "
        "the operator), without the sink and the read.",
        "",
        "| system | step | " + " | ".join(f"{i + 1}/10" for i in range(width)) + " |",
        "|---|---|" + "---:|" * width,
        *rows,
        "",
    ]


_PHASES = ("end_to_end_ms", "barrier_ms", "sync_ms", "async_ms")


def _write_out_cell(write_outs: dict[str, float]) -> str:
    count = write_outs.get("count")
    if not count:
        return "-"
    mean_ms = 1000 * write_outs.get("seconds", 0.0) / count
    found = write_outs.get("join_reads_found", 0.0)
    reads = found + write_outs.get("join_reads_absent", 0.0)
    return (
        f"{count:,.0f}, mean {fmt(mean_ms)} ms, {write_outs.get('written_ahead', 0):,.0f} "
        f"users written ahead; {reads:,.0f} join reads, {found:,.0f} found"
    )


def markdown(report: dict[str, Any]) -> str:
    """The summary printed at the end: drain throughput and latency per rate, with ratios."""
    p = report["parameters"]
    m = report["machine"]
    systems = report["systems"]
    base = systems.get(PASSTHROUGH)
    git = report["git"]
    lines = [
        f"## streamscore benchmark {report['started_at']}",
        "",
        f"commit `{git['commit'][:12]}`{' (uncommitted changes)' if git['dirty'] else ''}, "
        f"{m['nproc']} CPUs, {m['memory_bytes'] / 2**30:.1f} GiB, load average at start "
        f"{m['load_average_at_start'][0]:.2f}, model {report['model_version']}, "
        f"scoring path {report.get('scoring_path', 'sources (before the mypyc build)')}, "
        f"checkpoint interval {report['settings']['checkpoint_interval_ms']} ms, "
        f"parallelism {report['settings']['parallelism']}, {labels_summary(p)}",
        "",
    ]
    host = host_line(report)
    if host:
        lines += [host, ""]
    if any(system.get("drain") for system in systems.values()):
        lines += [
            f"### Backlog drain ({p['events']:,} events{_spacing(p)}, first → last output)",
            "",
            "| system | outputs/s | scored/s | first→last s | first commit, not counted | "
            "received | duplicates | to the last outcome |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        base_tp = (base.get("drain") or {}).get("throughput") if base else None
        for name, system in systems.items():
            d = system.get("drain")
            if not d:
                continue
            ratio = "" if name == PASSTHROUGH else _ratio(d.get("throughput"), base_tp)
            lines.append(
                f"| {name} | {fmt(d.get('throughput'))}{ratio} | {fmt(d.get('scoring_rate'))} | "
                f"{fmt(d.get('first_to_last_seconds'), 1)} | {_first_commit(d)} | "
                f"{d['received']:,}/{d['events']:,} | {d['duplicates']} | {_to_outcomes(d)} |"
            )
        lines += [
            "",
            "Exactly once, the outputs of the first commit arrive at once and were made before the "
            "span began: the rate leaves them out (`bench/drain_rate.py`). Scored/s is the "
            "scoring operator's own pace over the middle 80 % of the predictions by the time each "
            "was scored, which the commits do not quantize (`drain_rate.scoring_rate`).",
        ]
        lines += _script_lines(systems)
        lines += _labels_after_lines(systems)
        lines.append("")
        lines += _cost_lines(systems)
    if any(system.get("steps") for system in systems.values()):
        lines += [
            f"### Latency at fixed offered rates ({p['seconds']:g} s per step, first "
            f"{p['warmup']:g} s discarded)",
            "",
            "| system | offered/s | input/s | output/s | kept up | p50 ms | p95 ms | p99 ms |",
            "|---|---:|---:|---:|:---:|---:|---:|---:|",
        ]
        base_steps = {st["offered_rate"]: st for st in base.get("steps", [])} if base else {}
        for name, system in systems.items():
            for st in system.get("steps", []):
                b = base_steps.get(st["offered_rate"]) if name != PASSTHROUGH else None
                lat = st["latency_ms"]
                blat = b["latency_ms"] if b else {}
                cells = [
                    name,
                    f"{st['offered_rate']:,.0f}",
                    f"{fmt(st['input_rate'])}",
                    f"{fmt(st['output_rate'])}{_ratio(st['output_rate'], b and b['output_rate'])}",
                    {True: "yes", False: "**no**", None: "?"}[st["kept_up"]],
                    *(f"{fmt(lat[k])}{_ratio(lat[k], blat.get(k))}" for k in ("p50", "p95", "p99")),
                ]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += _checkpoint_lines(systems)
    lines += _checkpoint_phase_lines(systems)
    jobs = {name: system for name, system in systems.items() if is_job(name)}
    if jobs:
        lines += [
            "### Labels and outcomes (whole run; outcomes, dead letters: topic sizes at the end)",
            "",
            "| system | labels sent | outcomes | dead letters |",
            "|---|---:|---:|---:|",
        ]
        for name, system in jobs.items():
            t = system.get("totals") or system_totals(system)
            lines.append(
                f"| {name} | {t['labels_sent']:,} | {_count(t['outcomes'])} | "
                f"{_count(t['dead_letters'])} |"
            )
        lines.append("")
    if base:
        lines.append("(×) = ratio to the pass-through baseline measured in the same session.")
    if report["notes"]:
        lines += ["", "Notes:", *(f"- {n}" for n in report["notes"])]
    return "\n".join(lines)
