#!/usr/bin/env python
"""Per-event cost of each step the ML loop adds to the job's Python, outside Flink.

The job's end-to-end figures (bench/run_bench.py with and without ``--no-labels``) say what the
loop costs in all; this says where it goes, step by step, in µs per event (or per label):

    .venv/bin/python bench/ml_loop_cost.py --events 50000 --users 10000

Steps: the challenger's shadow score, the cost-based decision, keeping the pending outcome (the
pickle of its entry in the label-join map, written once per event), building the outcome record,
and in the learner: decoding it, learning (river's own ``learn_one`` and the compiled one the
job uses, ``model/compiled_learning.py``), appending to the tail, the quality window.
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Callable

from streamscore.features.engine import FeatureEngine
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.job import records
from streamscore.job.avro_decoders import OutcomeDecoder
from streamscore.job.avro_encoders import OutcomeEncoder
from streamscore.job.state import ParkedLabel, PendingOutcome, ScoringState, pending_entry
from streamscore.model.challenger import ShadowScorer, new_learner
from streamscore.model.compiled_learning import ChallengerLearner
from streamscore.model.decisions import CostModel
from streamscore.quality.live import LiveQuality
from streamscore.resources import schema
from streamscore.serde import Codec

PROTOCOL = pickle.HIGHEST_PROTOCOL


def per_call_us(step: Callable[[int], object], n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        step(i)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args()
    generator = TransactionGenerator(GeneratorConfig(users=args.users, events_per_second=2000))
    txs = generator.take(args.events)
    engine = FeatureEngine()
    states: dict[str, ScoringState] = {}
    vectors = []
    for tx in txs:
        state = states.setdefault(str(tx.event["user_id"]), ScoringState(engine.new_state()))
        vectors.append(engine.update(state.features, tx.event))
    names = engine.names

    learner = new_learner()
    for tx, vector in zip(txs[:5_000], vectors[:5_000]):
        learner.learn_one(dict(zip(names, vector)), tx.is_fraud)
    shadow = ShadowScorer("river-logistic-5000", learner, names)
    costs = CostModel.defaults()
    outcome_codec = Codec("outcome")
    outcome_encoder = OutcomeEncoder(schema("outcome"))
    outcome_decoder = OutcomeDecoder(schema("outcome"))

    def pending(i: int) -> PendingOutcome:
        return PendingOutcome(
            txs[i].event["event_time"], txs[i].event["amount"], vectors[i], 0.1, "APPROVE",
            "fraud-lgbm-1", "champion", 0, None, 0.2, "river-logistic-5000",
        )  # fmt: skip

    label = ParkedLabel(False, 1, b"", "labels", 0, 0)
    encoded = [
        records.outcome(outcome_encoder, f"e{i}", "u", pending(i), label, "fs-v1")
        for i in range(len(txs))
    ]
    learning = new_learner()
    compiled = ChallengerLearner(new_learner(), names)
    quality = LiveQuality(costs, 10_000, 0.05, 500)
    decoded = [outcome_codec.decode(b) for b in encoded[:1000]]
    n = len(txs)
    steps = {
        "challenger shadow score (per event)": per_call_us(lambda i: shadow.score(vectors[i]), n),
        "cost-based decision (per event)": per_call_us(
            lambda i: costs.decide(0.1, txs[i].event["amount"]), n
        ),
        "pending outcome: its join-map entry, pickled (per event)": per_call_us(
            lambda i: pickle.dumps(pending_entry(pending(i)), protocol=PROTOCOL), n
        ),
        "outcome record encode (per label)": per_call_us(
            lambda i: records.outcome(outcome_encoder, "e", "u", pending(i), label, "fs-v1"), n
        ),
        "learner: outcome decode by fastavro (per label)": per_call_us(
            lambda i: outcome_codec.decode(encoded[i]), n
        ),
        "learner: outcome decode, as the job decodes (per label)": per_call_us(
            lambda i: outcome_decoder.decode(encoded[i]), n
        ),
        "learner: river's learn_one (per label)": per_call_us(
            lambda i: learning.learn_one(dict(zip(names, vectors[i])), txs[i].is_fraud), n
        ),
        "learner: compiled learn_one, as the job learns (per label)": per_call_us(
            lambda i: compiled.learn_one(vectors[i], txs[i].is_fraud), n
        ),
        "learner: tail entry pickle (per label)": per_call_us(
            lambda i: pickle.dumps((vectors[i], txs[i].is_fraud), protocol=PROTOCOL), n
        ),
        "learner: quality windows (per label)": per_call_us(
            lambda i: quality.add(decoded[i % 1000]), n
        ),
    }
    print(f"{args.events} events, {args.users} users (µs, best effort on a shared machine)")
    for step, us in steps.items():
        print(f"{step:<60} {us:7.2f}")


if __name__ == "__main__":
    main()
