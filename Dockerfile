# syntax=docker/dockerfile:1.7
# One image for every service and job:
#   docker run qastream serve scoring     # a service (ingest, sampler, scoring, coaching, reporting)
#   docker run qastream migrate           # migrations of every service + topics, then exit (idempotent)
# Settings are environment variables (docs/operations.md); the image listens on 8000.

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM python:3.11-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app

# Third-party dependencies first, in their own layer: rebuilt only when a pyproject or the lock changes.
# uv needs every workspace member's pyproject to read the lock; a new member adds its line here.
COPY pyproject.toml uv.lock ./
COPY packages/qastream-events/pyproject.toml packages/qastream-events/
COPY shared/pyproject.toml shared/
COPY services/ingest/pyproject.toml services/ingest/
COPY services/sampler/pyproject.toml services/sampler/
COPY services/scoring/pyproject.toml services/scoring/
COPY services/coaching/pyproject.toml services/coaching/
COPY services/reporting/pyproject.toml services/reporting/
COPY examples/review-alerts/pyproject.toml examples/review-alerts/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace

# Then our own packages, installed into the environment (not editable), so the final stage needs only it.
COPY packages/ packages/
COPY shared/ shared/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 qastream \
    && useradd --system --uid 10001 --gid qastream --no-create-home --shell /usr/sbin/nologin qastream
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    QA_HTTP_HOST=0.0.0.0 \
    QA_HTTP_PORT=8000
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["qa"]
CMD ["serve", "ingest"]
