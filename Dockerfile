# syntax=docker/dockerfile:1
# SensorGate images. Two targets, both running as an unprivileged user (uid 10001):
#   docker build -t sensorgate .                     the gateway (and every sensorgate command)
#   docker build -t sensorgate-edge --target edge .  the edge agent alone (the `edge` extra)
# The entry point loads secrets from files (deploy/container/entrypoint.sh); the cluster
# process wrapper is `sensorgate-node` (deploy/container/gateway-node.sh). See docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build: one virtualenv per target, from the project's wheel. Nothing of the build
# (compilers, pip caches, sources) reaches the runtime images.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY edge ./edge
COPY dataflows ./dataflows
COPY gateway ./gateway
COPY simulators ./simulators
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/sensorgate \
 && /opt/sensorgate/bin/pip install "$(ls /wheels/sensorgate-*.whl)[gateway]" \
 && python -m venv /opt/edge \
 && /opt/edge/bin/pip install "$(ls /wheels/sensorgate-*.whl)[edge]"

# What both runtime images share: the user, the state directory, the entry point.
FROM ${PYTHON_IMAGE} AS base
RUN groupadd --system --gid 10001 sensorgate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sensorgate \
      --shell /usr/sbin/nologin sensorgate \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/sensorgate \
 && install -d -m 0755 /etc/sensorgate
COPY --chmod=0755 deploy/container/entrypoint.sh /usr/local/bin/sensorgate-entrypoint
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 XDG_STATE_HOME=/var/lib/sensorgate
WORKDIR /var/lib/sensorgate
ENTRYPOINT ["/usr/local/bin/sensorgate-entrypoint"]

FROM base AS edge
COPY --from=build /opt/edge /opt/edge
ENV PATH=/opt/edge/bin:$PATH
USER 10001:10001
CMD ["sensorgate-edge", "run", "--config", "/etc/sensorgate/edge.toml"]

# The default target (last): the gateway, simulators and every other command.
FROM base AS gateway
COPY --from=build /opt/sensorgate /opt/sensorgate
COPY --chmod=0755 deploy/container/gateway-node.sh /usr/local/bin/sensorgate-node
ENV PATH=/opt/sensorgate/bin:$PATH
USER 10001:10001
# 9464: /metrics and /healthz; 2101: Bytewax cluster traffic between processes.
EXPOSE 9464 2101
# Settings: mount a config file and set SENSORGATE_CONFIG_FILE, or SENSORGATE_* variables.
CMD ["sensorgate", "--help"]
