#!/usr/bin/env bash
# Install the system services SensorGate runs locally if missing: mosquitto and influxd
# (the stack), victoria-metrics (a real server for testing the InfluxDB v2 write path) and
# chromium (the browser the dashboard tests drive with Playwright; Playwright cannot
# download its own browser here); and the clients the deployment files are checked with:
# docker-compose (`config`) and openssl (test certificates). kubectl is not a Debian
# package: the Kubernetes tests use it when present (it comes with the Cloud SDK).
# As root this uses apt-get; otherwise it says what to run.
set -euo pipefail
missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have mosquitto || missing+=(mosquitto)
have influxd || missing+=(influxdb)
have victoria-metrics || missing+=(victoria-metrics)
have chromium || missing+=(chromium)
have docker-compose || missing+=(docker-compose)
have openssl || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's packages try to start the services; we run our own on private ports.
  exit 0
fi
echo "error: missing system packages: ${missing[*]}" >&2
echo "  On Debian/Ubuntu run: sudo apt-get install -y ${missing[*]}" >&2
echo "  Then run the make command again." >&2
exit 1
