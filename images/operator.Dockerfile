# The operator image the Helm chart runs (modeldeploy[operator]: aiohttp, the kubernetes client,
# tritonclient for live golden parity, boto3 for S3 stores). No torch and no onnxruntime:
# pickles are never loaded here, only in the staging image (tests/images checks both).
#   docker build -f images/operator.Dockerfile -t ghcr.io/modeldeploy/operator:0.1.0 .
# `make images` builds it with podman, from a local Debian base when no registry is reachable.
ARG BASE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE} AS build
# A CA bundle to trust, mounted by `make images` behind a TLS-intercepting proxy.
ARG HOST_CA=
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ -n "$HOST_CA" ]; then export PIP_CERT="$HOST_CA"; fi \
    && python3 -m venv /opt/modeldeploy \
    && /opt/modeldeploy/bin/pip install --disable-pip-version-check '.[operator]' \
    && /opt/modeldeploy/bin/pip uninstall --quiet -y pip

FROM ${BASE}
RUN useradd --uid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin modeldeploy
COPY --from=build /opt/modeldeploy /opt/modeldeploy
USER 65532:65532
ENV PATH=/opt/modeldeploy/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
ENTRYPOINT ["modeldeploy"]
CMD ["operator"]
