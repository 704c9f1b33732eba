# Telegram Gateway container: see README, "Running in a container".
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin gateway

WORKDIR /app
COPY setup.cfg pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
RUN pip install . \
    && mkdir -p var config/secrets certs \
    && chown gateway:gateway var config/secrets certs \
    && chmod 0700 var config/secrets certs
COPY config/gateway.example.toml config/gateway.example.toml

USER gateway
# Inside the container the listener binds every interface; publish the port you need.
ENV GATEWAY_SERVER_HOST=0.0.0.0
EXPOSE 8443
# The queue database, the generated secrets (and the bot token, API clients), the certificate.
VOLUME ["/app/var", "/app/config/secrets", "/app/certs"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "gateway.ops.healthcheck"]
CMD ["gateway", "run", "--make-certificate", "--log-format", "json"]
