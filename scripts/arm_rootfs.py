"""An ARM Debian userland on an x86 host: build it once, cache it, run commands in it.

Host side only (root, Debian's ``debootstrap``, ``qemu-user-static`` and
``binfmt-support``): the ARM binaries in the chroot run under qemu user-mode
emulation through binfmt_misc. The chroot shares the host's network namespace, so a
broker on the host's loopback is 127.0.0.1 inside it too.

Every command in the chroot runs in a private mount namespace (``unshare --mount``)
that mounts ``/proc``, ``/dev`` and ``/sys`` for it: the mounts vanish with the
process, so nothing is left mounted under the cache even after a SIGKILL, and a
stale rootfs can be deleted safely.

Errors are :class:`RootfsError` with a message that says what to run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "ARCHES",
    "Arch",
    "RootfsError",
    "binfmt_ready",
    "chroot_argv",
    "copy_local_cas",
    "copy_resolv_conf",
    "ensure_host",
    "ensure_hosts_entry",
    "ensure_rootfs",
    "host_mirror",
    "missing_host_packages",
]

SUITE = "bookworm"  # Raspberry Pi OS 12 is bookworm too
# What install.sh needs on a Pi, there from the start: python3-venv (pip via ensurepip),
# ca-certificates (pip over HTTPS), sudo and systemd (install.sh calls both), i2c-tools.
PACKAGES = ("python3", "python3-venv", "ca-certificates", "sudo", "systemd", "i2c-tools")
HOST_PACKAGES = ("debootstrap", "qemu-user-static", "binfmt-support")
STAMP = ".sensorgate-rootfs.json"
DEFAULT_CACHE = Path.home() / ".cache" / "sensorgate"


class RootfsError(Exception):
    """The ARM userland cannot be built or entered; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Arch:
    """One target: Debian's architecture name, qemu's, and what it stands for."""

    name: str
    debian: str
    qemu: str
    machine: str
    stands_for: str


ARCHES: Mapping[str, Arch] = {
    "arm64": Arch("arm64", "arm64", "aarch64", "aarch64", "Raspberry Pi OS 64-bit (Pi 3/4/5)"),
    "armv7": Arch("armv7", "armhf", "arm", "armv7l", "Raspberry Pi OS 32-bit (Pi 2/3/4)"),
}


# -- the host ---------------------------------------------------------------------------
def missing_host_packages() -> list[str]:
    """Return the host packages this needs that are not installed."""
    tools = {
        "debootstrap": "debootstrap",
        "qemu-user-static": "qemu-aarch64-static",
        "binfmt-support": "update-binfmts",
    }
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [pkg for pkg, tool in tools.items() if shutil.which(tool, path=search) is None]


def binfmt_ready(arch: Arch, root: Path = Path("/proc/sys/fs/binfmt_misc")) -> bool:
    """Whether ARM binaries of ``arch`` run here: registered, enabled, fixed binary (F).

    The F flag opens the interpreter at registration, so it works inside a chroot
    that has no qemu of its own.
    """
    try:
        text = (root / f"qemu-{arch.qemu}").read_text()
    except OSError:
        return False
    lines = text.splitlines()
    flags = next((ln.split(":", 1)[1] for ln in lines if ln.startswith("flags:")), "")
    return bool(lines) and lines[0].strip() == "enabled" and "F" in flags


def ensure_host(arch: Arch, log: Callable[[str], None]) -> None:
    """Install the host packages and enable binfmt_misc when missing (as root), or raise."""
    missing = missing_host_packages()
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise RootfsError(
                f"missing host packages: {' '.join(missing)}. Run:"
                f" sudo apt-get install -y {' '.join(HOST_PACKAGES)}"
            )
        log(f"installing host packages: {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *HOST_PACKAGES],
        ):
            _run(cmd, env=env, what="apt-get")
    if not binfmt_ready(arch):
        # Without systemd the package's service never ran: update-binfmts mounts
        # binfmt_misc and registers the qemu handlers itself.
        if os.geteuid() != 0:
            raise RootfsError(
                f"qemu-{arch.qemu} is not registered. Run: sudo update-binfmts --enable"
            )
        log(f"enabling binfmt_misc for qemu-{arch.qemu}")
        _run(["update-binfmts", "--enable", f"qemu-{arch.qemu}"], what="update-binfmts")
        if not binfmt_ready(arch):
            raise RootfsError(
                f"qemu-{arch.qemu} is still not registered with binfmt_misc (with flag F):"
                " is binfmt_misc available in this kernel or container? Run:"
                " sudo update-binfmts --enable && cat /proc/sys/fs/binfmt_misc/qemu-*"
            )


