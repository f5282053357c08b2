"""``sensorgate edge bench``: the agent's footprint, throughput and backlog drain.

    sensorgate edge bench [--json] [--out FILE] [--host H --port P] [--quick]

Three phases, each against a real MQTT broker on this machine (the bench starts its
own mosquitto unless ``--port`` names one):

1. **footprint** -- the agent runs as a separate process (``python -m edge.cli run``)
   with 10 simulated sensors at 1 Hz and the default batching, outbox and fsync
   policy; after a warm-up its RSS is sampled every second and its CPU time is
   measured over ``--footprint-s`` (psutil when installed, else ``/proc``).
   Targets: RSS < 40 MB, CPU < 2 % of one core.
2. **unconstrained** -- the same agent process with simulated sensors sampled as fast
   as it can (offered load far above what it can ship), ``max_rate = 0``: the
   readings per second the broker PUBACKed (the agent's own ``acked_total`` from
   its status heartbeats, times the readings per event) over ``--unconstrained-s``.
   With the offered load above capacity this is the pipeline's ceiling -- sampling,
   batching, the fsynced outbox insert, publish, PUBACK, delete -- all in one
   process. Target: >= 20,000 readings/s.
3. **backlog** -- 10 minutes x 100 readings/s of telemetry stored while the broker is
   down. The outbox is pre-filled by the agent's own code (the real ``Agent`` with
   sampler, batcher and outbox, driven by a fake clock through 600 simulated
   seconds, the link down) instead of waiting 10 real minutes; then the agent
   process starts on that outbox with the broker still down and keeps sampling 100
   readings/s, the broker starts, and the time until the outbox is back to its
   steady state gives the drain rate. Run twice: with the default ``max_rate`` (50
   events/s, the pace a device drains at out of the box) and with ``max_rate = 0``.
   With ``--port`` (a broker the bench cannot stop) the agent starts with the broker
   up and the clock starts at the agent's start.

Nothing here is a test; the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:  # imported where used: an edge-only install has no psutil
    from datetime import datetime

    import paho.mqtt.client as mqtt
    import psutil

__all__ = ["main", "run_bench"]

_T = TypeVar("_T")

TARGET_RSS_MB = 40.0
TARGET_CPU_PERCENT = 2.0
TARGET_READINGS_PER_S = 20_000.0
OFFERED = 100_000  # readings/s offered in the unconstrained phase
_REPO = Path(__file__).resolve().parents[1]


# -- process figures ------------------------------------------------------------------
class ProcessMeter:
    """RSS and CPU time of one process: psutil when installed, else ``/proc``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            import psutil
        except ImportError:
            self._ps: psutil.Process | None = None
            self.source = "/proc"
        else:
            self._ps = psutil.Process(pid)
            self.source = "psutil"
        self._tick = os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        """Resident set size now."""
        if self._ps is not None:
            return int(self._ps.memory_info().rss)
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def cpu_seconds(self) -> float:
        """User + system CPU time so far."""
        if self._ps is not None:
            t = self._ps.cpu_times()
            return float(t.user + t.system)
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._tick  # utime, stime


