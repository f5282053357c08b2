#!/bin/sh
# Start mosquitto with its password file and TLS files made from the compose secrets.
#
# SG_MQTT_USERS lists "user:secret" pairs: each user gets the password held in
# /run/secrets/<secret>. The plain "user:password" lines are hashed in place with
# `mosquitto_passwd -U` (no password on a command line). The broker key is copied so
# that the mosquitto user can read it whatever the owner of the file on the host.
# Runs as root (the image's default) and mosquitto drops to its own user.
set -eu
secrets="${SG_SECRETS_DIR:-/run/secrets}"
run="${SG_MOSQUITTO_RUN:-/mosquitto/run}"
owner="${SG_MOSQUITTO_USER:-mosquitto}"
mkdir -p "$run"
umask 077
: > "$run/passwd"
for pair in ${SG_MQTT_USERS:?list user:secret pairs in SG_MQTT_USERS}; do
    user="${pair%%:*}"
    secret="$secrets/${pair#*:}"
    [ -s "$secret" ] || { echo "start.sh: $secret is missing or empty (user $user)" >&2; exit 1; }
    printf '%s:%s\n' "$user" "$(cat "$secret")" >> "$run/passwd"
done
mosquitto_passwd -U "$run/passwd"
cp "$secrets/mqtt_ca_crt" "$run/ca.crt"
cp "$secrets/mqtt_broker_crt" "$run/broker.crt"
cp "$secrets/mqtt_broker_key" "$run/broker.key"
chmod 0644 "$run/ca.crt" "$run/broker.crt"
chmod 0600 "$run/passwd" "$run/broker.key"
if [ "$(id -u)" = 0 ]; then
    chown -R "$owner" "$run"
fi
exec mosquitto -c "${SG_MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
