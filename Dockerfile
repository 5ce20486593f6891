# egress-doctor image: small, non-root (uid/gid 10001 — never 1337, which the Istio sidecar's
# iptables rules exempt from capture, so probes would bypass the sidecar), no compiler in the
# final stage. Build: docker build -t REGISTRY/egress-doctor:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY egress_doctor ./egress_doctor
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && groupadd --gid 10001 doctor && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin doctor
USER 10001:10001
ENTRYPOINT ["egress-doctor"]
CMD ["check"]
