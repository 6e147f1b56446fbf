# Driftline's services: serve, monitor and train (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY driftline ./driftline
RUN pip install --no-cache-dir .
ENTRYPOINT ["driftline"]
CMD ["--help"]
