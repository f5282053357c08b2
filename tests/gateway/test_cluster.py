"""``sensorgate cluster``: command lines, addresses, recovery set up once, refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contract.errors import ConfigError
from gateway import cli
from gateway.runtime.cluster import (
    ClusterSpec,
    child_env,
    loopback_addresses,
    parse_addresses,
    prepare_recovery,
)
from gateway.settings import load_settings


def test_each_process_gets_its_id_the_addresses_workers_and_recovery(tmp_path: Path) -> None:
    spec = ClusterSpec(
        processes=2,
        workers=3,
        recovery_dir=tmp_path,
        addresses=("10.0.0.1:2101", "10.0.0.2:2101"),
        exec_prefix=("ip", "netns", "exec", "sg-gw{i}"),
        run_args=("--rules", "/etc/rules.toml"),
        cli_args=("--log-level", "DEBUG"),
        python="/usr/bin/python3",
    )
    assert spec.commands() == [
        [
            "ip", "netns", "exec", f"sg-gw{i}",
            "/usr/bin/python3", "-m", "gateway.cli", "--log-level", "DEBUG",
            "gateway", "run", "-i", str(i), "-a", "10.0.0.1:2101;10.0.0.2:2101",
            "-w", "3", "-r", str(tmp_path), "--rules", "/etc/rules.toml",
        ]
        for i in range(2)
    ]  # fmt: skip


def test_default_addresses_are_distinct_free_loopback_ports(tmp_path: Path) -> None:
    addresses = loopback_addresses(3)
    assert len(set(addresses)) == 3
    assert all(a.startswith("127.0.0.1:") for a in addresses)
    commands = ClusterSpec(processes=3, workers=1, recovery_dir=tmp_path).commands()
    assert len({c[c.index("-a") + 1] for c in commands}) == 1  # one list, shared by all


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "host:port;host:port"),
        ("127.0.0.1", "expected host:port"),
        ("a:1;b:99999", "expected host:port"),
        ("a:1;a:1", "its own address"),
    ],
)
def test_bad_addresses_are_refused(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_addresses(text)
    assert info.value.field == "addresses"
    assert needle in info.value.reason


def test_addresses_parse_hosts_names_and_ipv6() -> None:
    assert parse_addresses("gw-0.gw:2101; [::1]:2102;10.1.2.3:9") == (
        "gw-0.gw:2101",
        "[::1]:2102",
        "10.1.2.3:9",
    )


def test_the_address_count_must_match_the_processes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="3 process"):
        ClusterSpec(processes=3, workers=1, recovery_dir=tmp_path, addresses=("a:1", "b:1"))
    with pytest.raises(ConfigError, match="at least 1"):
        ClusterSpec(processes=1, workers=0, recovery_dir=tmp_path)


def test_recovery_partitions_are_created_once_then_resumed(tmp_path: Path) -> None:
    settings = load_settings(stream={"shards": 8})
    store = tmp_path / "recovery"
    message = prepare_recovery(settings, store, 3)
    assert message == f"created 3 recovery partition(s) in {store}"
    assert sorted(p.name for p in store.glob("part-*.sqlite3")) == [
        "part-0.sqlite3",
        "part-1.sqlite3",
        "part-2.sqlite3",
    ]
    assert (store / "sensorgate-recovery.json").exists()  # tied to the shard count
    assert store.stat().st_mode & 0o777 == 0o700
    message = prepare_recovery(settings, store, 5)
    assert message == f"resuming from 3 recovery partition(s) in {store}"


def _prepare_at(store: str, start: float) -> int:
    """Prepare ``store`` at wall time ``start`` (a child process); return the partitions."""
    import time

    from gateway.runtime.recovery import prepare_recovery as prepare_one

    time.sleep(max(0.0, start - time.time()))
    settings = load_settings(recovery=True, recovery_dir=store, recovery_partitions=4)
    prepare_one(settings)
    return len(list(Path(store).glob("part-*.sqlite3")))


def test_processes_started_side_by_side_prepare_one_folder_without_a_race(
    tmp_path: Path,
) -> None:
    # Processes of a cluster started by hand (a unit per process) all prepare the
    # folder at once; Bytewax's init_db_dir raised "table parts already exists" in
    # all but one of them before the folder's lock.
    import multiprocessing
    import time

    store = str(tmp_path / "recovery")
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        start = time.time() + 3.0  # after every child has imported what it needs
        found = pool.starmap(_prepare_at, [(store, start)] * 4)
    assert found == [4, 4, 4, 4]


def test_a_folder_made_for_another_shard_count_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "recovery"
    prepare_recovery(load_settings(stream={"shards": 8}), store, 2)
    with pytest.raises(ConfigError) as info:
        prepare_recovery(load_settings(stream={"shards": 16}), store, 2)
    assert info.value.field == "stream.shards"


def test_children_import_this_tree_and_read_the_same_config_file(tmp_path: Path) -> None:
    import gateway

    root = str(Path(gateway.__file__).resolve().parents[1])
    env = child_env({"PYTHONPATH": "/elsewhere", "SENSORGATE_MQTT__PORT": "1"}, "gw.toml")
    assert env["PYTHONPATH"] == f"{root}{os.pathsep}/elsewhere"
    assert env["SENSORGATE_CONFIG_FILE"] == str(Path("gw.toml").resolve())
    assert env["SENSORGATE_MQTT__PORT"] == "1"


def test_the_command_refuses_to_run_without_recovery(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SENSORGATE_CONFIG_FILE", raising=False)
    monkeypatch.setenv("SENSORGATE_RECOVERY", "false")
    assert cli.main(["cluster", "-n", "2"]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration for 'recovery'" in err
    assert "needs recovery (it is off)" in err


def test_the_command_refuses_addresses_that_do_not_match_the_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SENSORGATE_CONFIG_FILE", raising=False)
    code = cli.main(["cluster", "-n", "3", "-a", "127.0.0.1:1;127.0.0.1:2", "-r", str(tmp_path)])
    assert code == 2
    assert "3 process(es) need 3 address(es); got 2" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before creating anything


def test_help_describes_the_restart_semantics(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["cluster", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "not elastic" in text
    assert "--exec-prefix" in text
    assert "--max-restarts" in text


def test_listen_ports_are_picked_below_the_ephemeral_range() -> None:
    # An ephemeral port could be taken as the source port of a peer's outgoing
    # connection between the pick and the bind ("Address already in use").
    from gateway.runtime.cluster import free_listen_ports

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = free_listen_ports(5)
    assert len(set(ports)) == 5
    assert all(10_000 <= p < low for p in ports)
    run = free_listen_ports(3, consecutive=True)
    assert run == list(range(run[0], run[0] + 3))
    assert all(int(a.rsplit(":", 1)[1]) < low for a in loopback_addresses(3))
