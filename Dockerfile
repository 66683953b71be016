# DeepScope: one image for the web app and the scale-out workers (CPU torch).
#   docker build -t deepscope .
#   docker run -p 8000:8000 deepscope                      # the playground, SQLite, local workers
#   docker compose up --scale worker=4                     # web + Celery workers + Redis + PostgreSQL
# Build arguments, for machines that cannot reach Docker Hub or PyTorch's index (scripts/check_image.sh):
#   BASE_IMAGE   an image with Python 3.11+, pip and venv (default python:3.11-slim)
#   TORCH_INDEX  where the CPU build of torch comes from (default PyTorch's CPU index); a torch wheel
#                put in docker/wheels/ is used instead (its local version, 2.13.0+cpu, wins)
ARG BASE_IMAGE=python:3.11-slim

# 1) build: a virtual environment with torch (CPU) and DeepScope; nothing of it but the venv ships
FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY docker/wheels /wheels
# The default index's Linux torch is a CUDA build of several GB: torch first, the CPU build.
RUN if ls /wheels/torch-*.whl >/dev/null 2>&1; then \
        pip install --find-links /wheels "torch==${TORCH_VERSION}"; \
    else \
        pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"; \
    fi
WORKDIR /src
COPY pyproject.toml README.md ./
COPY deepscope ./deepscope
COPY engine ./engine
COPY app ./app
COPY client ./client
COPY templates ./templates
COPY static ./static
# The project itself, not a registry package: its dependencies are pinned or bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".[scale]" && find /opt/venv -name "__pycache__" -prune -exec rm -rf {} +

# 2) run: the base image, the venv, a user without privileges
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    PATH=/opt/venv/bin:$PATH \
    DEEPSCOPE_HOST=0.0.0.0 \
    DEEPSCOPE_DATA_DIR=/data
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 10001 deepscope \
    && mkdir -p /data \
    && chown deepscope:deepscope /data
USER 10001
WORKDIR /home/deepscope
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request, sys; port = os.environ.get('DEEPSCOPE_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status != 200)"]

CMD ["deepscope", "serve"]
