"""Control records: what the CLI builds, the job must parse back exactly, and refuse otherwise.

No Kafka: records go through the Avro codec (encode → decode → parse), with small real
LightGBM models trained here. ``publish`` against a broker is covered by the end-to-end tests;
here only its failure when nothing listens."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import timeit
import zlib
from functools import cache
from hashlib import sha256
from typing import Any

import lightgbm
import numpy as np
import pytest

from streamscore.config import settings_from
from streamscore.errors import KafkaUnavailable, Rejection
from streamscore.features.definitions import FEATURE_SET
from streamscore.model.control import (
    CORRUPT_MODEL,
    DECODE_ERROR,
    DIGEST_KEY,
    FEATURE_SET_MISMATCH,
    INVALID,
    Assignment,
    assign_record,
    canary_arm,
    control_key,
    decode,
    encode,
    parse_assignment,
    publish,
)
from streamscore.model.loading import ModelBundle

JOB = "streamscore-scoring"


@cache
def tiny_model_text(n_features: int = len(FEATURE_SET.feature_names), seed: int = 0) -> str:
    """A real LightGBM model (5 trees) on random data with the feature set's width."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, n_features))
    y = (x[:, 0] + rng.normal(scale=0.5, size=400) > 1.0).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 5}
    return lightgbm.train(params, lightgbm.Dataset(x, y), num_boost_round=5).model_to_string()


def tiny_bundle(version: str, seed: int = 0, **metadata: Any) -> ModelBundle:
    """A bundle shaped like ``streamscore train`` writes it (``metadata`` overrides fields)."""
    base = {
        "version": version,
        "feature_set_version": FEATURE_SET.version,
        "feature_names": list(FEATURE_SET.feature_names),
        "metrics": {"auc": 0.9},
    }
    return ModelBundle(version, tiny_model_text(seed=seed), {**base, **metadata})


CHAMPION = tiny_bundle("fraud-lgbm-20260101000000", seed=1)
CANDIDATE = tiny_bundle("fraud-lgbm-20260102000000", seed=2)


def round_trip(record: dict[str, Any]) -> Assignment:
    return parse_assignment(decode(encode(record)), FEATURE_SET)


def rejected(record: dict[str, Any]) -> Rejection:
    with pytest.raises(Rejection) as info:
        round_trip(record)
    return info.value


# --- round trips -------------------------------------------------------------------------------
def test_canary_assignment_round_trips() -> None:
    record = assign_record(CHAMPION, CANDIDATE, 10, "canary", job_name=JOB)
    assignment = round_trip(record)
    assert assignment.champion == CHAMPION
    assert assignment.candidate == CANDIDATE
    assert (assignment.canary_percent, assignment.reason) == (10, "canary")
    assert assignment.command_id == record["command_id"]
    assert assignment.job_name == JOB
    assert assignment.issued_at == record["issued_at"] > 0
    # The model travels compressed; the metadata as JSON text.
    assert zlib.decompress(record["champion_model"]).decode() == CHAMPION.model_text
    sent_metadata = json.loads(record["candidate_metadata"])
    assert sent_metadata == {
        **CANDIDATE.metadata,
        DIGEST_KEY: sha256(CANDIDATE.model_text.encode()).hexdigest(),
    }


def test_champion_only_assignment_round_trips() -> None:
    assignment = round_trip(assign_record(CHAMPION, None, 0, "promote", job_name=JOB))
    assert (assignment.champion, assignment.candidate, assignment.canary_percent) == (
        CHAMPION,
        None,
        0,
    )
    assert not assignment.uses_candidate("u000001")


def test_every_record_has_a_new_command_id_and_its_job_key() -> None:
    first = assign_record(CHAMPION, None, 0, "promote", job_name=JOB)
    second = assign_record(CHAMPION, None, 0, "promote", job_name=JOB)
    assert first["command_id"] != second["command_id"]
    assert control_key(JOB) == b"streamscore-scoring/ASSIGN"


def test_parsed_models_score_like_the_originals() -> None:
    from streamscore.model.scorer import Scorer

    assignment = round_trip(assign_record(CHAMPION, CANDIDATE, 50, "canary", job_name=JOB))
    row = [0.5] * len(FEATURE_SET.feature_names)
    for sent, received in ((CHAMPION, assignment.champion), (CANDIDATE, assignment.candidate)):
        assert Scorer(received).score(row) == Scorer(sent).score(row)


