"""The local stack's Flink log configuration: Flink's own files, its noisiest logger quieted."""

from pathlib import Path

from streamscore.config import Settings
from streamscore.stack.flink import flink_home, write_config
from streamscore.stack.layout import StackLayout


def _properties(path: Path) -> dict[str, str]:
    """A Java properties file's settings as Log4j reads them (a later key wins)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            found[key.strip()] = value.strip()
    return found


def test_the_source_coordinator_logs_warnings_only_and_flinks_settings_stay(
    tmp_path: Path,
) -> None:
    layout = StackLayout(tmp_path)
    write_config(Settings(), layout)
    for name in ("log4j.properties", "log4j-console.properties", "log4j-session.properties"):
        shipped = _properties(flink_home() / "conf" / name)
        written = _properties(layout.flink_conf / name)
        assert written["logger.sourcecoordinator.name"] == (
            "org.apache.flink.runtime.source.coordinator.SourceCoordinator"
        )
        assert written["logger.sourcecoordinator.level"] == "WARN"
        assert {k: written[k] for k in shipped} == shipped, name
