# egress-doctor image: small, non-root (uid/gid 10001 — never 1337, which the Istio sidecar's
# iptables rules exempt from capture, so probes would bypass the sidecar), no compiler in the
# final stage. Build with BuildKit (the default builder since Docker 23; RUN --mount needs it):
#   docker build -t REGISTRY/egress-doctor:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY egress_doctor ./egress_doctor
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="egress-doctor" \
      org.opencontainers.image.description="Diagnose AWS egress (IMDS, STS, DynamoDB) from a pod behind an Istio sidecar" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The wheels are mounted from the build stage, not copied: no layer of this image keeps them.
# Installed as root and so read-only for the user below; pip compiles the .pyc files now, as a
# read-only root filesystem lets Python write none at run time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels egress-doctor \
    && groupadd --gid 10001 doctor \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin doctor
USER 10001:10001
# Kubernetes ignores Docker health checks (it has probes: k8s/readiness.yaml); none is declared.
HEALTHCHECK NONE
ENTRYPOINT ["egress-doctor"]
CMD ["check"]
