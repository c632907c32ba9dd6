# The explorer on the embedded default model, CPU only.
#   docker build -t apmae . && docker run -p 8000:8000 -v apmae-home:/data apmae
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless openjdk-17-source \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY apmae ./apmae
COPY server ./server
COPY frontend ./frontend
COPY migrations ./migrations
RUN pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir .
ENV APMAE_HOME=/data
VOLUME /data
EXPOSE 8000
CMD ["apmae", "demo"]