# -- a broker -------------------------------------------------------------------------
def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Mosquitto:
    """A mosquitto child process on ``host:port``, its data under ``workdir``.

    The edge package never imports the gateway (``tests/test_layering.py``), so the
    bench starts its own broker, with the settings of ``gateway.localstack.services``
    that matter to the agent: no in-flight cap, deep queues, persistence.
    """

    def __init__(self, workdir: Path, *, host: str, port: int, timeout: float = 15.0) -> None:
        binary = shutil.which(
            "mosquitto",
            path=os.pathsep.join(
                [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"]
            ),
        )
        if binary is None:
            raise SystemExit(
                "error: mosquitto not found (apt-get install mosquitto); pass --host/--port"
            )
        data = workdir / "mosquitto"
        data.mkdir(parents=True, exist_ok=True)
        conf = data / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listener {port} {host}",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {data}/",
                    "max_inflight_messages 0",
                    "max_queued_messages 1000000",
                    "max_queued_bytes 0",
                    "set_tcp_nodelay true",
                    # As root, mosquitto would switch to its own user: stay who we are.
                    f"user {getpass.getuser()}",
                    "log_dest stdout",
                    "",
                ]
            )
        )
        self._log = (data / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not self._listens(host, port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_text = (data / "mosquitto.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"error: mosquitto did not start on {host}:{port}:\n{log_text}")
            time.sleep(0.05)

    @staticmethod
    def _listens(host: str, port: int) -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL; idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


class Broker:
    """The broker of the bench: our own mosquitto (restartable) or a given one."""

    def __init__(self, host: str, port: int | None, workdir: Path) -> None:
        self.host = host
        self.workdir = workdir
        self.own = port is None
        self.proc: _Mosquitto | None = None
        if port is None:
            port = _free_port(host)
            self.proc = _Mosquitto(workdir, host=host, port=port)
        self.port: int = port

    def stop(self) -> None:
        """Stop our mosquitto (nothing for a given broker)."""
        if self.own and self.proc is not None:
            self.proc.stop()
            self.proc = None

    def start(self) -> None:
        """(Re)start our mosquitto on the same port."""
        if self.own and self.proc is None:
            self.proc = _Mosquitto(self.workdir, host=self.host, port=self.port)


class StatusWatch:
    """Subscribe to one device's status topic; keep the latest ``details``."""

    def __init__(
        self, host: str, port: int, topic: str, *, count_only: bool = False, client_id: str = ""
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.count_only = count_only
        self.latest: dict[str, Any] | None = None
        self.count = 0
        self._lock = threading.Lock()
        self._topic = topic
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not client_id,
        )
        # paho annotates the delays as int; it only does arithmetic on them.
        self.client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]  # float delays
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(host, port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if self.count_only:
            with self._lock:
                self.count += 1
            return
        try:
            doc = json.loads(msg.payload)
            details = doc["data"]["details"]
        except (ValueError, KeyError, TypeError):
            return
        if not details:
            return
        with self._lock:
            self.latest = details
            self.count += 1

    def snapshot(self) -> tuple[int, dict[str, Any] | None]:
        """How many status messages arrived, and the latest details."""
        with self._lock:
            return self.count, self.latest

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


# -- the agent as a process ---------------------------------------------------------------
def _toml(doc: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in doc.items() if not isinstance(v, dict | list)]
    for key, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{key}]")
            lines.extend(f"{k} = {value(v)}" for k, v in table.items())
    for sensor in doc["sensors"]:
        lines.append("[[sensors]]")
        lines.extend(f"{k} = {value(v)}" for k, v in sensor.items())
    return "\n".join(lines) + "\n"


def agent_config(
    device: str,
    port: int,
    outbox: Path,
    *,
    host: str = "127.0.0.1",
    sensors: int = 10,
    interval_s: float = 1.0,
    batch: dict[str, Any] | None = None,
    outbox_extra: dict[str, Any] | None = None,
    heartbeat_s: float = 60.0,
) -> dict[str, Any]:
    """Return an agent config with ``sensors`` simulated sensors (the defaults elsewhere)."""
    doc: dict[str, Any] = {
        "site": "bench",
        "device": device,
        "log_level": "WARNING",
        "mqtt": {
            "host": host,
            "port": port,
            "topic_prefix": "sgbench/v1",
            "reconnect_min_s": 0.25,
            "reconnect_max_s": 1.0,
        },
        "outbox": {"path": str(outbox), **(outbox_extra or {})},
        "status": {"heartbeat_s": heartbeat_s},
        "sensors": [
            {
                "id": f"s{i:02d}",
                "driver": "simulated",
                "interval_s": interval_s,
                "options": {"seed": i},
            }
            for i in range(sensors)
        ],
    }
    if batch:
        doc["batch"] = batch
    return doc


@contextlib.contextmanager
def agent_process(config: dict[str, Any], workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m edge.cli run`` on ``config``; SIGTERM it at the end."""
    path = workdir / f"{config['device']}.toml"
    path.write_text(_toml(config))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    log = (workdir / f"{config['device']}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(path)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _wait(
    cond: Callable[[], _T | None],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
) -> _T:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the agent exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def _status_topic(device: str) -> str:
    return f"sgbench/v1/bench/{device}/status"


# -- phase 0: the outbox alone ------------------------------------------------------------
def outbox_inserts(work: Path) -> dict[str, Any]:
    """Numbered inserts per second (``Outbox.append``: counter + event, one transaction)."""
    from datetime import UTC, datetime

    from contract.codec import encode
    from contract.events import Reading, TelemetryEvent
    from edge.outbox import Outbox

    now = datetime.now(UTC)
    out: dict[str, Any] = {}
    for readings in (10, 50):
        batch = [
            Reading(sensor="s", metric=f"m{i}", value=20.0 + i, unit="degC", time=now)
            for i in range(readings)
        ]

        def payload(seq: int, batch: list[Reading] = batch) -> bytes:
            event = TelemetryEvent.create(site="bench", device="d", sequence=seq, readings=batch)
            return encode(event)

        out[f"payload_bytes_{readings}_readings"] = len(payload(0))
        runs: tuple[tuple[Literal["full", "normal"], int], ...] = (("full", 300), ("normal", 1500))
        for durability, n in runs:
            blob = payload(0)
            path = work / f"inserts-{durability}-{readings}.db"

            def same_blob(_seq: int, blob: bytes = blob) -> bytes:
                return blob

            with Outbox(path, durability=durability) as box:
                t0 = time.perf_counter()
                for _ in range(n):
                    box.append("t", "d", same_blob)
                rate = n / (time.perf_counter() - t0)
            out[f"inserts_per_s_{durability}_{readings}_readings"] = round(rate)
    return out


# -- phase 1: footprint ------------------------------------------------------------------
def footprint(broker: Broker, work: Path, *, seconds: float, warmup_s: float) -> dict[str, Any]:
    """RSS and CPU of the agent process at 10 sensors x 1 Hz."""
    device = "bench-footprint"
    config = agent_config(device, broker.port, work / "footprint.db", host=broker.host)
    watch = StatusWatch(broker.host, broker.port, _status_topic(device))
    try:
        with agent_process(config, work) as proc:
            _wait(lambda: watch.snapshot()[0] >= 1, 30, "the agent's birth message", proc)
            meter = ProcessMeter(proc.pid)
            time.sleep(warmup_s)  # let imports, first batches and the WAL settle
            rss: list[int] = []
            cpu0, t0 = meter.cpu_seconds(), time.monotonic()
            end = t0 + seconds
            while time.monotonic() < end:
                rss.append(meter.rss_bytes())
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            cpu1, t1 = meter.cpu_seconds(), time.monotonic()
            rss.append(meter.rss_bytes())
            # a heartbeat on demand is not available: read the stored counters at the end
        cpu_percent = 100.0 * (cpu1 - cpu0) / (t1 - t0)
        return {
            "sensors": 10,
            "interval_s": 1.0,
            "readings_per_s_offered": 10.0,
            "measured_s": round(t1 - t0, 1),
            "warmup_s": warmup_s,
            "rss_mb_max": round(max(rss) / 2**20, 1),
            "rss_mb_mean": round(sum(rss) / len(rss) / 2**20, 1),
            "cpu_percent_of_one_core": round(cpu_percent, 2),
            "meter": meter.source,
        }
    finally:
        watch.close()


# -- phase 2: unconstrained ------------------------------------------------------------------
def unconstrained(
    broker: Broker, work: Path, *, seconds: float, warmup_s: float, sensors: int = 50
) -> dict[str, Any]:
    """Measure the readings/s the broker PUBACKed with the offered load above capacity."""
    device = "bench-max"
    config = agent_config(
        device,
        broker.port,
        work / "max.db",
        host=broker.host,
        sensors=sensors,
        interval_s=sensors / OFFERED,  # more readings offered than one process can take
        batch={"max_readings": 50, "max_age_s": 1.0},
        outbox_extra={"max_rate": 0, "max_inflight": 200},
        heartbeat_s=0.5,
    )
    watch = StatusWatch(broker.host, broker.port, _status_topic(device))
    try:
        with agent_process(config, work) as proc:
            meter = ProcessMeter(proc.pid)
            _wait(lambda: watch.snapshot()[0] >= 2, 30, "the agent's status", proc)
            time.sleep(warmup_s)
            seen = watch.snapshot()[0]
            n0, first = _wait(lambda: _fresh(watch, seen), 5, "a heartbeat", proc)
            cpu0 = meter.cpu_seconds()
            time.sleep(seconds)
            _n1, last = _wait(lambda: _fresh(watch, n0), 5, "a heartbeat", proc)
            cpu1 = meter.cpu_seconds()
            rss = meter.rss_bytes()
        dt = last["uptime_s"] - first["uptime_s"]
        per_event = last["readings_stored"] / max(1, last["events_stored"])
        acked = (last["acked_total"] - first["acked_total"]) * per_event
        sampled = last["readings_stored"] - first["readings_stored"]
        depth_growth = last["outbox_depth"] - first["outbox_depth"]
        return {
            "sensors": sensors,
            "readings_per_s_offered": OFFERED,
            "measured_s": round(dt, 2),
            "readings_per_event": round(per_event, 2),
            "readings_per_s_acked": round(acked / dt),
            "events_per_s_acked": round((last["acked_total"] - first["acked_total"]) / dt),
            "readings_per_s_sampled": round(sampled / dt),
            "outbox_depth_growth_events": depth_growth,
            "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / dt, 1),
            "rss_mb": round(rss / 2**20, 1),
            "durability": "full",
            "max_inflight": 200,
        }
    finally:
        watch.close()


def _fresh(watch: StatusWatch, after: int) -> tuple[int, dict[str, Any]] | None:
    """Return the next status after message number ``after`` (None until it arrives)."""
    count, latest = watch.snapshot()
    if count > after and latest is not None and "acked_total" in latest:
        return count, latest
    return None


# -- phase 3: backlog ---------------------------------------------------------------------
def prefill(config: dict[str, Any], minutes: float) -> tuple[int, int]:
    """Store ``minutes`` of the config's sampling with the link down; return (events, readings).

    This is the agent's own code path (sampler, batcher, outbox) driven by a fake clock,
    so 10 minutes take seconds.
    """
    from edge.agent import Agent
    from edge.clock import FakeClock
    from edge.config import load_config
    from edge.transport import FakeTransport

    cfg = load_config(None, overrides=config)
    clock = FakeClock(start=_utc_now())
    agent = Agent(cfg, clock=clock, transport=FakeTransport(is_connected=False))
    agent.start()
    end = clock.monotonic() + minutes * 60
    while clock.monotonic() < end:
        wait = agent.step()
        clock.advance(min(max(wait, 1e-6), end - clock.monotonic()))
    agent.shutdown(drain_s=0)  # stores the open batch, closes the outbox
    return agent.status.events_stored, agent.status.readings_stored


def _utc_now() -> datetime:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _depth(path: Path) -> int | None:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return None


def backlog(
    broker: Broker, work: Path, *, minutes: float, rate: float, max_rate: float
) -> dict[str, Any]:
    """Drain a pre-filled outbox of ``minutes`` x ``rate`` readings/s after an outage."""
    tag = "paced" if max_rate else "unlimited"
    device = f"bench-backlog-{tag}"
    path = work / f"backlog-{tag}.db"
    config = agent_config(
        device,
        broker.port,
        path,
        host=broker.host,
        sensors=10,
        interval_s=10 / rate,  # 10 sensors: `rate` readings/s in all
        outbox_extra={"max_rate": max_rate},
    )
    t0 = time.perf_counter()
    events, readings = prefill(config, minutes)
    prefill_s = time.perf_counter() - t0
    # A witness: a persistent subscriber counts the telemetry messages that arrive.
    witness = StatusWatch(
        broker.host,
        broker.port,
        f"sgbench/v1/bench/{device}/telemetry",
        count_only=True,
        client_id=f"witness-{device}",  # a persistent session: it survives the restart
    )
    _wait(witness.subscribed.is_set, 10, "the witness subscriber")
    broker.stop()
    with agent_process(config, work) as proc:
        # the agent is up and storing new events with the broker still down
        _wait(lambda: (_depth(path) or 0) > events, 30, "the agent to store a new event", proc)
        broker.start()
        t_up = time.monotonic()
        steady = max(2, int(rate / 50) + 1)  # what sampling adds between two sends
        peak = events
        t_first = None
        while True:
            depth = _depth(path)
            if depth is not None:
                peak = max(peak, depth)
                if t_first is None and depth < peak:
                    t_first = time.monotonic()
                if depth <= steady:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"the agent exited ({proc.returncode}) during the drain")
            if time.monotonic() - t_up > 600:
                raise RuntimeError("the backlog did not drain in 10 minutes")
            time.sleep(0.005)
        t_done = time.monotonic()
    try:
        _wait(lambda: witness.snapshot()[0] >= events, 30, "the backlog at the witness")
    except RuntimeError:
        pass  # reported below
    finally:
        witness.close()
    drain_s = t_done - t_up
    per_event = readings / max(1, events)
    since_first = t_done - (t_first or t_up)
    return {
        "outage_minutes_simulated": minutes,
        "readings_per_s_during_outage": rate,
        "max_rate_events_per_s": max_rate or "unlimited",
        "backlog_events": events,
        "backlog_readings": readings,
        "readings_per_event": round(per_event, 1),
        "prefill_s": round(prefill_s, 1),
        "broker_restarted": broker.own,
        "reconnect_s": round((t_first or t_up) - t_up, 2),
        "drain_s": round(drain_s, 2),
        "drain_events_per_s": round(events / drain_s, 1),
        "drain_readings_per_s": round(readings / drain_s),
        # from the first delete on (too coarse to say when the whole drain is that short)
        "drain_readings_per_s_after_reconnect": (
            round(readings / since_first) if since_first >= 0.1 else None
        ),
        "witness_messages": witness.snapshot()[0],
        "all_arrived_at_witness": witness.snapshot()[0] >= events,
    }


# -- the whole bench ---------------------------------------------------------------------
def run_bench(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Run the three phases; return the JSON document."""
    with tempfile.TemporaryDirectory(prefix="sg-edge-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        broker = Broker(args.host, args.port, work)
        try:
            log("outbox: numbered inserts per second ...")
            ob = outbox_inserts(work)
            log(f"footprint: 10 sensors x 1 Hz for {args.footprint_s:.0f} s ...")
            fp = footprint(broker, work, seconds=args.footprint_s, warmup_s=args.warmup_s)
            log(f"unconstrained: {args.unconstrained_s:.0f} s ...")
            mx = unconstrained(
                broker,
                work,
                seconds=args.unconstrained_s,
                warmup_s=3.0,
                sensors=args.max_sensors,
            )
            log(f"backlog: {args.backlog_minutes:g} min x {args.backlog_rate:g} readings/s ...")
            paced = backlog(
                broker, work, minutes=args.backlog_minutes, rate=args.backlog_rate, max_rate=50
            )
            free = backlog(
                broker, work, minutes=args.backlog_minutes, rate=args.backlog_rate, max_rate=0
            )
        finally:
            broker.stop()
    checks = [
        ("RSS at 10 readings/s", fp["rss_mb_max"], "MB", f"< {TARGET_RSS_MB:g}",
         fp["rss_mb_max"] < TARGET_RSS_MB),
        ("CPU at 10 readings/s", fp["cpu_percent_of_one_core"], "% of one core",
         f"< {TARGET_CPU_PERCENT:g}", fp["cpu_percent_of_one_core"] < TARGET_CPU_PERCENT),
        ("max sustained, PUBACKed", mx["readings_per_s_acked"], "readings/s",
         f">= {TARGET_READINGS_PER_S:,.0f}", mx["readings_per_s_acked"] >= TARGET_READINGS_PER_S),
    ]  # fmt: skip
    return {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "broker": {"host": broker.host, "port": broker.port, "own_mosquitto": broker.own},
        "outbox": ob,
        "footprint": fp,
        "unconstrained": mx,
        "backlog": {"default_max_rate": paced, "unlimited": free},
        "targets": [
            {"what": w, "value": v, "unit": u, "target": t, "pass": bool(ok)}
            for w, v, u, t, ok in checks
        ],
        "pass": all(ok for *_x, ok in checks),
    }


def table(doc: dict[str, Any]) -> str:
    """Format the human summary: targets with pass/fail, then the drain figures."""
    rows = [("figure", "measured", "target", "")]
    for t in doc["targets"]:
        value = f"{t['value']:,}" if isinstance(t["value"], int) else f"{t['value']:g}"
        rows.append(
            (t["what"], f"{value} {t['unit']}", t["target"], "PASS" if t["pass"] else "FAIL")
        )
    for key, label in (("default_max_rate", "max_rate 50/s"), ("unlimited", "max_rate 0")):
        b = doc["backlog"][key]
        rows.append(
            (
                f"backlog drain, {label}",
                f"{b['drain_readings_per_s']:,} readings/s ({b['drain_events_per_s']:g} events/s)",
                "(no target)",
                f"{b['backlog_readings']:,} readings in {b['drain_s']:g} s",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    mx = doc["unconstrained"]
    fp = doc["footprint"]
    lines += [
        "",
        f"footprint: {fp['measured_s']} s measured after {fp['warmup_s']} s warm-up,"
        f" RSS mean {fp['rss_mb_mean']} MB ({fp['meter']})",
        f"unconstrained: {mx['readings_per_s_sampled']:,} readings/s sampled,"
        f" {mx['events_per_s_acked']:,} events/s acked x {mx['readings_per_event']:g},"
        f" outbox grew {mx['outbox_depth_growth_events']} events, agent CPU"
        f" {mx['cpu_percent_of_one_core']}% of one core, RSS {mx['rss_mb']} MB",
        "overall: " + ("PASS" if doc["pass"] else "FAIL"),
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bench options (shared by ``sensorgate edge bench`` and ``python -m``)."""
    parser.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="a running broker's port (default: start our own mosquitto)"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON here")
    parser.add_argument("--footprint-s", type=float, default=30.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--unconstrained-s", type=float, default=15.0)
    parser.add_argument(
        "--max-sensors", type=int, default=50, help="simulated sensors in the unconstrained phase"
    )
    parser.add_argument("--backlog-minutes", type=float, default=10.0)
    parser.add_argument("--backlog-rate", type=float, default=100.0, help="readings/s")
    parser.add_argument(
        "--quick", action="store_true", help="short phases (a smoke run, not the figures)"
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the bench; print the table (or JSON); exit 0 when every target is met."""
    if args.quick:
        args.footprint_s, args.warmup_s, args.unconstrained_s = 3.0, 1.0, 3.0
        args.backlog_minutes = min(args.backlog_minutes, 1.0)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    doc = run_bench(args, log)
    text = json.dumps(doc, indent=2)
    print(text if args.json else table(doc))
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if doc["pass"] else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m edge.bench`` (the same as ``sensorgate edge bench``)."""
    parser = argparse.ArgumentParser(prog="python -m edge.bench")
    add_arguments(parser)
    return cmd_bench(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
