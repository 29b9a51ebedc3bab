"""The measurements: what is done to each system under test, in which order, and what is kept.

For the scoring job in exactly-once and at-least-once mode, a plain Python pass-through
(consumer → producer copying raw bytes, the baseline) and the hand-written script a user could
run instead of the job (``handwritten.py``):

* drain throughput: N events are produced into a fresh input topic first, then the system is
  started from the earliest offset; throughput = outputs between the first and the last output a
  consumer sees (read_committed for exactly-once) / the time between them; exactly once, the
  first commit's outputs are not counted: they were made before the first output (drain_rate.py);
* latency at fixed offered rates: events are sent at each rate for a fixed time; latency = wall
  clock when a consumer on the same host receives the output − the input's Kafka timestamp
  (producer send time; predictions carry it as ``ingest_time``, the pass-through preserves it).

Labels (unless ``--no-labels``): the job gets a label for every event, in the backlog and in the
rate steps (``--label-delay-ms`` after its event), so it measures the label join and the online
challenger too. Throughput still counts predictions; outcomes are counted from their topic.

Isolation: every system gets its own fresh topics (``bench-<run>-<system>-…``), deleted at the
end; each step's events come from a distinct generator seed (event ids ``e<seed hex>-…``) and the
output consumer starts at the end offsets noted just before the step and keeps only that prefix.
A failure or an interrupt keeps what was measured, stops every system and deletes the topics.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import time
from typing import Any

import numpy as np

from streamscore.config import Settings
from streamscore.kafka_io import client_config, new_producer

from collect import COLLECTOR_FIGURES, LABEL_DEAD_LETTER, Collector
from drain_rate import drain_rate, scoring_rate
from load import encode_events, event_id_prefix, produce_backlog, send_paced
from process_cost import ProcessCost
from report import (
    fmt,
    kept_up,
    latency_by_checkpoint_phase,
    latency_by_second,
    percentiles,
    window_rate,
)
from systems import FlinkSystem, System
from topics import Kafka

# One logger for the whole benchmark, as before the split (its name is in every log line).
log = logging.getLogger("bench")


def latency_split(
    scored_ms: np.ndarray, ingest_ms: np.ndarray, recv: np.ndarray, measured: np.ndarray
) -> dict[str, Any]:
    """The latency split at the scoring operator, from the predictions' ``scored_time``: from
    the input's timestamp until scored (the source, the batch's wait, the queue, the operator's
    own work) and from then until the collector had it (the sink, the broker, the read). Empty
    for a system whose outputs are not predictions (the pass-through)."""
    if scored_ms.size != recv.size:
        return {}
    return {
        "latency_to_scored_ms": percentiles(scored_ms[measured] - ingest_ms[measured]),
        "latency_after_scored_ms": percentiles(recv[measured] * 1000 - scored_ms[measured]),
    }


class Bench:
    """One benchmark session: the shared Kafka clients, the seed sequence and the notes."""

    def __init__(self, args: argparse.Namespace, s: Settings) -> None:
        self.args, self.s = args, s
        # Children are spawned, not forked: librdkafka clients do not survive a fork.
        self.ctx = mp.get_context("spawn")
        self.kafka = Kafka(s)
        self.producer = new_producer(s)
        self.seed = args.seed
        self.labels = not args.no_labels
        self.notes: list[str] = []

    def next_seed(self) -> int:
        """A fresh generator seed per backlog or step, so their event ids never collide."""
        self.seed += 1
        return self.seed

    def collector(
        self,
        system: System,
        prefix: str,
        topic: str | None = None,
        record_type: str = "",
        start: dict[int, int] | None = None,
    ) -> Collector:
        """An output consumer for one measurement, from the current end of the system's output
        topic (or of ``topic``, whose records are ``record_type``), or from ``start``."""
        topic = topic or system.output_topic
        return Collector(
            self.ctx,
            client_config(self.s),
            topic,
            start if start is not None else self.kafka.end_offsets(topic),
            record_type or system.record_type,
            system.read_committed,
            prefix,
        )

    def labels_topic(self, system: System) -> str | None:
        """Where the load sends the system's labels; None without labels (``--no-labels``, or
        a system that reads none)."""
        return system.labels_topic if self.labels else None

    def _checkpoint_s(self, system: System) -> float:
        """The job's checkpoint interval (exactly-once output arrives once per interval)."""
        if isinstance(system, FlinkSystem):
            return system.settings.checkpoint_interval_ms / 1000
        return 0.0

    def drain(self, system: System) -> dict[str, Any]:
        """Produce the backlog, start the system, time its outputs first to last."""
        n, seed = self.args.events, self.next_seed()
        event_rate = self.args.backlog_rate
        labels_topic = self.labels_topic(system)
        log.info(
            "%s: producing a backlog of %d events into %s%s",
            system.name,
            n,
            system.input_topic,
            f", their labels into {labels_topic}" if labels_topic else "",
        )
        stats = produce_backlog(
            self.s, system.input_topic, n, self.args.users, seed, event_rate, labels_topic
        )
        collector = self.collector(system, event_id_prefix(seed))
        # The labels' work is done when the last of them is joined, which can be after the last
        # prediction: their outcomes are timed too.
        outcomes: Collector | None = None
        if labels_topic and system.outcomes_topic:
            outcomes = self.collector(
                system, event_id_prefix(seed), system.outcomes_topic, "outcome"
            )
        # Where its refused labels start: read only once the predictions are in (below).
        refused_topic = system.label_dead_letters_topic if outcomes is not None else None
        refused_start = self.kafka.end_offsets(refused_topic) if refused_topic else None
        refused_labels: int | None = None
        outcome_data: dict[str, Any] | None = None
        cost: ProcessCost | None = None
        process_cost: dict[str, Any] | None = None
        write_outs = system.write_out_totals()
        try:
            started = time.time()
            system.start()
            # From the moment it runs: its start-up (job submission) is not the drain's cost.
            observers = {"bench collector (outputs)": collector.pid}
            if outcomes is not None:
                observers["bench collector (outcomes)"] = outcomes.pid
            cost = ProcessCost(system.processes(), observers)
            cost.start()
            idle = max(30.0, 3 * self._checkpoint_s(system))
            complete = collector.wait(
                n,
                deadline_s=self.args.drain_timeout,
                idle_s=idle,
                first_s=max(120.0, idle),
                what=f"{system.name} drain",
            )
            # CPU up to the last prediction, as before the outcomes were timed.
            process_cost = cost.stop(int(collector.count.value))
            if outcomes is not None and complete:
                # Every label ends as an outcome or as a dead letter (expired, duplicate,
                # unknown event): the wait counts both, so it ends with the last of them rather
                # than after a stall of ``idle`` seconds.
                refused = (
                    self.collector(
                        system,
                        event_id_prefix(seed),
                        refused_topic,
                        LABEL_DEAD_LETTER,
                        start=refused_start,
                    )
                    if refused_topic
                    else None
                )
                try:
                    outcomes.wait(
                        stats.labels,
                        deadline_s=self.args.drain_timeout,
                        idle_s=idle,
                        what=f"{system.name} drain (outcomes and refused labels)",
                        also=refused,
                    )
                finally:
                    if refused is not None:
                        refused_labels = int(refused.result()["recv"].size)
        finally:
            data = collector.result()
            if outcomes is not None:
                outcome_data = outcomes.result()
        recv = data["recv"]
        result: dict[str, Any] = {
            "events": n,
            "seed": seed,
            "labels": stats.labels,
            # Read after the last event: their work falls after the last prediction, outside the
            # drain's span (counted by "to the last outcome"). The shorter the backlog's span
            # of event time against the labels' delays, the more of them (--backlog-rate).
            "labels_after_events": stats.labels_after_events,
            # Labels the system refused (dead letters) during the drain, counted in the wait
            # for the last outcome.
            "labels_refused": refused_labels,
            "backlog_produce_seconds": round(stats.seconds, 2),
            "received": int(recv.size),
            "complete": complete,
            **{k: data[k] for k in COLLECTOR_FIGURES},
            "process_cost": process_cost,
        }
        if recv.size >= 2:
            rate = drain_rate(recv, system.read_committed, self._checkpoint_s(system))
            span = rate.span_s
            result.update(
                {
                    "first_to_last_seconds": round(span, 3),
                    "throughput": rate.rate,
                    # Counting the first commit too, as before the sixteenth session.
                    "throughput_with_first_commit": (recv.size - 1) / span if span > 0 else None,
                    "first_commit_outputs": rate.first_commit,
                    "start_to_last_seconds": round(float(recv.max()) - started, 3),
                    "bursts": int(np.unique(np.round(recv, 2)).size),
                    # The scoring operator's own pace, from the predictions' scored_time
                    # (drain_rate.scoring_rate): not quantized by the exactly-once commits.
                    "scoring_rate": scoring_rate(data["scored_ms"]),
                }
            )
            if outcome_data is not None:
                result.update(
                    _outcome_figures(
                        outcome_data["recv"], float(recv.min()), float(recv.max()), rate.counted
                    )
                )
            # Exactly-once outputs appear once per checkpoint: the span must cover several.
            minimum = max(2.0, 3 * self._checkpoint_s(system) if system.read_committed else 0)
            if span < minimum:
                note = (
                    f"{system.name} drain: first→last output only {span:.1f} s apart "
                    f"(< {minimum:g} s): too short to be a throughput figure, use more "
                    "--events"
                )
                result["warning"] = note
                self.notes.append(note)
        else:
            result["throughput"] = None
        result["system"] = system.check()
        result["checkpoints"] = self._checkpoints(system, started)
        result["write_outs"] = self._write_outs(system, write_outs)
        return result

    def _write_outs(self, system: System, before: dict[str, float]) -> dict[str, float]:
        """The system's state write-outs since ``before`` (``System.write_out_totals``)."""
        try:
            after = system.write_out_totals()
        except Exception as exc:
            self.notes.append(f"{system.name}: could not read its write-outs: {exc}")
            return {}
        return {k: round(v - before.get(k, 0.0), 6) for k, v in after.items()}

    def _checkpoints(self, system: System, since_s: float) -> list[dict[str, Any]]:
        """``system.checkpoints_since``; a failure to read them is a note, not a failed run."""
        try:
            return system.checkpoints_since(since_s)
        except Exception as exc:
            self.notes.append(f"{system.name}: could not read its checkpoints: {exc}")
            return []

    def step(self, system: System, rate: float) -> dict[str, Any]:
        """Offer ``rate`` events/s for --seconds; latency of the post-warm-up events."""
        seconds, warmup = self.args.seconds, self.args.warmup
        seed = self.next_seed()
        count = int(round(rate * seconds))
        labels_topic = self.labels_topic(system)
        # Event times start ahead of the clock by more than encoding takes (≈ 40 µs per event,
        # its label included): the load then sends each event at its own event time.
        lead_ms = 2000 + count // 10
        records, labels = encode_events(
            count,
            rate,
            self.args.users,
            seed,
            int(time.time() * 1000) + lead_ms,
            labels=bool(labels_topic),
        )
        collector = self.collector(system, event_id_prefix(seed))
        write_outs = system.write_out_totals()
        started = time.time()
        try:
            log.info(
                "%s: offering %g events/s for %g s%s",
                system.name,
                rate,
                seconds,
                f", labels {self.args.label_delay_ms} ms later" if labels else "",
            )
            load = send_paced(
                self.producer,
                system.input_topic,
                records,
                rate,
                warmup,
                labels_topic,
                labels,
                self.args.label_delay_ms / 1000,
            )
            complete = collector.wait(
                count,
                deadline_s=self.args.drain_timeout,
                idle_s=max(15.0, 3 * self._checkpoint_s(system)),
                what=f"{system.name} @ {rate:g}/s",
            )
        finally:
            data = collector.result()
        recv, ingest_ms = data["recv"], data["ingest_ms"]
        measured = ingest_ms >= load["wall_warm"] * 1000
        latency_ms = recv[measured] * 1000 - ingest_ms[measured]
        checkpoint_s = self._checkpoint_s(system)
        # Read-committed output comes once per checkpoint: a rate needs several intervals.
        min_span = max(1.0, 2 * checkpoint_s if system.read_committed else 0.0)
        output_rate = window_rate(recv, load["wall_warm"], load["wall_end"], min_span)
        if output_rate is None:
            self.notes.append(
                f"{system.name} @ {rate:g}/s: no output rate (arrivals after the warm-up span "
                f"< {min_span:g} s): make --seconds − --warmup longer"
            )
        # The operator's own pace in the same window, for read-committed output, whose arrivals
        # come in commits (report.kept_up).
        scored_rate = (
            window_rate(data["scored_ms"] / 1000.0, load["wall_warm"], load["wall_end"], 1.0)
            if system.read_committed and data["scored_ms"].size == recv.size
            else None
        )
        result = {
            "offered_rate": rate,
            "seconds": seconds,
            "warmup_seconds": warmup,
            "seed": seed,
            "sent": count,
            "labels_sent": load["labels_sent"],
            "received": int(recv.size),
            "complete": complete,
            "measured_events": int(measured.sum()),
            "input_rate": load["input_rate"],
            "output_rate": output_rate,
            "scored_rate": scored_rate,
            "kept_up": kept_up(complete, rate, output_rate, scored_rate),
            "send_seconds": round(load["send_seconds"], 3),
            "latency_ms": percentiles(latency_ms),
            **latency_split(data["scored_ms"], ingest_ms, recv, measured),
            "latency_by_second": latency_by_second(
                ingest_ms[measured], latency_ms, load["wall_warm"]
            ),
            **{k: data[k] for k in COLLECTOR_FIGURES},
        }
        result["system"] = system.check()
        result["checkpoints"] = self._checkpoints(system, started)
        triggers_ms = [1000 * (started + c["trigger_s"]) for c in result["checkpoints"]]
        result["latency_by_checkpoint_phase"] = latency_by_checkpoint_phase(
            ingest_ms[measured], latency_ms, triggers_ms, 1000 * checkpoint_s
        )
        if data["scored_ms"].size == recv.size:
            # The same, up to the score only: tells the operator's part of a tenth's latency
            # (the batch's wait, the queue, the operator's work) from the sink's and the read's.
            result["latency_to_scored_by_checkpoint_phase"] = latency_by_checkpoint_phase(
                ingest_ms[measured],
                data["scored_ms"][measured] - ingest_ms[measured],
                triggers_ms,
                1000 * checkpoint_s,
            )
        result["write_outs"] = self._write_outs(system, write_outs)
        lat = result["latency_ms"]
        log.info(
            "%s @ %g/s: in %.0f/s out %s/s p50 %s p99 %s ms",
            system.name,
            rate,
            load["input_rate"],
            f"{output_rate:.0f}" if output_rate else "-",
            fmt(lat["p50"]),
            fmt(lat["p99"]),
        )
        if rate > 0 and load["input_rate"] < 0.95 * rate:
            self.notes.append(
                f"{system.name} @ {rate:g}/s: the load generator only reached "
                f"{load['input_rate']:.0f}/s"
            )
        return result

    def run_system(self, system: System, result: dict[str, Any]) -> None:
        """Fill ``result`` as measurements finish (a failure keeps what was measured)."""
        result.update({"name": system.name, "drain": None, "steps": []})
        system.setup(self.kafka)
        try:
            if self.args.events > 0:
                result["drain"] = self.drain(system)
                if not result["drain"]["complete"]:
                    self.notes.append(
                        f"{system.name}: the backlog did not drain; rate steps skipped"
                    )
                    return
            else:
                system.start()
            for rate in self.args.rates:
                step = self.step(system, rate)
                result["steps"].append(step)
                if not step["complete"]:
                    self.notes.append(
                        f"{system.name} @ {rate:g}/s: outputs still missing; later steps skipped"
                    )
                    break
                if not step["system"].get("running", True):
                    self.notes.append(f"{system.name}: stopped running; later steps skipped")
                    break
        finally:
            system.stop()
            result["info"] = system.info
        for part in [result["drain"], *result["steps"]]:
            if not part:
                continue
            if part.get("duplicates"):
                self.notes.append(f"{system.name}: {part['duplicates']} duplicate outputs")
            if part.get("degraded"):
                self.notes.append(f"{system.name}: degraded predictions {part['degraded']}")
            if "fallback-rules" in part.get("model_versions", {}):
                self.notes.append(f"{system.name}: scored with the fallback rules")
            dead = part.get("system", {}).get("dead_letters")
            if dead:
                # With labels, expired or unmatched labels are dead letters too (a few expected).
                also = " (label dead letters included)" if self.labels_topic(system) else ""
                self.notes.append(f"{system.name}: {dead} dead letters{also}")

    def run(self, systems: list[System], results: dict[str, Any]) -> bool:
        """Measure the systems one after the other into ``results`` (by name); True if the run
        failed or was interrupted. Whatever still runs is stopped and the topics are deleted in
        any case, also after Ctrl-C or SIGTERM."""
        failed = False
        try:
            for system in systems:
                log.info("=== %s", system.name)
                self.run_system(system, results.setdefault(system.name, {}))
        except KeyboardInterrupt:
            failed = True
            self.notes.append("interrupted")
        except Exception as exc:
            failed = True
            log.exception("benchmark failed")
            self.notes.append(f"failed: {type(exc).__name__}: {exc}")
        finally:
            for system in systems:  # whatever still runs after a failure
                try:
                    system.stop()
                except Exception as exc:
                    log.warning("could not stop %s: %s", system.name, exc)
            self.close()
        return failed

    def close(self) -> None:
        """Flush the load producer; delete the run's topics unless --keep-topics."""
        self.producer.flush(10)
        if not self.args.keep_topics:
            self.kafka.delete_created()
        self.kafka.close()


def _outcome_figures(
    outcome_recv: Any, first_output: float, last_output: float, events: int
) -> dict[str, Any]:
    """The drain timed to its last joined label: ``events`` (those the prediction rate counts,
    ``drain_rate``) per second from the first prediction to the last outcome (or the last
    prediction, whichever is later)."""
    if outcome_recv.size == 0:
        return {"outcomes_received": 0}
    span = max(float(outcome_recv.max()), last_output) - first_output
    return {
        "outcomes_received": int(outcome_recv.size),
        "first_to_last_outcome_seconds": round(span, 3),
        "throughput_to_last_outcome": events / span if span > 0 else None,
    }
