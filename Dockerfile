# The gateway image; the same image runs the built-in mock upstreams of the compose demo.
#   docker build -t inference-gateway .
#   docker run -p 8080:8080 -v $PWD/my-config:/app/config:ro inference-gateway
#   docker run -p 8080:8080 -e GATEWAY_AUTH__OPEN_ALLOWED=true inference-gateway   # the demo config
# The bundled config/gateway.yaml has open auth (any key, admin API included): the image refuses to start
# on it (GATEWAY_AUTH__OPEN_ALLOWED=false) unless told that it is a demo.
# Config: mount your own at /app/config (gateway.yaml + pricing/intents files) or override fields with
# GATEWAY_* variables (GATEWAY_REDIS__URL, GATEWAY_SERVER__WORKERS, ...).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml ./
RUN mkdir gateway && touch gateway/__init__.py && pip install . && pip uninstall -y gateway
COPY gateway ./gateway
RUN pip install --no-deps .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_CONFIG=/app/config/gateway.yaml \
    GATEWAY_SERVER__HOST=0.0.0.0 \
    GATEWAY_SERVER__PORT=8080 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/gateway-metrics \
    GATEWAY_AUTH__OPEN_ALLOWED=false
# PROMETHEUS_MULTIPROC_DIR: prometheus-client's multiprocess mode, so that /metrics adds up every
# uvicorn worker's samples (GATEWAY_SERVER__WORKERS=N); `gateway serve` creates and empties it at start.
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
COPY config /app/config
WORKDIR /app
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_SERVER__PORT', '8080'), timeout=2)"
STOPSIGNAL SIGTERM
CMD ["gateway", "serve", "--host", "0.0.0.0", "--config", "/app/config/gateway.yaml"]
