# One image for every Python process of the platform: the seven services, the gateway and the
# outbox relay (docker-compose.yml picks the process with `command`). Dependencies come from
# requirements.lock, the same pinned set `make run` installs; the build reaches PyPI and
# Debian's package archive (for the PostgreSQL client tools) only.
# bookworm pinned: its postgresql-client-15 matches the compose file's postgres:15 (a newer
# pg_dump writes SET commands that an older server refuses when the dump is restored).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    PSYCOPG_WAIT_FUNC=wait_select

WORKDIR /app

# pg_dump and pg_restore for the provisioner's pause and restore; bubblewrap for the edge
# function sandbox (the runtime runs as the unprivileged `platform` user below, so its
# workers do too, each in its own user namespace: docker-compose.yml lets that container
# create them).
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15 bubblewrap nodejs npm \
    && rm -rf /var/lib/apt/lists/*

# The lock first, on its own layer, so a code change does not reinstall every dependency.
COPY requirements.lock ./
RUN pip install -r requirements.lock
# PostgREST (each project's REST API, run by the project edge) from the npm lock.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

COPY . .
# As the Makefile does: --no-deps because everything is pinned above; this adds the console
# scripts (platformctl, platform-run, platform-relay) pointing at /app and nothing else.
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /app platform \
    && mkdir -p /app/var \
    && chown platform /app/var

USER platform
# The gateway's and the project edge's ports. No CMD of its own: docker-compose.yml names
# each process's command.
EXPOSE 8080 8082
