#!/usr/bin/env bash
# Install the SensorGate edge agent on Raspberry Pi OS (Debian bookworm or later).
#
#   sudo ./install.sh [--from PATH_OR_REQUIREMENT] [--config FILE]
#
# PATH is a checkout or a built wheel/sdist (e.g. one built on a PC and copied over:
# the package is pure Python, one wheel fits every architecture).
# Creates the system user `sensorgate`, a venv under /opt/sensorgate with only the
# `edge` extra (paho-mqtt, pydantic, smbus2: no Bytewax, no
# InfluxDB client), /etc/sensorgate/edge.toml (from the example unless it exists),
# and the systemd unit. Re-running it upgrades the package and keeps the config.
set -euo pipefail

SOURCE="sensorgate[edge]"
CONFIG_SRC=""
PREFIX=/opt/sensorgate
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --from) SOURCE="$2"; shift 2 ;;
        --config) CONFIG_SRC="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

if [[ $EUID -ne 0 ]]; then
    echo "error: run as root (sudo $0)" >&2
    exit 1
fi

# A local checkout, wheel or sdist is installed with the edge extra. Its version does
# not change with every edit, so pip would take it as installed already: LOCAL is
# reinstalled (without its dependencies) after the upgrade below.
LOCAL=""
if [[ -d "$SOURCE" ]]; then
    LOCAL="$(cd "$SOURCE" && pwd)"
elif [[ -f "$SOURCE" && ( "$SOURCE" == *.whl || "$SOURCE" == *.tar.gz ) ]]; then
    LOCAL="$(cd "$(dirname "$SOURCE")" && pwd)/$(basename "$SOURCE")"
fi
if [[ -n "$LOCAL" ]]; then
    SOURCE="$LOCAL[edge]"
fi

echo "==> system packages"
apt-get update -qq
apt-get install -y -qq python3 python3-venv i2c-tools >/dev/null

echo "==> user and groups"
for group in i2c gpio; do
    getent group "$group" >/dev/null || groupadd --system "$group"
done
if ! id sensorgate >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/sensorgate --no-create-home \
        --shell /usr/sbin/nologin --user-group sensorgate
fi
usermod -a -G i2c,gpio sensorgate

echo "==> venv in $PREFIX/venv"
install -d -m 0755 "$PREFIX"
if [[ ! -x "$PREFIX/venv/bin/python" ]]; then
    python3 -m venv "$PREFIX/venv"
fi
"$PREFIX/venv/bin/pip" install --quiet --upgrade pip
"$PREFIX/venv/bin/pip" install --quiet --upgrade "$SOURCE"
if [[ -n "$LOCAL" ]]; then
    "$PREFIX/venv/bin/pip" install --quiet --force-reinstall --no-deps "$LOCAL"
fi
install -d -m 0755 "$PREFIX/docs"
if [[ -f "$HERE/../../docs/edge.md" ]]; then
    install -m 0644 "$HERE/../../docs/edge.md" "$PREFIX/docs/edge.md"
fi

echo "==> config in /etc/sensorgate"
install -d -m 0750 -o root -g sensorgate /etc/sensorgate
if [[ ! -f /etc/sensorgate/edge.toml ]]; then
    install -m 0640 -o root -g sensorgate "${CONFIG_SRC:-$HERE/edge.example.toml}" \
        /etc/sensorgate/edge.toml
    echo "    wrote /etc/sensorgate/edge.toml: set site, device and the broker before starting"
fi
if [[ ! -f /etc/sensorgate/edge.env ]]; then
    install -m 0640 -o root -g sensorgate /dev/null /etc/sensorgate/edge.env
    echo "# SENSORGATE_MQTT__PASSWORD=..." >> /etc/sensorgate/edge.env
fi
install -d -m 0750 -o sensorgate -g sensorgate /var/lib/sensorgate

echo "==> 1-Wire and I2C (enable once with raspi-config if not done)"
if command -v raspi-config >/dev/null 2>&1; then
    raspi-config nonint do_i2c 0 || true
    raspi-config nonint do_onewire 0 || true
fi

echo "==> systemd unit"
install -m 0644 "$HERE/sensorgate-edge.service" /etc/systemd/system/sensorgate-edge.service
# In a chroot (an SD card image built under qemu, like pi-gen does) or a container
# systemd is not running: the unit is enabled for the next boot, nothing is started.
BOOTED=""
if [[ -d /run/systemd/system ]]; then
    BOOTED=1
    systemctl daemon-reload
fi

echo "==> probing the sensors once"
if sudo -u sensorgate "$PREFIX/venv/bin/sensorgate-edge" check --config /etc/sensorgate/edge.toml; then
    if [[ -n "$BOOTED" ]]; then
        systemctl enable --now sensorgate-edge.service
        echo "done: journalctl -u sensorgate-edge -f"
    else
        systemctl enable sensorgate-edge.service
        echo "done: systemd is not running here; the agent starts at the next boot"
    fi
else
    echo "the check failed (see above): fix /etc/sensorgate/edge.toml, then"
    echo "    systemctl enable --now sensorgate-edge.service"
fi
