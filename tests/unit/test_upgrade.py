"""What ``streamscore upgrade`` refuses, and the savepoint manifest it relies on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from streamscore.config import Settings
from streamscore.upgrade import (
    StateManifest,
    UpgradeRefused,
    check_compatible,
    read_manifest,
    refuse_legacy_sources,
    write_manifest,
)


def test_manifest_round_trip_beside_a_local_savepoint(tmp_path: Path) -> None:
    manifest = StateManifest.current(Settings())
    savepoint = tmp_path / "savepoint-abc"
    savepoint.mkdir()
    write_manifest(savepoint.as_uri(), manifest)
    assert read_manifest(savepoint.as_uri()) == manifest
    assert read_manifest((tmp_path / "elsewhere").as_uri()) is None


def test_parallelism_and_model_may_change() -> None:
    saved = StateManifest.current(Settings())
    check_compatible(saved, replace(saved, scoring_parallelism=1, model_version="fraud-x"))
    check_compatible(None, saved)  # a savepoint without a manifest: nothing to compare


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [("state_version", 1, "layout version 1"), ("feature_set_version", "fs-v0", "fs-v0")],
)
def test_another_state_layout_or_feature_set_is_refused(
    field: str, value: object, words: str
) -> None:
    new = StateManifest.current(Settings())
    with pytest.raises(UpgradeRefused, match=words):
        check_compatible(replace(new, **{field: value}), new)


def test_a_savepoint_of_an_older_layout_this_code_still_reads_is_taken() -> None:
    """Layout 4 pickled a user's state in its nested form, which still reads back
    (tests/unit/test_user_state_codec.py); layout 3 does not."""
    new = StateManifest.current(Settings())
    assert new.state_version == 5
    check_compatible(replace(new, state_version=4), new)
    with pytest.raises(UpgradeRefused, match="layout version 3"):
        check_compatible(replace(new, state_version=3), new)


def test_a_job_with_the_table_apis_sources_of_earlier_versions_is_refused() -> None:
    # Vertex names as Flink's REST API gave them for a job of the fortieth session's version.
    earlier = [
        "Source: KafkaSource-default_catalog.default_database.raw_input -> Calc[2] -> "
        "ConstraintEnforcer[3] -> TableToDataStream -> batch-records",
        "Source: KafkaSource-default_catalog.default_database.raw_control -> Calc[5] -> "
        "TableToDataStream -> control-outside-event-time",
        "decode-features-score -> unpack-outputs -> scored-sink: Writer -> scored-sink: Committer",
        "batch-outcomes",
    ]
    with pytest.raises(UpgradeRefused, match="Table API's sources"):
        refuse_legacy_sources(earlier)
    # This version's names pass.
    refuse_legacy_sources(
        [
            "Source: raw_input -> batch-records",
            "Source: raw_control -> control-outside-event-time",
            "decode-features-score -> unpack-outputs -> scored-sink: Writer",
            "Source: raw_outcomes -> batch-outcomes",
        ]
    )
