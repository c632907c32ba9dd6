# The explorer on the embedded default model, CPU only. The first start builds the default run
# (about 17 minutes on 2 cores) into the /data volume; later starts reuse it and serve at once.
#   docker build -t apmae . && docker run -p 8000:8000 -v apmae-home:/data apmae
#
# Build arguments (the defaults are the public ones):
#   BASE             python:3.11-slim-bookworm; any Debian bookworm image works, one without
#                    Python gets Debian's python3 (3.11); docker/base.sh makes one from Debian's
#                    packages alone (debootstrap), for machines that reach no image registry
#   TORCH_SPEC       torch (what to install first, e.g. torch==2.13.0+cpu)
#   TORCH_INDEX_URL  https://download.pytorch.org/whl/cpu, the CPU wheels; empty: PyPI's index
# Local inputs go in docker/local/ (git-ignored, see its README.md) and never reach the final
# image: wheels there are found first (pip --find-links), and a ca-certificates.crt there is
# the CA bundle pip trusts (a proxy's). docker/check.sh builds it so and proves the image.
#
# GPU: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124 (those wheels carry
# CUDA's libraries; the host needs NVIDIA's driver and container toolkit), run with `--gpus all`.
ARG BASE=python:3.11-slim-bookworm

# What both stages share: Python (the base's, else Debian's 3.11), curl for the health check,
# and the embedded model's corpus: OpenJDK 17's src.zip from Debian's openjdk-17-source (the model
# card's hash is bookworm's). The app only reads that zip, so the package is unpacked rather than
# installed: installing it pulls in the whole desktop JDK (X11, GTK, Mesa; ~900 MB more).
FROM ${BASE} AS base
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN set -eux; \
    pkgs="curl"; \
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then pkgs="$pkgs python3 python3-venv"; fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends $pkgs; \
    cd /tmp; \
    apt-get download openjdk-17-source; \
    dpkg-deb -x openjdk-17-source_*.deb /; \
    dpkg-deb -f openjdk-17-source_*.deb Version > /usr/lib/jvm/openjdk-17/openjdk-17-source.version; \
    rm openjdk-17-source_*.deb; \
    rm -rf /var/lib/apt/lists/*; \
    test -f /usr/lib/jvm/openjdk-17/lib/src.zip; \
    python3 -c 'import sys; assert sys.version_info >= (3, 11), sys.version'

# The virtual environment, built with whatever docker/local/ holds; only /opt/venv and /app
# leave this stage.
FROM base AS build
ARG TORCH_SPEC=torch
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY docker/local/ /tmp/local/
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_FIND_LINKS=/tmp/local
RUN set -eux; \
    if [ -f /tmp/local/ca-certificates.crt ]; then export PIP_CERT=/tmp/local/ca-certificates.crt; fi; \
    pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
WORKDIR /app
# the dependencies first, from pyproject.toml alone: a change to the code reinstalls only apmae
COPY pyproject.toml ./
RUN set -eux; \
    if [ -f /tmp/local/ca-certificates.crt ]; then export PIP_CERT=/tmp/local/ca-certificates.crt; fi; \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt; \
    pip install -r /tmp/requirements.txt
COPY README.md alembic.ini ./
COPY apmae ./apmae
COPY server ./server
COPY frontend ./frontend
COPY migrations ./migrations
# editable: the app finds frontend/ and migrations/ beside the package
RUN set -eux; \
    if [ -f /tmp/local/ca-certificates.crt ]; then export PIP_CERT=/tmp/local/ca-certificates.crt; fi; \
    pip install --no-deps -e . \
    && apmae --help >/dev/null

FROM base
RUN useradd --create-home --uid 1000 apmae && mkdir /data && chown apmae /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH APMAE_HOME=/data
WORKDIR /app
USER apmae
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60m \
  CMD curl -fsS http://127.0.0.1:8000/api/health || exit 1
CMD ["apmae", "demo", "--host", "0.0.0.0", "--port", "8000"]
