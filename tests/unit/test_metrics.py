from prometheus_client import generate_latest

from streamscore.metrics import Metrics


def test_exposition_has_counters_and_cumulative_histograms() -> None:
    m = Metrics()
    m.events.labels("scored").inc()
    m.events.labels("scored").inc(2)
    m.predictions.labels("APPROVE", "v1").inc()
    m.expired_users.inc()
    for latency in (0.004, 0.02, 0.02, 40.0):
        m.latency.observe(latency)
    m.model_info.labels("champion", "v1", "fs-v1").inc()
    get = m.registry.get_sample_value
    assert get("streamscore_events_total", {"outcome": "scored"}) == 3.0
    assert get("streamscore_predictions_total", {"decision": "APPROVE", "model_version": "v1"}) == 1
    assert get("streamscore_expired_users_total") == 1.0
    assert get("streamscore_ingest_to_score_seconds_bucket", {"le": "0.005"}) == 1
    assert get("streamscore_ingest_to_score_seconds_bucket", {"le": "0.025"}) == 3
    assert get("streamscore_ingest_to_score_seconds_bucket", {"le": "30.0"}) == 3
    assert get("streamscore_ingest_to_score_seconds_bucket", {"le": "+Inf"}) == 4
    assert get("streamscore_ingest_to_score_seconds_count") == 4
    assert abs(get("streamscore_ingest_to_score_seconds_sum") - 40.044) < 1e-9
    info = {"role": "champion", "model_version": "v1", "feature_set_version": "fs-v1"}
    assert get("streamscore_model_info", info)
    assert b"streamscore_score_bucket" in generate_latest(m.registry)
