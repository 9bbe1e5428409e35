# syntax=docker/dockerfile:1
# The inference-core gateway: `inference serve` with the chosen backend plugins.
#
#   docker build -t inference-core/gateway:0.1.0 .
#   docker build --build-arg PLUGINS="openai vllm" -t inference-core/gateway:slim .
#
# Stage 1 builds a wheelhouse: the repo's core + plugins (built with the hash-pinned hatchling of
# requirements/build.txt, no build isolation) and every third-party dependency exactly as
# requirements/image.txt pins it (downloaded with --require-hashes, wheels only). Stage 2 installs
# from that wheelhouse only (--no-index), checking every third-party file against its hash again,
# as a non-root user, with no compiler and no source tree.
# tests/deploy/test_dockerfile.py runs these same RUN lines in a clean venv.
#
# The base is pinned to an exact Python and Debian release by tag, not by digest: the digest
# cannot be looked up where this file is maintained (no container registry is reachable there).
# docs/deployment.md ("Pinning the base image") says how to pin it by digest where one is:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:<digest> .

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG PLUGINS="openai vllm ollama llamacpp textgen"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    WHEELHOUSE=/wheels
WORKDIR /src
COPY requirements/build.txt requirements/image.txt requirements/
COPY core/ core/
COPY plugins/ plugins/
RUN set -euf; \
    targets="./core"; \
    for p in $PLUGINS; do \
      if [ ! -f "plugins/inference-$p/pyproject.toml" ]; then \
        echo "unknown plugin '$p': no plugins/inference-$p/pyproject.toml" >&2; exit 1; \
      fi; \
      targets="$targets ./plugins/inference-$p"; \
    done; \
    pip install --require-hashes --only-binary :all: -r requirements/build.txt; \
    pip wheel --no-deps --no-build-isolation --wheel-dir "$WHEELHOUSE" $targets; \
    pip download --require-hashes --only-binary :all: --no-deps --dest "$WHEELHOUSE" \
      -r requirements/image.txt; \
    cp requirements/image.txt "$WHEELHOUSE/image.txt"

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
    ours="inference-switchboard"; \
    for p in $PLUGINS; do ours="$ours inference-$p"; done; \
    pip install --no-index --find-links "$WHEELHOUSE" --require-hashes --only-binary :all: \
      --no-deps -r "$WHEELHOUSE/image.txt"; \
    pip install --no-index --find-links "$WHEELHOUSE" --no-deps $ours; \
    pip check; \
    python -c "import inference_core.gateway"; \
    rm -rf "$WHEELHOUSE"
USER app
WORKDIR /home/app
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
CMD ["inference", "serve", "--host", "0.0.0.0", "--port", "8080"]
