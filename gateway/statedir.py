"""Private state folders: recovery snapshots and spill buffers.

Both hold data the broker has been told is safe, and recovery snapshots are unpickled
at start: whoever can write the folder can run code in the gateway. So they are made
0700, and an existing folder that another user owns or others may write is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from contract.errors import ConfigError

__all__ = ["private_dir", "state_home"]


def state_home() -> Path:
    """Return SensorGate's state folder (``$XDG_STATE_HOME/sensorgate``, else ~/.local/state)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sensorgate"


def private_dir(path: Path, field: str) -> Path:
    """Create ``path`` (and missing parents) as 0700, or check an existing one.

    Raise :class:`ConfigError` naming ``field`` when the folder cannot be made, is not a
    folder, belongs to another user, or is writable by group or others.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise ConfigError(field, f"cannot create the folder {path}: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(field, f"{path} is not a folder")
    if info.st_uid != os.getuid():
        raise ConfigError(
            field, f"{path} belongs to uid {info.st_uid}, not to this user ({os.getuid()})"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            field,
            f"{path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o});"
            f" run: chmod 700 {path}",
        )
    return path