def host_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """Return the Debian mirror the host's apt uses (deb822 ``.sources`` or ``sources.list``)."""
    candidates: list[str] = []
    for path in sorted(apt_dir.glob("sources.list.d/*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = _deb822(stanza)
            suites = fields.get("suites", "").split()
            if "deb" in fields.get("types", "").split() and SUITE in suites:
                candidates += fields.get("uris", "").split()
    lists = [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if words[:1] == ["deb"]:
                words = [w for w in words[1:] if not w.startswith("[")]
                if len(words) >= 2 and words[1] == SUITE:
                    candidates.append(words[0])
    for uri in candidates:
        if "security" not in uri:
            return uri.rstrip("/")
    raise RootfsError(
        f"no Debian {SUITE} mirror found in {apt_dir}/sources.list*: pass --mirror URL"
    )


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    return fields


# -- the rootfs ---------------------------------------------------------------------------
def _stamp(arch: Arch, mirror: str) -> dict[str, object]:
    return {"arch": arch.debian, "suite": SUITE, "packages": list(PACKAGES), "mirror": mirror}


def _mounted_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    return [m.split()[1] for m in mounts if (m.split()[1] + "/").startswith(prefix)]


def _remove(path: Path) -> None:
    if not path.exists():
        return
    busy = _mounted_under(path)
    if busy:  # rm -rf through a bind mount of /dev would be a disaster
        raise RootfsError(f"{path} has mounts under it ({', '.join(busy)}): unmount them first")
    shutil.rmtree(path)


def ensure_rootfs(
    arch: Arch,
    cache: Path,
    *,
    mirror: str,
    rebuild: bool = False,
    log: Callable[[str], None],
) -> tuple[Path, float | None]:
    """Return the cached rootfs of ``arch`` and the seconds spent building it (None: reused).

    A rootfs is used only when its stamp file matches what this code would build; it
    is built under ``*.partial`` and renamed when complete, so an interrupted build is
    never taken for a finished one.
    """
    root = cache / f"{arch.name}-rootfs"
    stamp = root / STAMP
    want = _stamp(arch, mirror)
    if not rebuild and stamp.is_file():
        have = json.loads(stamp.read_text())
        if {k: have.get(k) for k in want} == want:
            return root, None
        log(f"{root} was built differently ({have}); rebuilding")
    partial = cache / f"{arch.name}-rootfs.partial"
    _remove(partial)
    partial.mkdir(parents=True)
    log(f"debootstrap {SUITE} {arch.debian} into {partial} (several minutes under qemu)")
    t0 = time.monotonic()
    argv = [
        "unshare", "--mount", "--propagation", "private",
        "debootstrap", f"--arch={arch.debian}", "--variant=minbase",
        f"--include={','.join(PACKAGES)}", SUITE, str(partial), mirror,
    ]  # fmt: skip
    _run(argv, what="debootstrap", tail_file=partial / "debootstrap/debootstrap.log")
    seconds = time.monotonic() - t0
    subprocess.run(["chroot", str(partial), "apt-get", "clean"], check=False)
    stamp_doc = {**want, "built_at": datetime.now(UTC).isoformat(), "build_s": round(seconds)}
    (partial / STAMP).write_text(json.dumps(stamp_doc, indent=2) + "\n")
    _remove(root)
    partial.rename(root)
    return root, seconds


def chroot_argv(
    root: Path,
    argv: Sequence[str],
    *,
    userspec: str | None = None,
    groups: str | None = None,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """Return a host command that runs ``argv`` in ``root`` with /proc, /dev and /sys.

    Every step ``exec``s the next, so the returned command's pid becomes the pid of
    ``argv`` itself (under qemu): a host-side meter can watch it. ``userspec`` and
    ``groups`` are numeric (``uid:gid``, ``gid,gid``) as chroot(8) takes them. ``env`` replaces
    the environment (the host's is not carried in).
    """
    r = shlex.quote(str(root))
    mounts = " && ".join(
        [
            f"mount -t proc proc {r}/proc",
            f"mount --rbind /dev {r}/dev",
            f"mount --rbind -o ro /sys {r}/sys",
        ]
    )
    base_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    env_words = [f"{k}={v}" for k, v in {**base_env, **(env or {})}.items()]
    chroot = ["chroot", *([f"--groups={groups}"] if groups else [])]
    chroot += [*([f"--userspec={userspec}"] if userspec else []), str(root)]
    tail = ["env", "-i", *env_words, *chroot, *argv]
    script = f"{mounts} && exec {shlex.join(tail)}"
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]


def copy_resolv_conf(root: Path) -> None:
    """Give the chroot the host's resolver (pip and apt-get inside reach the registries)."""
    target = root / "etc/resolv.conf"
    if target.is_symlink():
        target.unlink()
    shutil.copyfile("/etc/resolv.conf", target)


def ensure_hosts_entry(root: Path, hostname: str | None = None) -> None:
    """Let the chroot resolve the host's name (sudo looks it up; it shares the host's)."""
    name = hostname or os.uname().nodename
    hosts = root / "etc/hosts"
    text = hosts.read_text() if hosts.is_file() else "127.0.0.1\tlocalhost\n"
    if not any(name in line.split()[1:] for line in text.splitlines() if line.strip()):
        hosts.write_text(text.rstrip("\n") + f"\n127.0.1.1\t{name}\n")


def copy_local_cas(root: Path, source: Path = Path("/usr/local/share/ca-certificates")) -> bool:
    """Give the chroot the host's local CAs (e.g. a TLS-inspecting proxy's); True if changed.

    The caller then runs ``update-ca-certificates`` in the chroot, as an admin would
    on a Pi behind the same proxy.
    """
    target = root / "usr/local/share/ca-certificates"
    target.mkdir(parents=True, exist_ok=True)
    changed = False
    for cert in sorted(source.glob("**/*.crt")) if source.is_dir() else []:
        dest = target / cert.relative_to(source)
        if not dest.is_file() or dest.read_bytes() != cert.read_bytes():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cert, dest)
            changed = True
    return changed


def _run(argv: Sequence[str], *, what: str, env: Mapping[str, str] | None = None,
         tail_file: Path | None = None) -> None:  # fmt: skip
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        if tail_file is not None and tail_file.is_file():
            tail += "\n" + "\n".join(tail_file.read_text(errors="replace").splitlines()[-15:])
        raise RootfsError(f"{what} failed (exit {proc.returncode}): {shlex.join(argv)}\n{tail}")
