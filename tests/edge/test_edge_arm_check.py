"""The pure parts of scripts/edge_arm_check.py and scripts/arm_rootfs.py.

The check itself (debootstrap, qemu, a minute of emulated agent) is `make
edge-arm-check`, not a test; here: arguments, the agent's config, the verdict on what
a subscriber received, the table, and the host probes fed with files.
"""

from __future__ import annotations

import importlib
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.config import load_config

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
check = importlib.import_module("edge_arm_check")
rootfs = importlib.import_module("arm_rootfs")

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def telemetry(seq: int, *, start: int = 0, n: int = 2, fault: str | None = None) -> dict[str, Any]:
    readings = []
    for i in range(n):
        reading: dict[str, Any] = {
            "sensor": "sim00",
            "metric": "value",
            "time": (T0 + timedelta(seconds=start + i)).isoformat(),
        }
        if fault:
            reading["fault"] = fault
        else:
            reading["value"] = 1.0
        readings.append(reading)
    return {"data": {"sequence": seq, "readings": readings}}


def status(reason: str, **details: Any) -> dict[str, Any]:
    return {"data": {"reason": reason, "details": details}}


def stream(seqs: list[int]) -> list[dict[str, Any]]:
    return [telemetry(s, start=2 * s) for s in seqs]


GOOD_STATUSES = [status("birth", readings_stored=0), status("heartbeat", readings_stored=6),
                 status("shutdown")]  # fmt: skip


