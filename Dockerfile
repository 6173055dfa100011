# hotline: the menu on 10086/tcp, the robot on 10086/udp, terminal agents on 10087/tcp, admin HTTP on 9108.
# Build: docker build -t hotline .      Run: docker compose up
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements.lock ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY app ./app
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
# /app/data private to the server's user (tickets hold call-back numbers); a new volume copies the mode
RUN useradd --system --uid 10086 --user-group --no-create-home --shell /usr/sbin/nologin hotline \
 && mkdir -p /app/data && chmod 0700 /app/data && chown 10086:10086 /app/data
COPY --from=build /opt/venv /opt/venv
COPY config /app/config
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOTLINE_HOST=0.0.0.0 \
    HOTLINE_CONFIG=/app/config \
    HOTLINE_DATA=/app/data
VOLUME ["/app/data"]
USER 10086:10086
EXPOSE 10086/tcp 10086/udp 10087/tcp 9108/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os,urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HOTLINE_ADMIN_PORT', '9108'), timeout=2)"]
STOPSIGNAL SIGTERM
CMD ["hotline", "serve"]
