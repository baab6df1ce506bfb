#!/usr/bin/env bash
# The install steps of dev.Dockerfile, one script shared by the Dockerfile and by
# tests/k8s/test_dockerfile.py (which runs them in a clean virtual environment per service).
#
#   image-install.sh deps SERVICE      third-party dependencies only: needs the workspace's
#                                      pyproject.toml files and uv.lock, not the sources
#   image-install.sh project SERVICE   then the workspace packages the service needs (sources)
#
# SERVICE: crawler | converter | storer | operator | api | sim. The environment goes to
# $UV_PROJECT_ENVIRONMENT; no dev dependencies, packages installed non-editable (the final
# image copies only the environment), and bin/fairprice-service runs the service.
set -euo pipefail

step=${1:?usage: image-install.sh deps|project SERVICE}
service=${2:?usage: image-install.sh deps|project SERVICE}
case "$service" in
  crawler | converter | storer | operator | api) package="fairprice-$service" command="fairprice-$service" ;;
  sim) package="fairprice-simulator" command="fairprice-sim" ;;
  *) echo "image-install: unknown service '$service' (crawler|converter|storer|operator|api|sim)" >&2; exit 2 ;;
esac
: "${UV_PROJECT_ENVIRONMENT:?image-install: set UV_PROJECT_ENVIRONMENT to the environment path}"
export UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PYTHON_PREFERENCE=only-system

sync=(uv sync --frozen --no-dev --no-editable --package "$package")
case "$step" in
  deps)
    echo "image-install: dependencies of $package"
    "${sync[@]}" --no-install-workspace
    ;;
  project)
    echo "image-install: $package and its workspace dependencies"
    "${sync[@]}"
    ln -sfn "$command" "$UV_PROJECT_ENVIRONMENT/bin/fairprice-service"
    ;;
  *) echo "image-install: unknown step '$step' (deps|project)" >&2; exit 2 ;;
esac
