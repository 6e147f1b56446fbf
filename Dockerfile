# Driftline services (serve now; monitor and train in later releases).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY driftline ./driftline
RUN pip install --no-cache-dir .
ENTRYPOINT ["driftline"]
CMD ["--help"]
