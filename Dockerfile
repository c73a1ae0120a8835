# syntax=docker/dockerfile:1
# The campaign image: CUDA runtime, Python, degan-bench installed with the pinned constraints.txt.
#
#   docker build -t degan-bench .
#   docker build -t degan-bench --build-arg BAKE_INCEPTION=1 .   # with the two Inception weights inside
#
# The workflows (.github/workflows/, .gitlab-ci.yml) build it from the commit they test and run
# `degan-bench` in it with the GPUs and the runner volume (runs, data, cache) mounted: see .ci/in-image.
# torch's wheels bring their own CUDA libraries; the base image provides the driver interface.
ARG CUDA_BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_BASE}

ARG BAKE_INCEPTION=0
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DEGAN_BENCH_RUNS=/store/runs \
    DEGAN_BENCH_DATA=/store/data \
    DEGAN_BENCH_CACHE=/store/cache

# The distribution's current packages: the Python packages are the pinned part.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv git make jq ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/degan-bench
# Dependencies first (a layer that changes only with pyproject.toml / constraints.txt).
COPY pyproject.toml constraints.txt README.md ./
COPY degan_bench/ degan_bench/
RUN python3 -m venv /opt/venv \
 && pip install --no-cache-dir -c constraints.txt -e '.[dev]' \
 && touch /opt/venv/.installed
# recipes/, results/, benchmarks/, tests/, .git (for `git describe` in run provenance), ...
COPY . .

# Optional: bake the Inception weights into /opt/degan-bench/baked/weights. resolve_weights downloads
# each file and verifies it against the sha256 pinned in degan_bench/metrics/weights.py (a mismatch
# fails the build). Use them with -e DEGAN_BENCH_INCEPTION_WEIGHTS=/opt/degan-bench/baked/weights.
RUN if [ "$BAKE_INCEPTION" = "1" ]; then \
      DEGAN_BENCH_CACHE=/opt/degan-bench/baked python -c "from degan_bench.metrics.weights import WEIGHTS, resolve_weights; [print(resolve_weights(k).path, resolve_weights(k).sha256) for k in WEIGHTS]"; \
    fi

CMD ["degan-bench", "doctor"]
