# The explorer on the embedded default model, CPU only. The first start builds the default run
# (about 17 minutes on 2 cores) into the /data volume; later starts reuse it and serve at once.
#   docker build -t apmae . && docker run -p 8000:8000 -v apmae-home:/data apmae
# GPU: start FROM an image with CUDA's runtime (e.g. pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime),
# drop the CPU index URL below, and run with `--gpus all`.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless openjdk-17-source curl \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 apmae && mkdir /data && chown apmae /data
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY apmae ./apmae
COPY server ./server
COPY frontend ./frontend
COPY migrations ./migrations
# editable: the app finds frontend/ and migrations/ beside the package
RUN pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -e .
USER apmae
ENV APMAE_HOME=/data
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60m \
  CMD curl -fsS http://127.0.0.1:8000/api/health || exit 1
CMD ["apmae", "demo", "--host", "0.0.0.0", "--port", "8000"]
