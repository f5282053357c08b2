"""The images' scripts (deploy/container) and the Dockerfile that installs them.

sensorgate-node runs here with stand-ins for ``sensorgate``, ``hostname`` and
``getent`` (which answer what a pod or a compose container would) and the real
``python -m bytewax.recovery``; then a real two-process Bytewax cluster resumes from
recovery partitions laid out as the script lays them, one per process directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateway.localstack.services import free_port
from tests.deploy.deploy_kit import DEPLOY, ROOT

NODE = DEPLOY / "container" / "gateway-node.sh"
ENTRYPOINT = DEPLOY / "container" / "entrypoint.sh"


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A bin directory: `sensorgate` prints its argv as JSON; `getent` resolves anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sensorgate").write_text(
        f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n"
    )
    (bin_dir / "getent").write_text('#!/bin/sh\necho 10.0.0.1 "$2"\n')
    # The venv's python, with bytewax (a symlink would lose the venv).
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    for tool in ("sensorgate", "getent", "python"):
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def _node(
    fake_bin: Path, env: dict[str, str], *, hostname: str = "sensorgate-gateway-1"
) -> subprocess.CompletedProcess[str]:
    (fake_bin / "hostname").write_text(f"#!/bin/sh\necho {hostname}\n")
    (fake_bin / "hostname").chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SG_", "POD_"))}
    return subprocess.run(
        ["sh", str(NODE)],
        env={**clean, "PATH": f"{fake_bin}:{os.environ['PATH']}", "SG_DNS_WAIT_S": "2", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _args(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    argv = json.loads(result.stdout)
    assert argv[:2] == ["gateway", "run"]
    return dict(zip(argv[2::2], argv[3::2], strict=True))


def test_node_in_a_statefulset_pod(fake_bin: Path, tmp_path: Path) -> None:
    recovery = tmp_path / "state" / "recovery"
    args = _args(
        _node(
            fake_bin,
            {
                "SG_CLUSTER_SIZE": "3",
                "SG_CLUSTER_SERVICE": "sensorgate-gateway",
                "POD_INDEX": "1",
                "POD_NAMESPACE": "iot",
                "SG_RECOVERY_DIR": str(recovery),
            },
        )
    )
    names = [f"sensorgate-gateway-{i}.sensorgate-gateway.iot.svc.cluster.local" for i in range(3)]
    assert args == {
        "--process-id": "1",
        "--addresses": ";".join(f"{n}:2101" for n in names),
        "--recovery-dir": str(recovery),
        # The gateway adds the process id: every pod ends up on 9464, the probes' port.
        "--metrics-port": str(9464 - 1),
    }
    assert [p.name for p in recovery.iterdir()] == ["part-1.sqlite3"]


def test_node_takes_the_ordinal_from_the_host_name_without_the_label(
    fake_bin: Path, tmp_path: Path
) -> None:
    args = _args(
        _node(
            fake_bin,
            {
                "SG_CLUSTER_SIZE": "2",
                "SG_CLUSTER_SERVICE": "gw",
                "SG_RECOVERY_DIR": str(tmp_path / "r"),
                "SG_METRICS_PORT": "9500",
            },
            hostname="gw-0",
        )
    )
    assert args["--process-id"] == "0"
    assert args["--addresses"] == "gw-0.gw:2101;gw-1.gw:2101"
    assert args["--metrics-port"] == "9500"


def test_node_in_compose_with_explicit_addresses(fake_bin: Path, tmp_path: Path) -> None:
    (compose,) = [
        d for d in __import__("yaml").safe_load_all((DEPLOY / "compose/compose.yaml").read_text())
    ]
    env = {k: str(v) for k, v in compose["services"]["gateway-1"]["environment"].items()}
    env = {k: v for k, v in env.items() if k.startswith("SG_")}
    args = _args(_node(fake_bin, {**env, "SG_RECOVERY_DIR": str(tmp_path / "r")}, hostname="x"))
    assert args["--process-id"] == "1"
    assert args["--addresses"] == "gateway-0:2101;gateway-1:2101"
    assert int(args["--metrics-port"]) + 1 == int(env["SG_METRICS_PORT"])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SG_CLUSTER_SIZE": "2", "SG_PROCESS_ID": "2"}, "not below the cluster size"),
        ({"SG_CLUSTER_SIZE": "2", "SG_PROCESS_ID": "x"}, "cannot tell the process id"),
        ({"SG_CLUSTER_SIZE": "2", "SG_PROCESS_ID": "0"}, "SG_CLUSTER_SERVICE"),
        (
            {"SG_CLUSTER_SIZE": "3", "SG_PROCESS_ID": "0", "SG_CLUSTER_ADDRESSES": "a:1;b:1"},
            "2 addresses for a cluster of 3",
        ),
    ],
)
def test_node_refuses_what_cannot_form_a_cluster(
    fake_bin: Path, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = _node(fake_bin, {**env, "SG_RECOVERY_DIR": str(tmp_path / "r")})
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_node_refuses_another_process_s_recovery_volume(fake_bin: Path, tmp_path: Path) -> None:
    recovery = tmp_path / "r"
    env = {"SG_CLUSTER_SIZE": "2", "SG_CLUSTER_SERVICE": "gw", "SG_RECOVERY_DIR": str(recovery)}
    _args(_node(fake_bin, env, hostname="gw-0"))
    result = _node(fake_bin, env, hostname="gw-1")
    assert result.returncode == 2
    assert "belongs to another process" in result.stderr
    again = _args(_node(fake_bin, env, hostname="gw-0"))  # its own: kept as it is
    assert again["--process-id"] == "0"


def test_node_waits_for_its_own_name_then_gives_up(fake_bin: Path, tmp_path: Path) -> None:
    (fake_bin / "getent").write_text("#!/bin/sh\nexit 2\n")
    env = {"SG_CLUSTER_SIZE": "1", "SG_CLUSTER_SERVICE": "gw", "SG_DNS_WAIT_S": "1"}
    result = _node(fake_bin, {**env, "SG_RECOVERY_DIR": str(tmp_path / "r")}, hostname="gw-0")
    assert result.returncode == 1
    assert "gw-0.gw does not resolve" in result.stderr


_FLOW = textwrap.dedent(
    """
    import os, sys
    from datetime import timedelta
    import bytewax.operators as op
    from bytewax.connectors.stdio import StdOutSink
    from bytewax.dataflow import Dataflow
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main
    from bytewax.testing import TestingSource

    n = int(os.environ["N"])
    flow = Dataflow("sums")
    s = op.input("in", flow, TestingSource([(f"k{i % 4}", i) for i in range(n)]))
    s = op.stateful_map("sum", s, lambda acc, v: ((acc or 0) + v, (acc or 0) + v))
    op.output("out", s, StdOutSink())
    cli_main(flow, process_id=int(sys.argv[1]), addresses=sys.argv[2].split(";"),
             epoch_interval=timedelta(milliseconds=100),
             recovery_config=RecoveryConfig(sys.argv[3]))
    """
)


def _run_cluster(script: Path, dirs: list[Path], n: int) -> list[str]:
    # A port found free may be taken before Bytewax binds it: try other ports then.
    for attempt in range(3):
        try:
            return _run_cluster_once(script, dirs, n)
        except _PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class _PortTaken(Exception):
    pass


def _run_cluster_once(script: Path, dirs: list[Path], n: int) -> list[str]:
    ports: set[int] = set()
    while len(ports) < len(dirs):
        ports.add(free_port())
    addresses = ";".join(f"127.0.0.1:{p}" for p in sorted(ports))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(i), addresses, str(d)],
            env={**os.environ, "N": str(n)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, d in enumerate(dirs)
    ]
    deadline = time.monotonic() + 120
    while any(p.poll() is None for p in procs):
        # One process failing leaves the other retrying its connection for ever.
        if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            break
        time.sleep(0.1)
    lines, errors = [], []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        if proc.returncode != 0:
            errors.append(err)
        lines += [line for line in out.splitlines() if line.startswith("('")]
    if any("Address already in use" in e for e in errors):
        raise _PortTaken(errors)
    assert not errors, "\n---\n".join(e[-1500:] for e in errors)
    return lines


def test_bytewax_resumes_from_partitions_spread_over_process_volumes(
    fake_bin: Path, tmp_path: Path
) -> None:
    dirs = []
    for i in range(2):
        recovery = tmp_path / f"pod-{i}" / "recovery"
        env = {"SG_CLUSTER_SIZE": "2", "SG_CLUSTER_SERVICE": "gw", "SG_RECOVERY_DIR": str(recovery)}
        _args(_node(fake_bin, env, hostname=f"gw-{i}"))
        dirs.append(recovery)
    script = tmp_path / "flow.py"
    script.write_text(_FLOW)
    first = _run_cluster(script, dirs, 20)
    assert len(first) == 20
    # The input ran to its end and was snapshotted: a larger input resumes after item
    # 20, each key's sum carried over in the partition of whichever process holds it.
    second = _run_cluster(script, dirs, 24)
    assert sorted(second) == ["('k0', 60)", "('k1', 66)", "('k2', 72)", "('k3', 78)"]


def test_the_entrypoint_turns_secret_files_into_variables(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "SENSORGATE_INFLUX__TOKEN").write_text("t0k\n")
    (secrets / "SENSORGATE_MQTT__PASSWORD").write_text("from-file")
    (secrets / "mqtt_ca_crt").write_text("not a variable")
    (secrets / "SENSORGATE_BAD-NAME").write_text("x")
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "env"],
        env={
            "PATH": os.environ["PATH"],
            "SENSORGATE_SECRETS_DIR": str(secrets),
            "SENSORGATE_MQTT__PASSWORD": "from-env",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env["SENSORGATE_INFLUX__TOKEN"] == "t0k"
    assert env["SENSORGATE_MQTT__PASSWORD"] == "from-env", "the environment wins"
    assert "SENSORGATE_BAD-NAME" not in env
    assert "ignoring" in result.stderr


def test_the_dockerfile_builds_both_images_unprivileged_from_existing_files() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", text, flags=re.MULTILINE)
    assert [name for _, name in stages] == ["build", "base", "edge", "gateway"]
    for source in re.findall(r"^COPY\s+(?:--chmod=\S+\s+)?(?!--from)(.+)\s+\S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
    for script in ("deploy/container/entrypoint.sh", "deploy/container/gateway-node.sh"):
        assert os.access(ROOT / script, os.X_OK), script
    pyproject = (ROOT / "pyproject.toml").read_text()
    for extra in re.findall(r"\.whl\)\[(\w+)\]", text):
        assert re.search(rf"^{extra} = \[", pyproject, re.M), extra
    # Each runtime stage drops to the unprivileged user.
    for stage in ("edge", "gateway"):
        body = text.split(f"AS {stage}\n", 1)[1].split("\nFROM ", 1)[0]
        assert "USER 10001:10001" in body, stage
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "deploy/compose/secrets" in ignored
    assert not {"contract", "edge", "dataflows", "gateway", "simulators"} & set(ignored)
    assert re.search(r"^EXPOSE 9464 2101$", text, re.M)
