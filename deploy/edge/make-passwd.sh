#!/usr/bin/env bash
# Add or update one broker user in the mosquitto password file (docs/security.md).
#
#   sudo ./make-passwd.sh SITE DEVICE [PASSWD_FILE]    # a device: user "SITE/DEVICE"
#   sudo ./make-passwd.sh --role ROLE [PASSWD_FILE]     # sg-gateway, sg-operator, sg-dashboard
#
# A device's user name is "SITE/DEVICE": the ACL's pattern lines (%u) then pin it to its
# own site and device. Prints the generated password once: put it in the device's
# /etc/sensorgate/edge.env as SENSORGATE_MQTT__PASSWORD=... (and the user name in its
# config as mqtt.username). Reload mosquitto afterwards (systemctl reload mosquitto).
set -euo pipefail
usage="usage: $0 SITE DEVICE [PASSWD_FILE] | $0 --role ROLE [PASSWD_FILE]"
if [[ "${1:-}" == "--role" ]]; then
    user="${2:?$usage}"
    file="${3:-/etc/mosquitto/sensorgate.passwd}"
    case "$user" in
        sg-gateway|sg-operator|sg-dashboard|sg-simulator) ;;
        *) echo "make-passwd.sh: unknown role user '$user' (sg-gateway, sg-operator," \
               "sg-dashboard, sg-simulator)" >&2; exit 2 ;;
    esac
else
    site="${1:?$usage}"
    device="${2:?$usage}"
    file="${3:-/etc/mosquitto/sensorgate.passwd}"
    bad='[/+#:$[:space:][:cntrl:]]'
    for id in "$site" "$device"; do
        # "/" would shift the ACL's levels, "+" and "#" make mosquitto skip the pattern,
        # ":" ends the user name in the password file.
        if [[ -z "$id" || "$id" =~ $bad ]]; then
            echo "make-passwd.sh: '$id' is not usable in a broker user name" \
                 "(no / + # : \$, spaces or control characters)" >&2
            exit 2
        fi
    done
    if [[ "$site" == "_gateway" ]]; then
        echo "make-passwd.sh: site '_gateway' is reserved for the gateway's own topics" >&2
        exit 2
    fi
    user="$site/$device"
fi
password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 32)"
if [[ -f "$file" ]]; then
    mosquitto_passwd -b "$file" "$user" "$password"
else
    (umask 077 && mosquitto_passwd -c -b "$file" "$user" "$password")
fi
echo "SENSORGATE_MQTT__USERNAME=$user"
echo "SENSORGATE_MQTT__PASSWORD=$password"
