#!/bin/sh
# Run one process of a Bytewax gateway cluster: `sensorgate gateway run -i ID -a ADDRS`.
#
# The process id comes from, in order: SG_PROCESS_ID; POD_INDEX (Kubernetes >= 1.28
# puts the StatefulSet ordinal in the pod label apps.kubernetes.io/pod-index, given to
# the container through the downward API); the ordinal at the end of the host name
# (StatefulSet pods are NAME-0, NAME-1, ...).
#
# The addresses ("host:port;host:port", process 0 first) come from SG_CLUSTER_ADDRESSES
# when set (compose); otherwise they are built for SG_CLUSTER_SIZE processes from the
# StatefulSet's pod names and its headless service SG_CLUSTER_SERVICE:
#   <statefulset>-<i>.<service>.<namespace>.svc.<domain>:<SG_CLUSTER_PORT>
# and the script waits (at most SG_DNS_WAIT_S) until its own name resolves, since each
# process binds its own address.
#
# Recovery: each process keeps its own recovery directory (a volume per process) with
# only its own partition, part-<id> of <size>; Bytewax finds the partitions across the
# cluster. An empty directory gets that one partition; a directory holding another
# process's partition is refused (a volume attached to the wrong process).
#
# Metrics: the gateway serves /metrics and /healthz on metrics_port + process id. The
# script passes --metrics-port SG_METRICS_PORT - id, so that every process of the
# cluster listens on SG_METRICS_PORT (one port in a pod template, one healthcheck).
#
# Extra arguments are passed on to `sensorgate gateway run` (e.g. -w 2).
set -eu

size="${SG_CLUSTER_SIZE:?set SG_CLUSTER_SIZE to the number of processes in the cluster}"
port="${SG_CLUSTER_PORT:-2101}"
metrics="${SG_METRICS_PORT:-9464}"
host="$(hostname)"

if [ -n "${SG_PROCESS_ID:-}" ]; then
    id="$SG_PROCESS_ID"
elif [ -n "${POD_INDEX:-}" ]; then
    id="$POD_INDEX"
else
    id="${host##*-}"
fi
case "$id" in
    ''|*[!0-9]*) echo "sensorgate-node: cannot tell the process id (got '$id' from $host); set SG_PROCESS_ID" >&2; exit 2 ;;
esac
if [ "$id" -ge "$size" ]; then
    echo "sensorgate-node: process id $id is not below the cluster size $size; scale SG_CLUSTER_SIZE with the replicas" >&2
    exit 2
fi

if [ -n "${SG_CLUSTER_ADDRESSES:-}" ]; then
    addresses="$SG_CLUSTER_ADDRESSES"
    self="$(echo "$addresses" | cut -d';' -f"$((id + 1))" | cut -d: -f1)"
else
    service="${SG_CLUSTER_SERVICE:?set SG_CLUSTER_SERVICE (the headless service) or SG_CLUSTER_ADDRESSES}"
    base="${SG_STATEFULSET:-${host%-*}}"
    suffix="$service"
    [ -n "${POD_NAMESPACE:-}" ] && suffix="$suffix.$POD_NAMESPACE.svc.${SG_CLUSTER_DOMAIN:-cluster.local}"
    addresses=""
    i=0
    while [ "$i" -lt "$size" ]; do
        addresses="$addresses${addresses:+;}$base-$i.$suffix:$port"
        i=$((i + 1))
    done
    self="$base-$id.$suffix"
fi
count="$(echo "$addresses" | tr ';' '\n' | grep -c .)"
if [ "$count" -ne "$size" ]; then
    echo "sensorgate-node: $count addresses for a cluster of $size: $addresses" >&2
    exit 2
fi

wait_s="${SG_DNS_WAIT_S:-120}"
waited=0
until getent hosts "$self" >/dev/null 2>&1; do
    if [ "$waited" -ge "$wait_s" ]; then
        echo "sensorgate-node: $self does not resolve after ${wait_s}s" >&2
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done

recovery="${SG_RECOVERY_DIR:-/var/lib/sensorgate/recovery}"
mkdir -p "$recovery"
own="part-$id.sqlite3"
others="$(find "$recovery" -maxdepth 1 -name 'part-*.sqlite3' ! -name "$own" | head -n 1)"
if [ -n "$others" ]; then
    echo "sensorgate-node: $recovery holds $others, which belongs to another process (this is $id): wrong volume?" >&2
    exit 2
fi
if [ ! -f "$recovery/$own" ]; then
    fresh="$(mktemp -d)"
    python -m bytewax.recovery "$fresh" "$size"
    mv "$fresh/$own" "$recovery/$own"
    rm -rf "$fresh"
    echo "sensorgate-node: created recovery partition $id of $size in $recovery" >&2
fi

echo "sensorgate-node: process $id of $size, addresses $addresses, metrics on :$metrics" >&2
exec sensorgate gateway run \
    --process-id "$id" \
    --addresses "$addresses" \
    --recovery-dir "$recovery" \
    --metrics-port "$((metrics - id))" \
    "$@"
