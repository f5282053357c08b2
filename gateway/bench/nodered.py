"""Node-RED as a peer: installed with npm on first use, run headless with a generated flow.

The flow is what a user would wire to store MQTT telemetry in InfluxDB 1.x:

``mqtt in`` (QoS 1, ``sg/v1/+/+/telemetry``) -> ``json`` -> ``function`` (one point per
reading: measurement ``readings``, tags site and device from the topic, sensor and metric
from the reading, field ``value``, the reading's own time) -> ``influxdb batch`` (from
``node-red-contrib-influxdb``, precision ms).

Node-RED 4.x and the InfluxDB nodes are installed with ``npm`` into a cache folder
(``$XDG_CACHE_HOME/sensorgate/node-red``, by default ``~/.cache/sensorgate/node-red``) the
first time the peer is used. Each run gets its own user directory, settings file and flow
file in the run's throwaway directory, a free ``uiPort`` on 127.0.0.1, and no editor
(``httpAdminRoot: false``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.errors import ServiceError
from gateway.localstack.services import ManagedProcess

__all__ = [
    "INFLUX_NODE",
    "NODE_RED",
    "NodeRed",
    "default_cache_dir",
    "ensure_installed",
    "flow",
    "settings_js",
    "start_node_red",
]

NODE_RED = "node-red@4"
INFLUX_NODE = "node-red-contrib-influxdb@0.7.0"
MIN_NODE_MAJOR = 18  # what Node-RED 4 requires
_INSTALL_HINT = (
    "Install Node.js 18 or newer with npm (Debian/Ubuntu: sudo apt-get install -y nodejs npm),"
    " or leave the peer out: --peers sensorgate,sensorgate-storage,naive,influxd"
)


@dataclass(frozen=True, slots=True)
class NodeRed:
    """An installed Node-RED with the InfluxDB nodes."""

    prefix: Path
    node: str
    node_version: str
    node_red_version: str
    influx_node_version: str

    @property
    def red_js(self) -> Path:
        """Node-RED's entry point."""
        return self.prefix / "node_modules" / "node-red" / "red.js"

    def versions(self) -> dict[str, str]:
        """Return the versions, for the report."""
        return {
            "node": self.node_version,
            "node-red": self.node_red_version,
            "node-red-contrib-influxdb": self.influx_node_version,
        }


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """Return where Node-RED is installed: ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sensorgate" / "node-red"


def _package_version(prefix: Path, name: str) -> str | None:
    try:
        doc = json.loads((prefix / "node_modules" / name / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = doc.get("version")
    return str(version) if version else None


def _node_version(node: str) -> str:
    try:
        done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"cannot run {node} --version: {exc}. {_INSTALL_HINT}") from exc
    version = done.stdout.strip().lstrip("v")
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise ServiceError(f"{node} --version printed {done.stdout!r}. {_INSTALL_HINT}") from None
    if major < MIN_NODE_MAJOR:
        raise ServiceError(f"Node-RED 4 needs Node.js {MIN_NODE_MAJOR}+; {node} is {version}.")
    return version


def ensure_installed(prefix: Path, progress: Callable[[str], None] = lambda _m: None) -> NodeRed:
    """Return the Node-RED under ``prefix``, installing it with npm first if needed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        raise ServiceError(f"the nodered peer needs {missing}, not found on PATH. {_INSTALL_HINT}")
    node_version = _node_version(node)
    red = _package_version(prefix, "node-red")
    influx = _package_version(prefix, "node-red-contrib-influxdb")
    if not (red and red.startswith("4.") and influx == INFLUX_NODE.rsplit("@", 1)[1]):
        progress(f"installing {NODE_RED} and {INFLUX_NODE} with npm into {prefix} (once)")
        prefix.mkdir(parents=True, exist_ok=True)
        argv = [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            NODE_RED,
            INFLUX_NODE,
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise ServiceError(
                f"npm install did not finish in 15 minutes ({' '.join(argv)});"
                " is the npm registry reachable?"
            ) from None
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise ServiceError(
                f"npm install failed (exit {done.returncode}): {' '.join(argv)}\n{tail}\n"
                "Is the npm registry reachable (npm config get registry)?"
            )
        red = _package_version(prefix, "node-red")
        influx = _package_version(prefix, "node-red-contrib-influxdb")
        if not red or not influx:
            raise ServiceError(f"npm install finished but {prefix}/node_modules lacks node-red")
    return NodeRed(prefix, node, node_version, red, influx)


_TO_POINTS = """\
// One point per reading: tags from the topic and the reading, the reading's own time.
const parts = msg.topic.split("/");
const site = parts[parts.length - 3];
const device = parts[parts.length - 2];
const points = [];
for (const r of msg.payload.data.readings) {
    points.push({
        measurement: "readings",
        tags: { site: site, device: device, sensor: r.sensor, metric: r.metric },
        fields: { value: r.value },
        timestamp: new Date(r.time),
    });
}
msg.payload = points;
return msg;
"""


_FLOW = Path(__file__).with_name("nodered_flow.json")
"""The flow as data: ``$NAME`` strings are filled in by :func:`flow`."""


def flow(*, mqtt_port: int, influx_port: int, database: str, topic: str) -> list[dict[str, Any]]:
    """Return the flow (Node-RED's flow file JSON): mqtt in -> json -> function -> influxdb."""
    values = {
        "$MQTT_PORT": str(mqtt_port),
        "$INFLUX_PORT": str(influx_port),
        "$INFLUX_URL": f"http://127.0.0.1:{influx_port}",
        "$DATABASE": database,
        "$TOPIC": topic,
        "$TO_POINTS": _TO_POINTS,
    }
    nodes: list[dict[str, Any]] = json.loads(_FLOW.read_text(encoding="utf-8"))
    return [{k: values.get(v, v) if isinstance(v, str) else v for k, v in n.items()} for n in nodes]


def settings_js(*, ui_port: int, user_dir: Path, flow_file: str = "flows.json") -> str:
    """Return a headless settings file: no editor, no HTTP nodes, logs at ``warn``."""
    settings = {
        "uiHost": "127.0.0.1",
        "uiPort": ui_port,
        "httpAdminRoot": False,
        "httpNodeRoot": False,
        "userDir": str(user_dir),
        "flowFile": flow_file,
        "credentialSecret": False,
        "logging": {"console": {"level": "warn", "metrics": False, "audit": False}},
        "editorTheme": {"projects": {"enabled": False}},
        "externalModules": {
            "autoInstall": False,
            "palette": {"allowInstall": False},
            "modules": {"allowInstall": False},
        },
        "telemetry": {"enabled": False},
        "diagnostics": {"enabled": False, "ui": False},
    }
    return f"module.exports = {json.dumps(settings, indent=2)};\n"


def start_node_red(
    install: NodeRed,
    workdir: Path,
    *,
    mqtt_port: int,
    influx_port: int,
    database: str,
    ui_port: int,
    topic: str = "sg/v1/+/+/telemetry",
) -> ManagedProcess:
    """Write the user directory, settings and flow under ``workdir``; start Node-RED.

    The caller waits for readiness (the flow's MQTT subscription), which only a message
    travelling through the flow can show.
    """
    user_dir = workdir / "node-red"
    user_dir.mkdir(parents=True, exist_ok=True)
    nodes = flow(mqtt_port=mqtt_port, influx_port=influx_port, database=database, topic=topic)
    (user_dir / "flows.json").write_text(json.dumps(nodes, indent=2))
    settings = user_dir / "settings.js"
    settings.write_text(settings_js(ui_port=ui_port, user_dir=user_dir))
    # Node-RED finds the InfluxDB nodes next to itself in the cache's node_modules.
    env = {**os.environ, "NODE_ENV": "production"}
    return ManagedProcess(
        "node-red",
        [
            install.node,
            str(install.red_js),
            "--settings",
            str(settings),
            "--userDir",
            str(user_dir),
        ],
        user_dir / "node-red.log",
        env=env,
    )
