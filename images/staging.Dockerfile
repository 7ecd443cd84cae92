# The staging Job's image (modeldeploy[staging]: torch, onnx, onnxruntime, kserve-storage). The
# only place untrusted pickles are loaded; the Job runs it non-root with a read-only root
# filesystem and no service-account token.
#   docker build -f images/staging.Dockerfile -t ghcr.io/modeldeploy/staging:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[staging]' --extra-index-url https://download.pytorch.org/whl/cpu

FROM python:3.11-slim
RUN useradd --uid 65532 --create-home --shell /usr/sbin/nologin modeldeploy
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'modeldeploy[staging]' && rm -rf /wheels
USER 65532:65532
ENV PYTHONUNBUFFERED=1 HOME=/tmp
ENTRYPOINT ["modeldeploy"]
CMD ["stage"]
