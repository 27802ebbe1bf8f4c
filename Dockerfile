# passkeyd in a container: Debian 12 (bookworm) and its Python 3.11, SQLite in a volume.
#
#   docker build -t passkeyd .
#   docker run -d --name passkeyd -p 127.0.0.1:8080:8080 -v passkeyd:/var/lib/passkeyd \
#     -e PASSKEYD_ACCOUNT_SID=AC… -e PASSKEYD_AUTH_TOKEN=… passkeyd
#
# Every setting is an environment variable (README, Running it), or a TOML file mounted and
# named by PASSKEYD_CONFIG. The CLI runs in the same container: `docker exec passkeyd
# passkeyd accounts create`. On PostgreSQL: PASSKEYD_DATABASE_URL, PASSKEYD_SECRET_KEY, and
# `docker run --rm … passkeyd migrate` before the replicas start (docs/deployment.md).

# The base image: Debian 12's slim one (`--build-arg BASE=…` for a mirror of it).
ARG BASE=debian:bookworm-slim

# What runs passkeyd: Debian's Python, CA certificates (webhook receivers' HTTPS
# certificates are checked against the system's), and a user of its own.
FROM ${BASE} AS base
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
       python3 ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 passkeyd \
    && useradd --system --no-log-init --uid 10001 --gid passkeyd --home-dir /var/lib/passkeyd \
       --shell /usr/sbin/nologin passkeyd \
    && install -d -o passkeyd -g passkeyd -m 0700 /var/lib/passkeyd

# The dependencies' list alone: a release's new version in pyproject.toml leaves it as it
# was, so the layers below are reused (COPY --from is cached on the file's content).
FROM base AS requirements
COPY pyproject.toml /src/
RUN python3 -c 'import tomllib; print(*tomllib.load(open("/src/pyproject.toml", "rb"))\
["project"]["dependencies"], sep="\n")' > /requirements.txt

# The dependencies, in a venv without pip or setuptools (installed by the pip of another
# venv), in layers that only a change of the dependencies' list rebuilds.
FROM base AS deps
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/pip && python3 -m venv --without-pip /opt/passkeyd
COPY --from=requirements /requirements.txt /tmp/
RUN /opt/pip/bin/pip --python /opt/passkeyd/bin/python install -q --no-cache-dir \
       --no-compile -r /tmp/requirements.txt \
    && python3 -m compileall -q /opt/passkeyd/lib

# passkeyd itself, installed under /app (--root): exactly the files pip installs for it, its
# entry script's shebang still /opt/passkeyd/bin/python (a few MB: a new release's image
# shares every layer above with the last one).
FROM deps AS app
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN /opt/pip/bin/pip --python /opt/passkeyd/bin/python install -q --no-cache-dir \
       --no-compile --no-deps --root /app /src \
    && python3 -m compileall -q -s /app -p / /app/opt/passkeyd/lib

FROM base
COPY --from=deps /opt/passkeyd /opt/passkeyd
COPY --from=app /app/ /
# Listen on every interface of the container (publish the port on the host's loopback, or
# behind a proxy: PASSKEYD_FORWARDED_ALLOW_IPS names it, so `url` and `links` say https://).
# The database, its -wal and -shm, and the key that seals auth tokens live in the volume.
ENV PATH=/opt/passkeyd/bin:$PATH \
    PASSKEYD_HOST=0.0.0.0 \
    PASSKEYD_PORT=8080 \
    PASSKEYD_DATABASE_URL=sqlite:////var/lib/passkeyd/passkeyd.db \
    PASSKEYD_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
USER passkeyd
WORKDIR /var/lib/passkeyd
VOLUME /var/lib/passkeyd
EXPOSE 8080
# The health check asks where PASSKEYD_HOST and PASSKEYD_PORT say passkeyd listens (the
# loopback address of the family for 0.0.0.0 and ::).
# SIGTERM (`docker stop`): requests in flight finish (up to 10 s), then the audit records
# still in memory are written; give it `docker stop -t 25` (or stop_grace_period: 25s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; h = os.environ.get('PASSKEYD_HOST') or '0.0.0.0'; h = {'0.0.0.0': '127.0.0.1', '::': '::1'}.get(h, h); h = '[%s]' % h if ':' in h else h; u.build_opener(u.ProxyHandler({})).open('http://%s:%s/healthz' % (h, os.environ.get('PASSKEYD_PORT', '8080')), timeout=2)"]
ENTRYPOINT ["passkeyd"]
CMD ["serve"]
