# The Escalera engine image: `escalera worker` by default, any other command as arguments
# (`docker run --rm escalera:local topics`, `... simulate --out /tmp/e.jsonl`).
#
# Stage 1 builds a virtual environment in /opt/escalera: the dependencies first (a layer that changes only with
# pyproject.toml), then the project's own wheel, installed non-editable. Stage 2 is the same base image with that
# virtual environment and nothing else: no compiler, no pip cache, no sources. Every dependency ships manylinux
# wheels (rocksdict bundles RocksDB), so the runtime needs no system library beyond the base image.
# Both stages must share one base image: the venv's python is a link to the base image's interpreter.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/escalera
WORKDIR /src
# The dependencies alone, read from pyproject.toml, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && /opt/escalera/bin/pip install -r requirements.txt
# What the wheel is built from (pyproject.toml, [tool.hatch.build.targets.wheel]): the two packages, the README
# (the project's long description) and deploy/kafka (force-included as engine/_deploy/kafka).
COPY README.md ./
COPY engine ./engine
COPY schemas ./schemas
COPY deploy/kafka ./deploy/kafka
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/escalera/bin/pip install --no-deps /wheels/escalera-*.whl \
    && /opt/escalera/bin/pip check \
    && cd / && /opt/escalera/bin/escalera --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="escalera" \
      org.opencontainers.image.description="Event-driven customer-loyalty engine (Faust workers on Kafka)" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed uid, so a volume's owner is the same in every container built from this file.
RUN groupadd --gid 10001 escalera \
    && useradd --uid 10001 --gid escalera --create-home --home-dir /home/escalera --shell /usr/sbin/nologin escalera \
    && mkdir -p /var/lib/escalera \
    && chown escalera:escalera /var/lib/escalera
COPY --from=build /opt/escalera /opt/escalera
ENV PATH=/opt/escalera/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ESCALERA_WEB_HOST=0.0.0.0 \
    ESCALERA_WEB_PORT=6066 \
    ESCALERA_DATA_DIR=/var/lib/escalera \
    ESCALERA_LOG_FORMAT=json
# The worker's tables (RocksDB): a fresh named volume takes this directory's owner, escalera.
VOLUME ["/var/lib/escalera"]
WORKDIR /home/escalera
USER escalera
# /metrics, /health, /ready and the customer queries.
EXPOSE 6066
# /health answers once the worker's web server is up (slim images have no curl: python's urllib does the GET).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${ESCALERA_WEB_PORT:-6066}/health', timeout=4)" || exit 1
ENTRYPOINT ["escalera"]
CMD ["worker"]
