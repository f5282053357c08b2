"""The wheel of this checkout, installed by ``deploy/edge/install.sh`` in an ARM chroot.

For ``make edge-arm-check`` (``scripts/edge_arm_check.py``): build the wheel on the
host, copy it and ``deploy/edge`` into the chroot, run the installer there, and check
that the chroot's venv holds this checkout.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import arm_rootfs  # a sibling module (scripts/ is no package)

__all__ = ["REPO", "CheckError", "build_wheel", "ids", "in_chroot", "install", "wheel_tag"]

REPO = Path(__file__).resolve().parents[1]
SRC_IN_CHROOT = "/opt/sensorgate-src"


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


def ids(root: Path, name: str, *, group: bool = False) -> int:
    """Return the uid (or gid) of ``name`` in the chroot."""
    for line in (root / ("etc/group" if group else "etc/passwd")).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise CheckError(f"no {'group' if group else 'user'} {name!r} in {root}: install.sh failed?")


def in_chroot(root: Path, argv: list[str], log_path: Path, what: str, timeout: float) -> str:
    """Run ``argv`` in the chroot as root; return its output, raise with its log's tail."""
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
        in_chroot(root, ["update-ca-certificates"], work / "ca.log", "update-ca-certificates", 300)
    log("install.sh in the chroot (apt-get, pip from PyPI under emulation)")
    t0 = time.monotonic()
    argv = ["bash", f"{SRC_IN_CHROOT}/deploy/edge/install.sh"]
    argv += ["--from", f"{SRC_IN_CHROOT}/dist/{wheel.name}"]
    in_chroot(root, argv, work / "install.log", "install.sh in the chroot", 1800)
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


def wheel_tag(root: Path) -> str | None:
    """Return the version and tag of the pydantic-core wheel pip chose in the chroot."""
    for wheel in root.glob("opt/sensorgate/venv/lib/python3*/site-packages/pydantic_core-*/WHEEL"):
        tags = [ln.split(":", 1)[1].strip() for ln in wheel.read_text().splitlines()]
        tags = [t for t in tags if t.startswith("cp")]
        version = wheel.parent.name.split("-")[1].removesuffix(".dist")
        return f"{version} {tags[0] if tags else '?'}"
    return None
