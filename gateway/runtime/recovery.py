"""The Bytewax recovery folder: windows and dedupe state that survive a crash.

:func:`prepare_recovery` makes the folder private, creates its partitions and writes a
marker that ties it to ``stream.shards``; a folder made for another shard count is
refused (devices hash to shards, so its state would sit in the wrong ones). Processes
of one cluster started side by side (not by ``sensorgate cluster``) take turns: an
exclusive lock on ``.prepare.lock`` in the folder, so only the first creates the
partitions.
"""

from __future__ import annotations

import fcntl
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from contract.errors import ConfigError
from gateway.settings import GatewaySettings
from gateway.statedir import private_dir

if TYPE_CHECKING:
    from bytewax.recovery import RecoveryConfig

__all__ = ["prepare_recovery"]

log = logging.getLogger(__name__)

_RECOVERY_MARKER = "sensorgate-recovery.json"


def prepare_recovery(settings: GatewaySettings) -> RecoveryConfig | None:
    """Prepare the recovery folder (0700, its partitions, its marker); None when off.

    Every gateway process calls it at start; ``sensorgate cluster`` calls it once
    before starting its processes, so that they never race to create the partitions or
    the marker. The marker records the shard count: a mismatch is refused.
    """
    path = settings.recovery_path
    if path is None:
        return None
    from bytewax.recovery import RecoveryConfig

    private_dir(path, "recovery_dir")
    with (path / ".prepare.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        _prepare_locked(settings, path)
    return RecoveryConfig(str(path))  # type: ignore[no-untyped-call]  # unannotated stub


def _prepare_locked(settings: GatewaySettings, path: Path) -> None:
    """Check the marker, create the partitions and the marker (under the folder's lock)."""
    from bytewax.recovery import init_db_dir

    marker = path / _RECOVERY_MARKER
    made_for = {"shards": settings.stream.shards}
    if marker.exists():
        found = json.loads(marker.read_text())
        if found.get("shards") != made_for["shards"]:
            raise ConfigError(
                "stream.shards",
                f"{settings.stream.shards} shards, but the recovery folder {path} holds"
                f" state for {found.get('shards')}; set stream.shards back, or move the"
                " folder away to start with empty state",
            )
    if not any(p.suffix == ".sqlite3" for p in path.iterdir()):
        # bytewax's stubs (_bytewax.pyi) leave init_db_dir and RecoveryConfig unannotated.
        init_db_dir(path, settings.recovery_partitions)  # type: ignore[no-untyped-call]  # see above
        log.info("created %d recovery partition(s) in %s", settings.recovery_partitions, path)
    if not marker.exists():
        marker.write_text(json.dumps(made_for))
