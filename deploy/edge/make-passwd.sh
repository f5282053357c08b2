#!/usr/bin/env bash
# Add or update one device in the mosquitto password file.
#   sudo ./make-passwd.sh DEVICE_ID [PASSWD_FILE]
# Prints the generated password once: put it in the device's /etc/sensorgate/edge.env
# as SENSORGATE_MQTT__PASSWORD=...
set -euo pipefail
device="${1:?usage: $0 DEVICE_ID [PASSWD_FILE]}"
file="${2:-/etc/mosquitto/sensorgate.passwd}"
password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 32)"
if [[ -f "$file" ]]; then
    mosquitto_passwd -b "$file" "$device" "$password"
else
    mosquitto_passwd -c -b "$file" "$device" "$password"
fi
echo "SENSORGATE_MQTT__PASSWORD=$password"
