# syntax=docker/dockerfile:1
# The injector image: `sidecar-injector serve --operator` (webhook + operator).
# Build from the repository root:  docker build -f images/injector.Dockerfile .
# Targets: `injector` (the default, last stage) and `vault-standin` (e2e only).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: wheels for the project and its dependencies (build tools stay here) ---
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY injector ./injector
COPY sidecar ./sidecar
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime base: the wheels installed, pip removed, no compiler, no shell tools added ---
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels sidecar-injector \
    && python -m pip uninstall --yes pip setuptools wheel \
    && rm -rf /root/.cache

# --- the Vault-compatible stand-in for e2e (standins/vault.py); not for production ---
FROM runtime AS vault-standin
COPY standins /opt/standins/standins
ENV PYTHONPATH=/opt/standins
USER 65532:65532
EXPOSE 8200
ENTRYPOINT ["python", "-m", "standins.vault"]
CMD ["--listen", "0.0.0.0:8200"]

# --- the injector (default target) ---
FROM runtime AS injector
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["sidecar-injector"]
CMD ["serve", "--operator", "--listen=0.0.0.0:8443"]
