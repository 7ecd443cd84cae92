# The staging Job's image (modeldeploy[staging]: torch, torchvision, onnx, onnxruntime,
# kserve-storage). The only place untrusted pickles are loaded; the Job runs it non-root with a
# read-only root filesystem and no service-account token, its tenant-code step without the store.
#   docker build -f images/staging.Dockerfile -t ghcr.io/modeldeploy/staging:0.1.0 .
# TORCH_INDEX picks PyTorch's CPU wheels (a few hundred MB instead of the CUDA build's GB);
# `make images` empties it when that index cannot be reached, and PyPI's torch is used.
ARG BASE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE} AS build
# A CA bundle to trust, mounted by `make images` behind a TLS-intercepting proxy.
ARG HOST_CA=
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ -n "$HOST_CA" ]; then export PIP_CERT="$HOST_CA"; fi \
    && python3 -m venv /opt/modeldeploy \
    && /opt/modeldeploy/bin/pip install --disable-pip-version-check \
       ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} '.[staging]' \
    && /opt/modeldeploy/bin/pip uninstall --quiet -y pip

FROM ${BASE}
RUN useradd --uid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin modeldeploy
COPY --from=build /opt/modeldeploy /opt/modeldeploy
USER 65532:65532
ENV PATH=/opt/modeldeploy/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
ENTRYPOINT ["modeldeploy"]
CMD ["stage"]
