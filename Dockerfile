# DeepScope: one image for the web app and the scale-out workers (CPU torch).
#   docker build -t deepscope .
#   docker run -p 8000:8000 deepscope                      # the playground, SQLite, local workers
#   docker compose up --scale worker=4                     # web + Celery workers + Redis + PostgreSQL
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    DEEPSCOPE_HOST=0.0.0.0 \
    DEEPSCOPE_DATA_DIR=/data

WORKDIR /app

# torch first, from PyTorch's CPU index: the default index's torch is a CUDA build of several GB.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md ./
COPY deepscope ./deepscope
COPY engine ./engine
COPY app ./app
COPY templates ./templates
COPY static ./static
# The project itself, not a registry package: its dependencies are pinned or bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".[scale]" \
    && useradd --create-home --uid 10001 deepscope \
    && mkdir -p /data \
    && chown deepscope:deepscope /data

USER 10001
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

CMD ["deepscope", "serve"]
