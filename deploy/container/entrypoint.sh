#!/bin/sh
# Container entry point of the SensorGate images: load secrets from files, then run the
# command.
#
# Every file in $SENSORGATE_SECRETS_DIR (default /run/secrets) whose name is a
# SENSORGATE_* variable (SENSORGATE_INFLUX__TOKEN, SENSORGATE_MQTT__PASSWORD, ...)
# becomes that variable, unless the environment already sets it; a trailing newline
# is dropped. Docker and compose secrets mount there (`target: SENSORGATE_...`), and so
# does a Kubernetes Secret volume with items named that way. The settings then read
# them like any other variable: secrets never sit in a config file, an image or a
# compose/manifest file.
set -eu

dir="${SENSORGATE_SECRETS_DIR:-/run/secrets}"
if [ -d "$dir" ]; then
    for file in "$dir"/SENSORGATE_*; do
        [ -f "$file" ] || continue
        name="$(basename "$file")"
        case "$name" in
            *[!A-Za-z0-9_]*) echo "sensorgate-entrypoint: ignoring $file (not a variable name)" >&2; continue ;;
        esac
        if eval "[ -n \"\${$name+set}\" ]"; then
            continue  # the environment wins over the file
        fi
        value="$(cat "$file")"  # $(...) drops the trailing newline
        export "$name=$value"
    done
fi
exec "$@"