# --- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("payload", [b"", b"\x00garbage", b"\xff" * 40])
def test_garbage_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(Rejection) as info:
        decode(payload)
    assert info.value.reason == DECODE_ERROR


def test_trailing_bytes_are_a_decode_error() -> None:
    payload = encode(assign_record(CHAMPION, None, 0, "promote", job_name=JOB))
    with pytest.raises(Rejection) as info:
        decode(payload + b"\x00")
    assert info.value.reason == DECODE_ERROR


def test_metadata_that_is_not_json_is_a_decode_error() -> None:
    record = assign_record(CHAMPION, None, 0, "promote", job_name=JOB)
    assert rejected({**record, "champion_metadata": "{not json"}).reason == DECODE_ERROR


@pytest.mark.parametrize(
    "model",
    [b"not zlib at all", zlib.compress(b"tree\nversion=v4\nnot a model"), zlib.compress(b"")],
    ids=["not-zlib", "other-text", "empty"],
)
def test_model_bytes_that_are_not_the_sent_text_are_refused(model: bytes) -> None:
    record = assign_record(CHAMPION, CANDIDATE, 5, "canary", job_name=JOB)
    assert rejected({**record, "candidate_model": model}).reason == CORRUPT_MODEL


def with_digest_of(record: dict[str, Any], arm: str, text: bytes) -> dict[str, Any]:
    """``record`` with ``text`` as the arm's model and a matching digest, as a producer that
    skipped the checks would send it."""
    metadata = {**json.loads(record[f"{arm}_metadata"]), DIGEST_KEY: sha256(text).hexdigest()}
    return {
        **record,
        f"{arm}_model": zlib.compress(text),
        f"{arm}_metadata": json.dumps(metadata),
    }


