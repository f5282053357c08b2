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
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arm_rootfs  # sibling modules (scripts/ is no package)
from arm_install import REPO, CheckError, build_wheel, ids, in_chroot, install, wheel_tag
from arm_witness import CPU_NOTE, Subscriber, analyse, table

__all__ = ["analyse", "main", "parse_args", "table"]

AGENT = "/opt/sensorgate/venv/bin/sensorgate-edge"
CONFIG_IN_CHROOT = "/etc/sensorgate/edge.toml"
EXIT_PASS, EXIT_FAIL, EXIT_CANNOT = 0, 1, 2


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
# -- the host side: subscriber, wheel, install, run -----------------------------------------
def _wait(cond: Callable[[], Any], timeout: float, what: str, proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise CheckError(f"the agent exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise CheckError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


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
            figures = _measure(proc, args.seconds, log_path)
        finally:
            code = _stop(proc)
        with contextlib.suppress(CheckError):  # analyse() reports a missing goodbye
            _wait(lambda: "shutdown" in witness.reasons(), 15, "the goodbye status")
        telemetry, statuses = witness.decoded()
    finally:
        witness.close()
    check = _judge(args, telemetry, statuses, code, log_path)
    return {
        "startup_s": round(startup_s, 1),
        **figures,
        "exit_code": code,
        "check": check,
        "problems": check["problems"],
        "pass": check["pass"],
    }


def _measure(proc: subprocess.Popen[bytes], seconds: float, log_path: Path) -> dict[str, Any]:
    """Sample the agent's RSS every second and its CPU time over ``seconds``."""
    from edge.bench import ProcessMeter

    meter = ProcessMeter(proc.pid)
    rss: list[int] = []
    cpu0, t0 = meter.cpu_seconds(), time.monotonic()
    while (left := t0 + seconds - time.monotonic()) > 0:
        if proc.poll() is not None:
            raise CheckError(f"the agent exited ({proc.returncode}); log {log_path}")
        rss.append(meter.rss_bytes())
        time.sleep(min(1.0, left))
    cpu1, t1 = meter.cpu_seconds(), time.monotonic()
    rss.append(meter.rss_bytes())
    return {
        "measured_s": round(t1 - t0, 1),
        "rss_mb_max": round(max(rss) / 2**20, 1),
        "rss_mb_mean": round(sum(rss) / len(rss) / 2**20, 1),
        "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "meter": meter.source,
    }


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM the agent (if it still runs), wait, SIGKILL if it must; return its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _judge(
    args: argparse.Namespace,
    telemetry: list[dict[str, Any]],
    statuses: list[dict[str, Any]],
    code: int,
    log_path: Path,
) -> dict[str, Any]:
    """Analyse what arrived; add the exit code and the delivered count to the problems."""
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
    return check


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
    doc["pydantic_core_wheel"] = wheel_tag(root)
    # The chroot shares the host's network namespace: the loopback broker is 127.0.0.1.
    probe = (
        "import platform, socket, sys;"
        f"socket.create_connection(('127.0.0.1', {port}), 10).close();"
        "print(platform.machine(), platform.python_version())"
    )
    out = in_chroot(root, ["python3", "-c", probe], work / "probe.log", "reaching the host's"
                     f" broker at 127.0.0.1:{port} from the chroot", 120).split()  # fmt: skip
    doc["machine"], doc["python"] = out[0], out[1]
    if doc["machine"] != arch.machine:
        raise CheckError(f"the chroot runs {doc['machine']}, not {arch.machine}: binfmt?")
    uid, gid = ids(root, "sensorgate"), ids(root, "sensorgate", group=True)
    groups = ",".join(str(ids(root, g, group=True)) for g in ("i2c", "gpio"))
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
    from edge.localbroker import start_mosquitto

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