def test_parse_args_defaults_and_all() -> None:
    args = check.parse_args([])
    assert args.arches == ["arm64"]
    assert args.seconds == 60
    assert not args.json
    assert check.parse_args(["--arch", "all"]).arches == ["arm64", "armv7"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seconds", "5"], "--seconds must be at least 10 (got 5)"),
        (["--batch-readings", "0"], "--batch-readings must be 1..500 (got 0)"),
        (["--arch", "riscv64"], "invalid choice: 'riscv64'"),
    ],
)
def test_parse_args_refuses(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        check.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_agent_config_is_a_valid_agent_config(tmp_path: Path) -> None:
    args = check.parse_args(["--sensors", "3", "--batch-readings", "7"])
    path = tmp_path / "edge.toml"
    path.write_text(check.agent_config(args, device="arm-x", port=1884, outbox="/tmp/o.db"))
    config = load_config(path)
    assert [s.driver for s in config.sensors] == ["simulated"] * 3 + ["system"]
    assert config.mqtt.port == 1884
    assert config.batch.max_readings == 7
    assert config.topics.telemetry("armcheck", "arm-x") == "sg/v1/armcheck/arm-x/telemetry"


def test_analyse_passes_an_ordered_stream_without_gaps() -> None:
    doc = check.analyse(stream([0, 1, 2]), GOOD_STATUSES, seconds=10, expected_per_s=0.5)
    assert doc["pass"], doc["problems"]
    assert (doc["events"], doc["readings"], doc["first_sequence"], doc["last_sequence"]) == (
        3, 6, 0, 2,
    )  # fmt: skip
    assert doc["gaps"] == []
    assert doc["readings_per_s"] == 0.6


def test_analyse_reports_gaps_as_inclusive_ranges() -> None:
    doc = check.analyse(stream([0, 1, 4, 5, 7]), GOOD_STATUSES, seconds=10, expected_per_s=0)
    assert doc["gaps"] == [[2, 3], [6, 6]]
    assert not doc["pass"]
    assert "sequence gaps: [[2, 3], [6, 6]]" in doc["problems"]


def test_analyse_reports_out_of_order_and_counts_duplicates() -> None:
    events = [telemetry(0), telemetry(2, start=4), telemetry(1, start=2), telemetry(2, start=6)]
    doc = check.analyse(events, GOOD_STATUSES, seconds=10, expected_per_s=0)
    assert doc["out_of_order"] == 1  # 2 -> 1; the later 2 is a duplicate, not a step back
    assert doc["duplicates"] == 1
    assert doc["series_backwards"] == 1  # seq 1 went back in time after seq 2
    assert not doc["pass"]


def test_analyse_fails_on_faults_missing_readings_and_no_goodbye() -> None:
    events = [telemetry(0), telemetry(1, start=2, fault="bus error")]
    statuses = [status("birth"), status("heartbeat", readings_stored=9)]
    doc = check.analyse(events, statuses, seconds=10, expected_per_s=0)
    problems = "\n".join(doc["problems"])
    assert "2 fault readings, first: 'bus error'" in problems
    assert "4 readings delivered, the agent reported 9 stored" in problems
    assert "no goodbye (shutdown) status" in problems


def test_analyse_fails_on_nothing() -> None:
    doc = check.analyse([], [], seconds=60, expected_per_s=9)
    assert not doc["pass"]
    assert "no telemetry arrived at the host subscriber" in doc["problems"]
    assert doc["readings_expected_at_least"] == 540


def test_table_shows_each_run_and_the_emulation_note() -> None:
    result = check.analyse(stream([0, 1, 2]), GOOD_STATUSES, seconds=10, expected_per_s=0)
    run = {
        "arch": "arm64", "stands_for": "Pi", "python": "3.11.2", "machine": "aarch64",
        "pydantic_core_wheel": "2.41.5 cp311-cp311-manylinux_2_17_aarch64", "rootfs": "/r",
        "rootfs_build_s": None, "install_s": 40.0, "startup_s": 9.5, "measured_s": 60.0,
        "rss_mb_max": 90.1, "rss_mb_mean": 89.0, "cpu_percent_of_one_core": 7.5,
        "check": result, "problems": [], "pass": True,
    }  # fmt: skip
    failed = {"arch": "armv7", "stands_for": "Pi 32", "pass": False, "problems": ["no wheel"]}
    text = check.table({"runs": [run, failed], "pass": False})
    assert "RSS max / mean       90.1 / 89 MB" in text
    assert "cached" in text
    assert "not a Raspberry Pi's CPU" in text
    assert "armv7: FAIL: no wheel" in text
    assert text.endswith("overall: FAIL")


def test_binfmt_ready_needs_enabled_and_fix_binary(tmp_path: Path) -> None:
    arch = rootfs.ARCHES["arm64"]
    assert not rootfs.binfmt_ready(arch, tmp_path)
    entry = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {}\n"
    (tmp_path / "qemu-aarch64").write_text(entry.format("P"))
    assert not rootfs.binfmt_ready(arch, tmp_path)  # no F: fails inside a chroot
    (tmp_path / "qemu-aarch64").write_text(entry.format("PF"))
    assert rootfs.binfmt_ready(arch, tmp_path)
    (tmp_path / "qemu-aarch64").write_text("disabled\n" + entry.format("PF").split("\n", 1)[1])
    assert not rootfs.binfmt_ready(arch, tmp_path)


def test_host_mirror_from_deb822_and_list(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.test/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.test/debian/\nSuites: bookworm bookworm-updates\n"
    )
    assert rootfs.host_mirror(tmp_path) == "http://mirror.test/debian"
    (tmp_path / "sources.list.d/debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://other.test/debian bookworm main\n"
    )
    assert rootfs.host_mirror(tmp_path) == "http://other.test/debian"
    (tmp_path / "sources.list").unlink()
    with pytest.raises(rootfs.RootfsError, match="pass --mirror URL"):
        rootfs.host_mirror(tmp_path)


def test_chroot_argv_mounts_privately_and_execs_the_command() -> None:
    argv = rootfs.chroot_argv(
        Path("/c/arm64-rootfs"), ["/opt/x", "run"], userspec="999:998", groups="5,6",
        env={"HOME": "/h"},
    )  # fmt: skip
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"]
    script = argv[-1]
    assert "mount -t proc proc /c/arm64-rootfs/proc" in script
    assert script.endswith(
        "exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/h"
        " chroot --groups=5,6 --userspec=999:998 /c/arm64-rootfs /opt/x run"
    )


def test_ensure_hosts_entry_adds_the_name_once(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hosts").write_text("127.0.0.1\tlocalhost\n")
    rootfs.ensure_hosts_entry(tmp_path, "vm")
    rootfs.ensure_hosts_entry(tmp_path, "vm")
    assert (tmp_path / "etc/hosts").read_text() == "127.0.0.1\tlocalhost\n127.0.1.1\tvm\n"


def test_copy_local_cas_reports_changes_only(tmp_path: Path) -> None:
    source, root = tmp_path / "cas", tmp_path / "root"
    source.mkdir()
    assert not rootfs.copy_local_cas(root, source)
    (source / "proxy.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    assert rootfs.copy_local_cas(root, source)
    assert (root / "usr/local/share/ca-certificates/proxy.crt").is_file()
    assert not rootfs.copy_local_cas(root, source)


def test_the_witness_receives_telemetry_and_status_over_the_adapter(
    services: Any, unique: str
) -> None:
    from edge.mqtt import MqttLink, MqttSettings
    from tests.waiting import wait_for

    witness_mod = importlib.import_module("arm_witness")
    assert services.mqtt_host == "127.0.0.1"  # where the witness connects
    device = f"witness-{unique}"
    witness = witness_mod.Subscriber(services.mqtt_port, "armcheck", device)
    try:
        wait_for(witness.subscribed.is_set, 10, "the witness's SUBACK")
        base = f"sg/v1/armcheck/{device}"
        with MqttLink(MqttSettings(host=services.mqtt_host, port=services.mqtt_port)) as pub:
            assert pub.publish(f"{base}/status", b'{"data": {"reason": "birth"}}').wait(10)
            assert pub.publish(f"{base}/telemetry", b'{"data": {"sequence": 0}}').wait(10)
        wait_for(lambda: witness.decoded()[0], 10, "the telemetry at the witness")
        assert witness.decoded() == ([{"data": {"sequence": 0}}], [{"data": {"reason": "birth"}}])
        assert witness.reasons() == ["birth"]
    finally:
        witness.close()
