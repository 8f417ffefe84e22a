# syntax=docker/dockerfile:1
# The message-events image: one console script, `message-events`, whose
# subcommand the pod chooses (ingest, process <name>, topics).
#
#   docker build -t message-events:dev .
#
# Stage 1 builds this project's wheel and installs it, with its runtime
# dependencies only (not the `embedded` extra: the Tansu broker is for laptops
# and tests), into a virtualenv. Stage 2 is the same slim Python with that
# virtualenv and nothing else: no pip cache, no build tools, no source tree.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# Only what the wheel is built from (.dockerignore keeps out everything else).
COPY pyproject.toml README.md ./
COPY message_events ./message_events
COPY ingest ./ingest
COPY processors ./processors
COPY schemas ./schemas
# --only-binary: dependencies come as wheels, nothing is compiled.
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --only-binary=:all: /wheels/message_events-*.whl

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
# Numeric, so that Kubernetes can verify runAsNonRoot without /etc/passwd.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["message-events"]
CMD ["ingest"]
