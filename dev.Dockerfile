# syntax=docker/dockerfile:1.7
# One image for every fairprice service; the build argument picks which:
#   docker build -f dev.Dockerfile --build-arg SERVICE=crawler -t fairprice-crawler:dev .
# SERVICE: crawler | converter | storer | operator | api | sim. The install steps live in
# scripts/image-install.sh, shared with the test that runs them in a clean environment.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /app
ENV UV_PROJECT_ENVIRONMENT=/app/.venv
COPY scripts/image-install.sh /usr/local/bin/image-install

# 1. Dependencies: only the workspace's manifests and lock, so this layer stays cached while
#    only sources change.
COPY pyproject.toml uv.lock ./
COPY common/pyproject.toml common/
COPY microservices/crawler/pyproject.toml microservices/crawler/
COPY microservices/converter/pyproject.toml microservices/converter/
COPY microservices/storer/pyproject.toml microservices/storer/
COPY microservices/operator/pyproject.toml microservices/operator/
COPY microservices/api/pyproject.toml microservices/api/
COPY simulator/pyproject.toml simulator/
COPY cli/pyproject.toml cli/
RUN --mount=type=cache,target=/root/.cache/uv image-install deps "${SERVICE}"

# 2. The sources of the workspace packages (tests are left out by .dockerignore).
COPY common/src common/src
COPY microservices/crawler/src microservices/crawler/src
COPY microservices/converter/src microservices/converter/src
COPY microservices/storer/src microservices/storer/src
COPY microservices/operator/src microservices/operator/src
COPY microservices/api/src microservices/api/src
COPY simulator/src simulator/src
RUN --mount=type=cache,target=/root/.cache/uv image-install project "${SERVICE}"

# The final image: the Python runtime and the environment, no uv, no pip, no compilers.
FROM ${PYTHON_IMAGE}
ARG SERVICE
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --system --gid 10001 fairprice \
 && useradd --system --uid 10001 --gid fairprice --no-create-home --shell /usr/sbin/nologin fairprice
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FAIRPRICE_SERVICE=${SERVICE}
WORKDIR /app
USER 10001:10001
# SIGTERM goes straight to the service (exec form, no shell), which drains and exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/.venv/bin/fairprice-service"]