def test_a_cut_model_text_never_reaches_lightgbm() -> None:
    """LightGBM aborts the process on a cut text (tested here in a child process, below); the
    checks before it refuse one however it arrives."""
    cut = CHAMPION.model_text[: len(CHAMPION.model_text) // 2]
    with pytest.raises(Rejection) as info:
        assign_record(
            ModelBundle(CHAMPION.version, cut, CHAMPION.metadata), None, 0, "x", job_name=JOB
        )
    assert info.value.reason == CORRUPT_MODEL
    record = assign_record(CHAMPION, None, 0, "promote", job_name=JOB)
    for text in (cut, CHAMPION.model_text[:-200], CHAMPION.model_text.replace("Tree=3", "")):
        assert rejected(with_digest_of(record, "champion", text.encode())).reason == CORRUPT_MODEL
        # Without the matching digest, too.
        assert rejected({**record, "champion_model": zlib.compress(text.encode())}).reason == (
            CORRUPT_MODEL
        )


def test_lightgbm_aborts_on_a_cut_model_text() -> None:
    """Why the checks above exist: LightGBM does not refuse a cut model text with an exception.
    Parsing it is undefined behaviour: the process aborts on most runs and loads the truncated
    model silently on some (about 1 in 6 here), either way no clean error. If this fails,
    LightGBM raises on it now (the checks stay useful as a clear message)."""
    code = (
        "import sys, lightgbm; text = sys.stdin.read()\n"
        "try:\n    lightgbm.Booster(model_str=text[: len(text) // 2])\n"
        "except Exception:\n    sys.exit(3)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], input=CHAMPION.model_text, capture_output=True, text=True
    )
    assert child.returncode != 3, "LightGBM now raises on a cut model text"


def test_a_model_lightgbm_refuses_is_corrupt() -> None:
    """A whole text LightGBM refuses with an exception (the header lacks max_feature_idx)."""
    text = re.sub(r"(?m)^max_feature_idx=.*\n", "", CHAMPION.model_text)
    record = assign_record(
        ModelBundle(CHAMPION.version, text, CHAMPION.metadata), None, 0, "x", job_name=JOB
    )
    refusal = rejected(record)
    assert refusal.reason == CORRUPT_MODEL and "LightGBM cannot load" in refusal.detail


def test_a_model_of_another_width_is_refused() -> None:
    narrow = ModelBundle(CHAMPION.version, tiny_model_text(5), CHAMPION.metadata)
    refusal = rejected(assign_record(narrow, None, 0, "promote", job_name=JOB))
    assert refusal.reason == CORRUPT_MODEL and "5 features" in refusal.detail


@pytest.mark.parametrize(
    "metadata",
    [
        {"feature_set_version": "fs-v0"},
        {"feature_names": list(reversed(FEATURE_SET.feature_names))},
        {"feature_names": None},
    ],
    ids=["version", "order", "missing"],
)
def test_another_feature_set_is_refused(metadata: dict[str, Any]) -> None:
    stale = tiny_bundle("fraud-lgbm-20250101000000", **metadata)
    record = assign_record(CHAMPION, stale, 10, "canary", job_name=JOB)
    assert rejected(record).reason == FEATURE_SET_MISMATCH


@pytest.mark.parametrize("percent", [0, 100, -1, 101])
def test_a_candidate_needs_a_percent_in_1_to_99(percent: int) -> None:
    with pytest.raises(Rejection) as info:
        assign_record(CHAMPION, CANDIDATE, percent, "canary", job_name=JOB)
    assert info.value.reason == INVALID
    record = assign_record(CHAMPION, CANDIDATE, 10, "canary", job_name=JOB)
    assert rejected({**record, "canary_percent": percent}).reason == INVALID


@pytest.mark.parametrize("percent", [1, 99])
def test_percent_limits_are_accepted(percent: int) -> None:
    record = assign_record(CHAMPION, CANDIDATE, percent, "canary", job_name=JOB)
    assert round_trip(record).canary_percent == percent


def test_a_percent_without_a_candidate_is_refused() -> None:
    with pytest.raises(Rejection) as info:
        assign_record(CHAMPION, None, 10, "promote", job_name=JOB)
    assert info.value.reason == INVALID
    record = assign_record(CHAMPION, None, 0, "promote", job_name=JOB)
    assert rejected({**record, "canary_percent": 10}).reason == INVALID


def test_the_champion_cannot_be_its_own_candidate() -> None:
    with pytest.raises(Rejection) as info:
        assign_record(CHAMPION, CHAMPION, 10, "canary", job_name=JOB)
    assert info.value.reason == INVALID


@pytest.mark.parametrize(
    "change",
    [
        {"candidate_model": None},  # half a candidate
        {"champion_version": None, "champion_model": None, "champion_metadata": None},
        {"kind": "CHALLENGER"},
        {"champion_version": "fraud-lgbm-19990101000000"},  # metadata names another version
    ],
    ids=["partial-candidate", "no-champion", "challenger", "version-mismatch"],
)
def test_malformed_assignments_are_invalid(change: dict[str, Any]) -> None:
    record = assign_record(CHAMPION, CANDIDATE, 10, "canary", job_name=JOB)
    assert rejected({**record, **change}).reason == INVALID


# --- canary arms -------------------------------------------------------------------------------
USERS = [f"u{i:06d}" for i in range(20_000)]


def test_canary_arm_is_a_fixed_function_of_the_user() -> None:
    """CRC-32 buckets, written down: any process, any run, any PYTHONHASHSEED gives these."""
    buckets = {"u000001": 9, "u000042": 27, "alice": 35, "bob": 4, "u999999": 94}
    for user, bucket in buckets.items():
        assert not canary_arm(user, bucket)
        assert canary_arm(user, bucket + 1)


def test_canary_arm_is_the_same_in_another_process() -> None:
    code = (
        "from streamscore.model.control import canary_arm;"
        "print(sum(canary_arm(f'u{i:06d}', 10) << (i % 60) for i in range(2000)))"
    )
    others = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    ]
    here = str(sum(canary_arm(f"u{i:06d}", 10) << (i % 60) for i in range(2000)))
    assert others == [here, here]


@pytest.mark.parametrize("percent", [1, 5, 10, 25, 50, 90])
def test_about_percent_of_users_are_in_the_arm(percent: int) -> None:
    share = 100 * sum(canary_arm(u, percent) for u in USERS) / len(USERS)
    p = percent / 100
    three_sigma = 300 * (p * (1 - p) / len(USERS)) ** 0.5
    assert abs(share - percent) < three_sigma, share


