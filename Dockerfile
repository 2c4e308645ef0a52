# syntax=docker/dockerfile:1
# fanout container image.
#
#   docker build -t fanout:0.1.0 .
#   docker run --rm -v "$PWD/config.yaml:/etc/fanout/config.yaml:ro" fanout:0.1.0 run --sink postgres
#
# Two stages: the builder installs fanout and its dependencies (all of them ship manylinux
# wheels) into a virtualenv; the final image copies only that virtualenv onto a clean slim
# Python, runs as uid 10001 and writes nothing but /tmp (and, for ClickHouse embedded mode, the
# chDB data dir, a volume). Base images match so the copied virtualenv's interpreter links work.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/fanout
# The dependencies (hundreds of MB of wheels) in a layer of their own that only a change to
# pyproject.toml rebuilds; a source change rebuilds just the small layer below.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" >/tmp/requirements.txt \
 && /opt/fanout/bin/pip install --no-cache-dir --only-binary=:all: -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
# Only what the distribution is built from (see .dockerignore); README.m[d] copies the readme
# pyproject.toml names when it exists and nothing otherwise.
COPY pyproject.toml README.m[d] ./
COPY fanout/ fanout/
COPY sinks/ sinks/
RUN /opt/fanout/bin/pip install --no-cache-dir --only-binary=:all: --no-binary=fanout . \
 && /opt/fanout/bin/fanout --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="fanout" \
      org.opencontainers.image.description="Fans Debezium CDC events from Kafka out to Elasticsearch, ClickHouse and PostgreSQL" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/fanout/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    FANOUT_CONFIG=/etc/fanout/config.yaml
RUN groupadd --system --gid 10001 fanout \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin fanout \
 && mkdir -p /etc/fanout /var/lib/fanout/chdb \
 && chown 10001:10001 /var/lib/fanout/chdb
COPY --from=builder /opt/fanout /opt/fanout
USER 10001:10001
WORKDIR /tmp
# /metrics, /healthz (liveness) and /readyz (readiness).
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]
ENTRYPOINT ["fanout"]
CMD ["run"]
