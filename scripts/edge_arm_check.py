"""``make edge-arm-check``: the edge agent installed and run in an ARM Debian userland.

    python scripts/edge_arm_check.py [--arch arm64|armv7|all] [--seconds 60] [--json]
                                     [--out FILE] [--cache DIR] [--rebuild] [--baseline]

For each architecture:

1. an ARM Debian bookworm userland is built with debootstrap under qemu user-mode
   emulation and cached (``~/.cache/sensorgate/<arch>-rootfs``, reused later);
2. a wheel of this checkout is built on the host and installed in the chroot by
   ``deploy/edge/install.sh --from <wheel>``, as on a Pi: python3-venv, only the
   ``edge`` extra, wheels resolved by the ARM pip from PyPI;
3. mosquitto starts on the host's loopback; the chroot shares the host's network,
   so the agent reaches it at 127.0.0.1 (checked first, from ARM Python);
4. ``sensorgate-edge run`` runs in the chroot as the ``sensorgate`` user for
   ``--seconds`` with simulated sensors and the system driver, then gets SIGTERM;
5. a subscriber on the host checks that the readings arrived: sequences in order,
   no gap, no fault, every stored reading delivered; RSS and CPU of the emulated
   agent process are read from the host.

CPU under emulation is qemu's time on this x86 host, translation included: it is
not a Raspberry Pi's CPU. Exit codes: 0 pass, 1 a check failed, 2 could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arm_rootfs  # a sibling module (scripts/ is no package)

__all__ = ["analyse", "main", "parse_args", "table"]

REPO = Path(__file__).resolve().parents[1]
SRC_IN_CHROOT = "/opt/sensorgate-src"
AGENT = "/opt/sensorgate/venv/bin/sensorgate-edge"
CONFIG_IN_CHROOT = "/etc/sensorgate/edge.toml"
EXIT_PASS, EXIT_FAIL, EXIT_CANNOT = 0, 1, 2
CPU_NOTE = (
    "CPU is qemu's time on this x86 host (translation included), not a Raspberry Pi's CPU;"
    " RSS includes qemu's own memory"
)


# -- arguments ----------------------------------------------------------------------------
def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``--arch all`` means arm64 then armv7."""
    p = argparse.ArgumentParser(prog="edge_arm_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=[*arm_rootfs.ARCHES, "all"], default="arm64")
    p.add_argument("--seconds", type=float, default=60.0, help="measured run (default 60)")
    p.add_argument("--sensors", type=int, default=10, help="simulated sensors at 1 Hz")
    p.add_argument("--system-interval-s", type=float, default=5.0, help="system driver")
    p.add_argument("--batch-readings", type=int, default=10, help="readings per event")
    p.add_argument("--startup-timeout-s", type=float, default=300.0)
    p.add_argument("--cache", type=Path, default=arm_rootfs.DEFAULT_CACHE)
    p.add_argument("--mirror", help="Debian mirror (default: the host's apt sources)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached rootfs")
    p.add_argument("--baseline", action="store_true", help="also run natively on the host")
    p.add_argument("--json", action="store_true", help="print the JSON document")
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON here")
    args = p.parse_args(None if argv is None else list(argv))
    if args.seconds < 10:
        p.error(f"--seconds must be at least 10 (got {args.seconds:g})")
    if not 1 <= args.batch_readings <= 500:
        p.error(f"--batch-readings must be 1..500 (got {args.batch_readings})")
    if args.sensors < 1:
        p.error(f"--sensors must be at least 1 (got {args.sensors})")
    args.arches = list(arm_rootfs.ARCHES) if args.arch == "all" else [args.arch]
    return args


def agent_config(args: argparse.Namespace, *, device: str, port: int, outbox: str) -> str:
    """Return the agent's TOML: simulated sensors at 1 Hz plus the system driver."""
    lines = [
        'site = "armcheck"',
        f'device = "{device}"',
        'log_level = "INFO"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "reconnect_min_s = 0.5",
        "reconnect_max_s = 2",
        "[batch]",
        f"max_readings = {args.batch_readings}",
        "max_age_s = 5",
        "[outbox]",
        f'path = "{outbox}"',
        "[status]",
        "heartbeat_s = 10",
    ]
    for i in range(args.sensors):
        lines += ["[[sensors]]", f'id = "sim{i:02d}"', 'driver = "simulated"', "interval_s = 1"]
        lines.append(f"options = {{ seed = {i} }}")
    lines += ["[[sensors]]", 'id = "host"', 'driver = "system"']
    lines.append(f"interval_s = {args.system_interval_s:g}")
    return "\n".join(lines) + "\n"


# -- the verdict (pure) -------------------------------------------------------------------
def analyse(
    telemetry: list[dict[str, Any]],
    statuses: list[dict[str, Any]],
    *,
    seconds: float,
    expected_per_s: float,
) -> dict[str, Any]:
    """Judge what the host subscriber received, in arrival order.

    ``telemetry`` are decoded telemetry events, ``statuses`` decoded status events.
    Fails on: nothing delivered, a sequence out of order, a gap, a fault reading, a
    series whose reading times go backwards, fewer readings than the agent's last
    report said it stored, or no clean goodbye.
    """
    seqs = [int(e["data"]["sequence"]) for e in telemetry]
    unique = sorted(set(seqs))
    gaps = [
        [a + 1, b - 1] for a, b in itertools.pairwise(unique) if b - a > 1
    ]  # inclusive ranges of missing sequences
    out_of_order = sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
    duplicates = len(seqs) - len(unique)
    readings = [r for e in telemetry for r in e["data"]["readings"]]
    faults = [r for r in readings if r.get("fault")]
    last_time: dict[tuple[str, str], str] = {}
    backwards = 0
    for r in readings:
        key = (r["sensor"], r["metric"])
        if key in last_time and r["time"] <= last_time[key]:
            backwards += 1
        last_time[key] = r["time"]
    details = [s["data"].get("details") or {} for s in statuses]
    reports = [d for d in details if "readings_stored" in d]
    stored = max((d["readings_stored"] for d in reports), default=None)
    missed = None
    if reports:
        missed = sum(s.get("missed_ticks", 0) for s in reports[-1].get("sensors", {}).values())
    reasons = [s["data"].get("reason") for s in statuses]
    expected = round(seconds * expected_per_s)
    problems = []
    if not telemetry:
        problems.append("no telemetry arrived at the host subscriber")
    if gaps:
        problems.append(f"sequence gaps: {gaps}")
    if out_of_order:
        problems.append(f"{out_of_order} telemetry events arrived out of sequence order")
    if faults:
        problems.append(f"{len(faults)} fault readings, first: {faults[0].get('fault')!r}")
    if backwards:
        problems.append(f"{backwards} readings older than the previous one of their series")
    if stored is not None and len(readings) < stored:
        problems.append(f"{len(readings)} readings delivered, the agent reported {stored} stored")
    if "birth" not in reasons:
        problems.append("no birth status from the agent")
    if "shutdown" not in reasons:
        problems.append("no goodbye (shutdown) status: the agent did not stop cleanly")
    return {
        "events": len(telemetry),
        "readings": len(readings),
        "readings_expected_at_least": expected,
        "readings_per_s": round(len(readings) / seconds, 2) if seconds else None,
        "first_sequence": unique[0] if unique else None,
        "last_sequence": unique[-1] if unique else None,
        "gaps": gaps,
        "out_of_order": out_of_order,
        "duplicates": duplicates,
        "faults": len(faults),
        "series": len(last_time),
        "series_backwards": backwards,
        "agent_readings_stored": stored,
        "agent_missed_ticks": missed,
        "status_reasons": sorted({r for r in reasons if r}),
        "problems": problems,
        "pass": not problems,
    }


def table(doc: dict[str, Any]) -> str:
    """Format the human summary: one column per run (arch, or the native baseline)."""
    runs = doc["runs"]
    rows: list[tuple[str, ...]] = [("", *[r["arch"] for r in runs])]

    def row(label: str, fn: Callable[[dict[str, Any]], Any]) -> None:
        cells = []
        for r in runs:
            try:
                value = fn(r)
            except (KeyError, TypeError):
                value = None
            cells.append("-" if value is None else str(value))
        rows.append((label, *cells))

    row("stands for", lambda r: r["stands_for"])
    row("python / machine", lambda r: f"{r['python']} {r['machine']}")
    row("pydantic-core wheel", lambda r: r["pydantic_core_wheel"])
    row("rootfs", lambda r: _rootfs(r))
    row("install.sh", lambda r: f"{r['install_s']:g} s")
    row("whole check", lambda r: f"{r['wall_s']:g} s")
    row("start to birth", lambda r: f"{r['startup_s']:g} s")
    row("measured", lambda r: f"{r['measured_s']:g} s")
    row("RSS max / mean", lambda r: f"{r['rss_mb_max']:g} / {r['rss_mb_mean']:g} MB")
    row("CPU", lambda r: f"{r['cpu_percent_of_one_core']:g} % of one core")
    row("readings delivered", lambda r: f"{r['check']['readings']} ({r['check']['events']} events)")
    row("sequences", lambda r: f"{r['check']['first_sequence']}..{r['check']['last_sequence']}")
    row(
        "gaps / out of order", lambda r: f"{len(r['check']['gaps'])} / {r['check']['out_of_order']}"
    )
    row("duplicates / faults", lambda r: f"{r['check']['duplicates']} / {r['check']['faults']}")
    row("missed ticks", lambda r: r["check"]["agent_missed_ticks"])
    row("verdict", lambda r: "PASS" if r["pass"] else "FAIL")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("")
    lines.append(f"note: {CPU_NOTE}.")
    for r in runs:
        for problem in r.get("problems", []):
            lines.append(f"{r['arch']}: FAIL: {problem}")
    lines.append("overall: " + ("PASS" if doc["pass"] else "FAIL"))
    return "\n".join(lines)


def _rootfs(r: dict[str, Any]) -> str:
    if r.get("rootfs_build_s") is None:
        return "cached" if r.get("rootfs") else "-"
    return f"built in {r['rootfs_build_s']:g} s"


# -- the host side: subscriber, wheel, install, run -----------------------------------------
class Subscriber:
    """The host's witness: every telemetry and status message of one device, in order."""

    def __init__(self, port: int, site: str, device: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._lock = threading.Lock()
        self._raw: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        topics = [(f"sg/v1/{site}/{device}/{kind}", 1) for kind in ("telemetry", "status")]
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_a: c.subscribe(topics)
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._lock:  # only hand over: decoding happens off the paho thread
            self._raw.append((msg.topic, bytes(msg.payload)))

    def decoded(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Return (telemetry events, status events) received so far, in arrival order."""
        with self._lock:
            raw = list(self._raw)
        telemetry, statuses = [], []
        for topic, payload in raw:
            if not payload:
                continue
            doc = json.loads(payload)
            (telemetry if topic.endswith("/telemetry") else statuses).append(doc)
        return telemetry, statuses

    def reasons(self) -> list[str]:
        """Return the ``reason`` of every status so far (birth, heartbeat, shutdown, ...)."""
        return [s["data"].get("reason") for s in self.decoded()[1]]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def build_wheel(out: Path, log: Callable[[str], None]) -> Path:
    """Build this checkout's wheel on the host (pure Python: one wheel fits every arch)."""
    log("building the wheel of this checkout")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = sorted(out.glob("sensorgate-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise CheckError(f"pip wheel failed:\n{proc.stderr[-2000:]}")
    return wheels[-1]


class CheckError(Exception):
    """The check could not run; the message says what to do."""


def _wait(cond: Callable[[], Any], timeout: float, what: str, proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise CheckError(f"the agent exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise CheckError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _ids(root: Path, name: str, *, group: bool = False) -> int:
    for line in (root / ("etc/group" if group else "etc/passwd")).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise CheckError(f"no {'group' if group else 'user'} {name!r} in {root}: install.sh failed?")


def _in_chroot(root: Path, argv: list[str], log_path: Path, what: str, timeout: float) -> str:
    cmd = arm_rootfs.chroot_argv(
        root, argv, env={"HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CheckError(f"{what} did not finish in {timeout:.0f} s") from exc
    log_path.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise CheckError(f"{what} failed (exit {proc.returncode}), log {log_path}:\n{tail}")
    return proc.stdout


def install(root: Path, wheel: Path, work: Path, log: Callable[[str], None]) -> float:
    """Copy the wheel and deploy/edge into the chroot and run install.sh there; return seconds."""
    src = root / SRC_IN_CHROOT.lstrip("/")
    if src.exists():
        subprocess.run(["rm", "-rf", str(src)], check=True)
    (src / "dist").mkdir(parents=True)
    (src / "docs").mkdir()
    subprocess.run(["cp", "-r", str(REPO / "deploy"), str(src / "deploy")], check=True)
    subprocess.run(["cp", str(REPO / "docs/edge.md"), str(src / "docs/edge.md")], check=True)
    subprocess.run(["cp", str(wheel), str(src / "dist")], check=True)
    arm_rootfs.copy_resolv_conf(root)
    arm_rootfs.ensure_hosts_entry(root)
    if arm_rootfs.copy_local_cas(root):  # pip in the chroot trusts what the host trusts
        _in_chroot(root, ["update-ca-certificates"], work / "ca.log", "update-ca-certificates", 300)
    log("install.sh in the chroot (apt-get, pip from PyPI under emulation)")
    t0 = time.monotonic()
    argv = ["bash", f"{SRC_IN_CHROOT}/deploy/edge/install.sh"]
    argv += ["--from", f"{SRC_IN_CHROOT}/dist/{wheel.name}"]
    _in_chroot(root, argv, work / "install.log", "install.sh in the chroot", 1800)
    seconds = round(time.monotonic() - t0, 1)
    stale = _stale_files(root)
    if stale:
        raise CheckError(f"the chroot's venv does not hold this checkout: {stale[:5]} differ")
    return seconds


def _stale_files(root: Path) -> list[str]:
    """Return the package files that differ between this checkout and the chroot's venv."""
    sites = sorted(root.glob("opt/sensorgate/venv/lib/python3*/site-packages"))
    if not sites:
        return ["(no venv)"]
    ours = [p for pkg in ("edge", "contract") for p in (REPO / pkg).rglob("*.py")]
    return [
        str(p.relative_to(REPO))
        for p in ours
        if not (sites[0] / p.relative_to(REPO)).is_file()
        or (sites[0] / p.relative_to(REPO)).read_bytes() != p.read_bytes()
    ]


def _wheel_tag(root: Path) -> str | None:
    for wheel in root.glob("opt/sensorgate/venv/lib/python3*/site-packages/pydantic_core-*/WHEEL"):
        tags = [ln.split(":", 1)[1].strip() for ln in wheel.read_text().splitlines()]
        tags = [t for t in tags if t.startswith("cp")]
        version = wheel.parent.name.split("-")[1].removesuffix(".dist")
        return f"{version} {tags[0] if tags else '?'}"
    return None


def run_agent(
    args: argparse.Namespace,
    *,
    label: str,
    argv: list[str],
    config_text: str,
    config_path: Path,
    device: str,
    port: int,
    log_path: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Start the agent, measure it for ``args.seconds`` after its birth, stop it, judge."""
    from edge.bench import ProcessMeter

    config_path.write_text(config_text)
    witness = Subscriber(port, "armcheck", device)
    try:
        _wait(witness.subscribed.is_set, 10, "the host subscriber")
        log(f"{label}: starting the agent")
        t_spawn = time.monotonic()
        with log_path.open("wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            born = lambda: "birth" in witness.reasons()  # noqa: E731
            _wait(born, args.startup_timeout_s, "the agent's birth message", proc)
            startup_s = time.monotonic() - t_spawn
            log(f"{label}: online after {startup_s:.1f} s; measuring {args.seconds:g} s")
            meter = ProcessMeter(proc.pid)
            rss: list[int] = []
            cpu0, t0 = meter.cpu_seconds(), time.monotonic()
            while (left := t0 + args.seconds - time.monotonic()) > 0:
                if proc.poll() is not None:
                    raise CheckError(f"the agent exited ({proc.returncode}); log {log_path}")
                rss.append(meter.rss_bytes())
                time.sleep(min(1.0, left))
            cpu1, t1 = meter.cpu_seconds(), time.monotonic()
            rss.append(meter.rss_bytes())
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        with contextlib.suppress(CheckError):  # analyse() reports a missing goodbye
            _wait(lambda: "shutdown" in witness.reasons(), 15, "the goodbye status")
        telemetry, statuses = witness.decoded()
    finally:
        witness.close()
    # Sampling starts before the birth and the goodbye stores the open batches, so the
    # agent's whole life delivers more than the measured window: 90 % of it is the floor.
    per_s = args.sensors * 0.9
    check = analyse(telemetry, statuses, seconds=args.seconds, expected_per_s=per_s)
    if code != 0:
        check["problems"].append(f"the agent exited with {code} after SIGTERM (log {log_path})")
    if check["readings"] < check["readings_expected_at_least"]:
        check["problems"].append(
            f"{check['readings']} readings delivered, expected at least"
            f" {check['readings_expected_at_least']} in {args.seconds:g} s"
        )
    check["pass"] = not check["problems"]
    return {
        "startup_s": round(startup_s, 1),
        "measured_s": round(t1 - t0, 1),
        "rss_mb_max": round(max(rss) / 2**20, 1),
        "rss_mb_mean": round(sum(rss) / len(rss) / 2**20, 1),
        "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "meter": meter.source,
        "exit_code": code,
        "check": check,
        "problems": check["problems"],
        "pass": check["pass"],
    }


def check_arch(
    args: argparse.Namespace, arch: arm_rootfs.Arch, *, wheel: Path, port: int, work: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """Build or reuse the rootfs, install the agent, run it, and judge one architecture."""
    doc: dict[str, Any] = {"arch": arch.name, "debian_arch": arch.debian}
    doc["stands_for"] = arch.stands_for
    t_start = time.monotonic()
    arm_rootfs.ensure_host(arch, log)
    mirror = args.mirror or arm_rootfs.host_mirror()
    t0 = time.monotonic()
    root, built = arm_rootfs.ensure_rootfs(
        arch, args.cache, mirror=mirror, rebuild=args.rebuild, log=log
    )
    doc["rootfs"] = str(root)
    doc["rootfs_build_s"] = None if built is None else round(built)
    log(f"{arch.name}: rootfs {'built' if built else 'cached'} in {time.monotonic() - t0:.0f} s")
    doc["install_s"] = install(root, wheel, work, log)
    doc["pydantic_core_wheel"] = _wheel_tag(root)
    # The chroot shares the host's network namespace: the loopback broker is 127.0.0.1.
    probe = (
        "import platform, socket, sys;"
        f"socket.create_connection(('127.0.0.1', {port}), 10).close();"
        "print(platform.machine(), platform.python_version())"
    )
    out = _in_chroot(root, ["python3", "-c", probe], work / "probe.log", "reaching the host's"
                     f" broker at 127.0.0.1:{port} from the chroot", 120).split()  # fmt: skip
    doc["machine"], doc["python"] = out[0], out[1]
    if doc["machine"] != arch.machine:
        raise CheckError(f"the chroot runs {doc['machine']}, not {arch.machine}: binfmt?")
    uid, gid = _ids(root, "sensorgate"), _ids(root, "sensorgate", group=True)
    groups = ",".join(str(_ids(root, g, group=True)) for g in ("i2c", "gpio"))
    device = f"arm-{arch.name}-{os.getpid()}"
    state = root / "var/lib/sensorgate"
    for stale in state.glob("outbox.db*"):
        stale.unlink()
    config = root / CONFIG_IN_CHROOT.lstrip("/")
    argv = arm_rootfs.chroot_argv(
        root,
        [AGENT, "run", "--config", CONFIG_IN_CHROOT],
        userspec=f"{uid}:{gid}",
        groups=groups,
        env={"HOME": "/var/lib/sensorgate", "LANG": "C.UTF-8"},
    )
    text = agent_config(args, device=device, port=port, outbox="/var/lib/sensorgate/outbox.db")
    doc.update(
        run_agent(
            args, label=arch.name, argv=argv, config_text=text, config_path=config,
            device=device, port=port, log_path=work / f"agent-{arch.name}.log", log=log,
        )
    )  # fmt: skip
    doc["wall_s"] = round(time.monotonic() - t_start)
    return doc


def baseline(
    args: argparse.Namespace, *, port: int, work: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """Run the same agent and config natively on this host (the repo's venv), to compare."""
    import platform

    device = f"native-{os.getpid()}"
    text = agent_config(args, device=device, port=port, outbox=str(work / "native-outbox.db"))
    env_argv = ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "edge.cli", "run"]
    doc: dict[str, Any] = {"arch": f"native {platform.machine()}", "stands_for": "this host"}
    doc.update(python=platform.python_version(), machine=platform.machine())
    doc.update(
        run_agent(
            args, label="native", argv=[*env_argv, "--config", str(work / "native.toml")],
            config_text=text, config_path=work / "native.toml", device=device, port=port,
            log_path=work / "agent-native.log", log=log,
        )
    )  # fmt: skip
    return doc


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Run every requested architecture (and the baseline); return the JSON document."""
    if os.geteuid() != 0:
        raise CheckError("run as root (debootstrap and chroot need it): sudo make edge-arm-check")
    args.cache.mkdir(parents=True, exist_ok=True)
    lock = (args.cache / "edge-arm-check.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise CheckError(f"another edge-arm-check is using {args.cache}: wait for it") from None
    try:
        return _run_locked(args, log)
    finally:
        lock.close()


def _run_locked(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    from gateway.localstack.services import start_mosquitto

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sg-edge-arm-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        wheel = build_wheel(work / "dist", log)
        broker, port = start_mosquitto(work, host="127.0.0.1")
        logs = args.cache / "edge-arm-check-logs"
        logs.mkdir(parents=True, exist_ok=True)
        try:
            log(f"mosquitto on the host at 127.0.0.1:{port}; logs in {logs}")
            if args.baseline:
                runs.append(baseline(args, port=port, work=work, log=log))
            for name in args.arches:
                arch = arm_rootfs.ARCHES[name]
                arch_logs = logs / name
                arch_logs.mkdir(parents=True, exist_ok=True)
                for old in arch_logs.glob("*.log"):
                    old.unlink()
                try:
                    runs.append(
                        check_arch(args, arch, wheel=wheel, port=port, work=arch_logs, log=log)
                    )
                except CheckError as exc:
                    runs.append({"arch": name, "stands_for": arch.stands_for, "pass": False,
                                 "problems": [str(exc)]})  # fmt: skip
        finally:
            broker.stop()
            for f in work.glob("*.log"):  # the baseline's
                f.replace(logs / f.name)
    return {
        "seconds": args.seconds,
        "config": {
            "simulated_sensors_at_1hz": args.sensors,
            "system_interval_s": args.system_interval_s,
            "batch_max_readings": args.batch_readings,
        },
        "host": {"cpus": os.cpu_count(), "machine": os.uname().machine},
        "note": CPU_NOTE,
        "logs": str(logs),
        "runs": runs,
        "pass": bool(runs) and all(r["pass"] for r in runs if r["arch"] in arm_rootfs.ARCHES),
    }


def main(argv: Iterable[str] | None = None) -> int:
    """Run the check; print the table (or JSON); exit 0 pass, 1 fail, 2 could not run."""
    args = parse_args(argv)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    try:
        doc = run(args, log)
    except (CheckError, arm_rootfs.RootfsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CANNOT
    text = json.dumps(doc, indent=2)
    print(text if args.json else table(doc))
    if args.out is not None:
        args.out.write_text(text + "\n")
    if not doc["pass"]:
        print(
            f"edge-arm-check FAILED: see the problems above and the logs in {doc['logs']}/<arch>"
            " (install.log, agent-<arch>.log); rerun with --rebuild if the rootfs is suspect",
            file=sys.stderr,
        )
    return EXIT_PASS if doc["pass"] else EXIT_FAIL


if __name__ == "__main__":
    raise SystemExit(main())