def test_a_growing_canary_only_adds_users() -> None:
    arms = {p: {u for u in USERS if canary_arm(u, p)} for p in (0, 1, 5, 20, 50, 99, 100)}
    assert arms[0] == set() and arms[100] == set(USERS)
    steps = sorted(arms)
    for smaller, larger in zip(steps, steps[1:]):
        assert arms[smaller] <= arms[larger]


def test_canary_arm_costs_well_under_a_microsecond() -> None:
    n = 200_000
    best = min(timeit.repeat(lambda: canary_arm("u000042", 10), number=n, repeat=3)) / n
    assert best < 1e-6, f"{best * 1e9:.0f} ns per call"


def test_uses_candidate_follows_the_arm() -> None:
    assignment = round_trip(assign_record(CHAMPION, CANDIDATE, 30, "canary", job_name=JOB))
    assert [assignment.uses_candidate(u) for u in USERS[:500]] == [
        canary_arm(u, 30) for u in USERS[:500]
    ]


# --- publish -----------------------------------------------------------------------------------
def test_publish_without_a_broker_says_so() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = int(sock.getsockname()[1])
    settings = settings_from([f"kafka_port={closed}"])
    with pytest.raises(KafkaUnavailable, match=f"127.0.0.1:{closed}"):
        publish(settings, assign_record(CHAMPION, None, 0, "promote", job_name=JOB))


def test_the_operators_reader_refuses_a_tombstone_and_garbage_and_skips_other_jobs() -> None:
    """What both Python operators run on each control record (compiled, so a None where bytes
    are declared would be a TypeError out of the operator, not a dead letter)."""
    from streamscore.job.scoring import ControlReader
    from streamscore.resources import schema

    reader = ControlReader(settings_from(), schema("control"), load_check=True)
    for payload in (None, b"", b"\xff\x00garbage"):
        with pytest.raises(Rejection) as info:
            reader.read(payload)
        assert info.value.reason == DECODE_ERROR
    record = assign_record(CHAMPION, None, 0, "promote", job_name=JOB)
    assert reader.read(encode({**record, "job_name": "another-job"})) is None
    kind, assignment = reader.read(encode(record))
    assert kind == "ASSIGN" and assignment.champion.version == CHAMPION.version


def test_a_checked_snapshot_is_handed_to_the_scorer_not_loaded_again() -> None:
    """The scorer checks a CHALLENGER's snapshot when it reads it and then uses that very model
    (loading it twice was 2.6 % of the scoring operator's Python); a snapshot it did not just
    check (one restored from the broadcast state) gets nothing, and is loaded by the caller."""
    from streamscore.job import records
    from streamscore.job.scoring import ControlReader
    from streamscore.model.challenger import dump_snapshot, new_learner
    from streamscore.resources import schema
    from streamscore.serde import Codec

    reader = ControlReader(settings_from(), schema("control"), load_check=True)
    data = dump_snapshot(new_learner())
    payload = records.challenger_command(Codec("control"), JOB, "river-logistic-000000200", data)
    kind, (version, read_data) = reader.read(payload)
    assert kind == "CHALLENGER" and version == "river-logistic-000000200"
    model = reader.take_checked(read_data)
    assert model is not None and hasattr(model, "predict_proba_one")
    assert reader.take_checked(read_data) is None  # handed out once
    _, (_, again) = reader.read(payload)
    assert again == read_data and again is not read_data
    assert reader.take_checked(read_data) is None  # equal bytes, not the ones just checked
    unchecked = ControlReader(settings_from(), schema("control"), load_check=False)
    _, (_, unchecked_data) = unchecked.read(payload)
    assert unchecked.take_checked(unchecked_data) is None


_IMPORTS_ON_CREATION = """
import sys
from streamscore.config import settings_from
from streamscore.job.scoring import ControlReader
from streamscore.resources import schema

ControlReader(settings_from(), schema("control"), load_check=False)
before = "river.linear_model" in sys.modules
ControlReader(settings_from(), schema("control"), load_check=True)
print(before, "river.linear_model" in sys.modules)
"""


def test_the_scorers_reader_loads_the_snapshots_modules_when_made() -> None:
    """The first CHALLENGER's unpickling imported river and what it imports, about 0.3 s of the
    scoring thread with every record behind it waiting; the scorers' reader imports them when
    it is made, before records come. (In a fresh interpreter: this one has river already.)"""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTS_ON_CREATION], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True"]
