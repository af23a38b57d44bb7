# The bridge alone; docker-compose.yml runs it beside Mosquitto.
#   docker build -t mqtt-hk-bridge .      (or podman build --format docker ...)
# BASE may be any Debian-based image with python3 (3.11+) and its venv module; our tests
# build on one made from Debian's own packages.
ARG BASE=python:3.12-slim
FROM ${BASE}

# The bridge runs as this user, never as root; /data (its state, HomeKit keys) is its own.
ARG UID=10001
RUN groupadd --gid "${UID}" bridge \
 && useradd --uid "${UID}" --gid bridge --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin bridge \
 && install -d -o bridge -g bridge -m 0700 /data

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Exactly the locked versions, each checked against its hash. A layer of its own, so a code
# change rebuilds only the small layer below.
COPY requirements.lock /tmp/requirements.lock
RUN python3 -m venv /opt/venv \
 && pip install --require-hashes --no-deps -r /tmp/requirements.lock \
 && rm /tmp/requirements.lock

# The bridge itself; its build backend (setuptools) came from the lock above.
COPY pyproject.toml README.md /tmp/src/
COPY mqtt_hk_bridge /tmp/src/mqtt_hk_bridge
RUN pip install --no-deps --no-build-isolation /tmp/src && rm -rf /tmp/src

# The configuration used when none is mounted at /config/bridge.yaml; the environment
# (MQTT_HK_BRIDGE_*) overrides it. The state always goes to the /data volume.
COPY deploy/bridge.yaml /config/bridge.yaml
ENV MQTT_HK_BRIDGE_DATA_DIR=/data
VOLUME /data
WORKDIR /config
USER bridge

# HAP (the Home app and hubs connect here); run with host networking so mDNS works too.
EXPOSE 51826
# Healthy: connected to the broker and the HAP server listening (the bridge's own report).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["mqtt-hk-bridge", "-c", "/config/bridge.yaml", "healthcheck"]
# SIGTERM: `bridge/state offline` is published and the state saved before it exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["mqtt-hk-bridge", "-c", "/config/bridge.yaml", "run"]
