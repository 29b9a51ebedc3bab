"""The benchmark's hand-written script (``bench/handwritten.py``) against the real broker and
Redis: the comparison is only worth something if the script does the job's per-event work, so
each event gets one prediction with the score and decision the job's model and cost model give
its features, and each user's newest features end in Redis in the job's layout."""

from __future__ import annotations

import dataclasses
import sys
import threading
import uuid
from pathlib import Path

import lightgbm
import numpy as np

from streamscore.config import Settings
from streamscore.feature_store import connect, read_features
from streamscore.features.engine import FeatureEngine
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.kafka_io import client_config, new_producer, send_record
from streamscore.model.decisions import CostModel
from streamscore.model.registry import resolve
from streamscore.serde import Codec
from tests.e2e.helpers import collect, expected_store

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from handwritten import ScriptConfig, run  # noqa: E402
from topics import Kafka  # noqa: E402


def test_the_script_scores_every_event_as_the_job_would(stack: Settings) -> None:
    events = [
        t.event
        for t in TransactionGenerator(GeneratorConfig(users=40, seed=77, start_ms=10**12)).take(
            2_000
        )
    ]
    run_id = uuid.uuid4().hex[:8]
    source, sink = f"hw-test-{run_id}-events", f"hw-test-{run_id}-predictions"
    kafka = Kafka(stack)
    kafka.create(source, 2)
    kafka.create(sink, 2)
    artifact = resolve(stack.models_dir, "latest")
    costs = CostModel.from_settings(stack)
    prefix = f"hw-test-{run_id}:"
    config = ScriptConfig(
        kafka=client_config(stack),
        source=source,
        sink=sink,
        redis={"host": stack.redis_host, "port": stack.redis_port, "db": stack.redis_db},
        redis_key_prefix=prefix,
        feature_ttl_s=600,
        model_path=str(artifact.model_path),
        model_version=artifact.version,
        costs=dataclasses.asdict(costs),
        batch=300,
    )
    stop = threading.Event()
    scored: list[int] = []
    script = threading.Thread(target=lambda: scored.append(run(config, stop)), daemon=True)
    try:
        producer = new_producer(stack)
        codec = Codec("event")
        for event in events:
            send_record(producer, source, event["user_id"].encode(), codec.encode(event))
        assert producer.flush(30) == 0
        script.start()
        predictions = collect(
            stack, sink, "prediction", lambda r: True, len(events), 90, read_committed=False
        )
    finally:
        stop.set()
        script.join(60)
        kafka.delete_created()
        kafka.close()

    assert scored == [len(events)]
    by_id = {p["event_id"]: p for p in predictions}
    assert len(predictions) == len(by_id) == len(events)  # one each, none twice

    engine, states = FeatureEngine(), {}
    vectors = []
    for event in events:  # each user's events in the order they were sent: the script's order
        state = states.setdefault(event["user_id"], engine.new_state())
        vectors.append(engine.update(state, event))
    expected = lightgbm.Booster(model_file=str(artifact.model_path)).predict(np.array(vectors))
    for event, score in zip(events, expected.tolist(), strict=True):
        prediction = by_id[event["event_id"]]
        assert prediction["score"] == score
        assert prediction["decision"] == costs.decide(score, event["amount"])
        assert prediction["model_version"] == artifact.version
        assert prediction["user_id"] == event["user_id"]

    client = connect(stack)
    try:
        for user, (event_id, features) in expected_store(events).items():
            stored = read_features(client, prefix, user)
            assert stored is not None and stored["event_id"] == event_id
            assert stored["features"] == features
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()
