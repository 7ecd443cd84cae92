# The operator image the Helm chart runs (modeldeploy[operator]: kopf, the kubernetes client,
# tritonclient for live golden parity, boto3 for S3 stores). No torch: pickles are never loaded
# here, only in the staging image.
#   docker build -f images/operator.Dockerfile -t ghcr.io/modeldeploy/operator:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[operator]'

FROM python:3.11-slim
RUN useradd --uid 65532 --create-home --shell /usr/sbin/nologin modeldeploy
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'modeldeploy[operator]' && rm -rf /wheels
USER 65532:65532
ENV PYTHONUNBUFFERED=1 HOME=/tmp
ENTRYPOINT ["modeldeploy"]
CMD ["operator"]
