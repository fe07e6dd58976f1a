# One image for every service; pick one with the command: `python -m qastream_<service>`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir uv
WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when a pyproject or the lock changes.
# A new service adds its pyproject.toml line here.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY services/ingest/pyproject.toml services/ingest/
COPY services/sampler/pyproject.toml services/sampler/
COPY services/scoring/pyproject.toml services/scoring/
RUN uv sync --frozen --no-dev --no-install-workspace

COPY shared/ shared/
COPY services/ services/
RUN uv sync --frozen --no-dev

ENV PATH=/app/.venv/bin:$PATH \
    QA_HTTP_HOST=0.0.0.0 \
    QA_HTTP_PORT=8000
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["python", "-m", "qastream_ingest"]
