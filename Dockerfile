# syntax=docker/dockerfile:1
# The inference-core gateway: `inference serve` with the chosen backend plugins.
#
#   docker build -t inference-core/gateway:0.1.0 .
#   docker build --build-arg PLUGINS="openai vllm" -t inference-core/gateway:slim .
#
# Stage 1 builds a wheelhouse (the repo's core + plugins and every dependency); stage 2 installs
# from that wheelhouse only (--no-index), as a non-root user, with no compiler and no source tree.
# tests/deploy/test_dockerfile.py runs these same RUN lines in a clean venv.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG PLUGINS="openai vllm ollama llamacpp textgen"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    WHEELHOUSE=/wheels
WORKDIR /src
COPY core/ core/
COPY plugins/ plugins/
RUN set -euf; \
    targets="./core[gateway]"; \
    for p in $PLUGINS; do \
      if [ ! -f "plugins/inference-$p/pyproject.toml" ]; then \
        echo "unknown plugin '$p': no plugins/inference-$p/pyproject.toml" >&2; exit 1; \
      fi; \
      targets="$targets ./plugins/inference-$p"; \
    done; \
    pip wheel --wheel-dir "$WHEELHOUSE" $targets

FROM ${PYTHON_IMAGE} AS runtime
ARG PLUGINS="openai vllm ollama llamacpp textgen"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WHEELHOUSE=/tmp/wheels \
    INFERENCE_CACHE_DIR=/home/app/.cache/inference-core
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app \
 && mkdir -p /models "$INFERENCE_CACHE_DIR" \
 && chown -R app:app /models /home/app
COPY --from=builder /wheels /tmp/wheels
RUN set -euf; \
    reqs="inference-switchboard[gateway]"; \
    for p in $PLUGINS; do reqs="$reqs inference-$p"; done; \
    pip install --no-index --find-links "$WHEELHOUSE" $reqs; \
    rm -rf "$WHEELHOUSE"
USER app
WORKDIR /home/app
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
CMD ["inference", "serve", "--host", "0.0.0.0", "--port", "8080"]
