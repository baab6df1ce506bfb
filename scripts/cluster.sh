#!/usr/bin/env bash
# `make all` / `make stop`: fairprice on the local Kubernetes cluster of the current kubectl
# context (kind, minikube, k3d or docker-desktop), configured from clusters_dev.toml.
#
#   scripts/cluster.sh up       build the images, load them into the cluster, install or upgrade
#                               the chart, wait for the rollouts, port-forward Grafana
#   scripts/cluster.sh down     stop the port-forward, uninstall, delete volumes, namespace, CRD
#   scripts/cluster.sh detect   print the cluster type and name of the current context
#   scripts/cluster.sh namespace print the Namespace that `up` applies (restricted Pod Security)
#
# Environment: FAIRPRICE_CLUSTER (kind|minikube|k3d|docker-desktop|registry) overrides the
# detection ("registry": push to kubernetes.image.registry instead of loading);
# GRAFANA_PORT (default 3000) is the local port of the Grafana port-forward.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=.state
CONFIG=clusters_dev.toml
CHART=helm/fairprice
SERVICES=(crawler converter storer operator api)

say() { printf '\033[1mmake: %s\033[0m\n' "$*"; }
die() { printf 'make: %s\n' "$*" >&2; exit 1; }

need() { # need TOOL WHAT-TO-INSTALL
  command -v "$1" >/dev/null 2>&1 || die "$1 is missing: install $2, then run again"
}

setting() { python3 scripts/k8s_values.py --config "$CONFIG" --get "$1"; }

# The cluster type and name from the kubectl context: "kind dev", "minikube minikube", ...
detect() {
  need kubectl "kubectl (https://kubernetes.io/docs/tasks/tools/)"
  local context
  context=$(kubectl config current-context 2>/dev/null) \
    || die "kubectl has no current context: create a local cluster first (kind create cluster, minikube start, k3d cluster create, or enable Kubernetes in Docker Desktop)"
  if [ -n "${FAIRPRICE_CLUSTER:-}" ]; then
    echo "$FAIRPRICE_CLUSTER $context"
    return
  fi
  case "$context" in
    kind-*) echo "kind ${context#kind-}" ;;
    k3d-*) echo "k3d ${context#k3d-}" ;;
    minikube) echo "minikube minikube" ;;
    docker-desktop | docker-for-desktop) echo "docker-desktop $context" ;;
    *)
      if kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null | grep -q ':8443$' \
        && command -v minikube >/dev/null && minikube -p "$context" status >/dev/null 2>&1; then
        echo "minikube $context"  # a named minikube profile
      else
        die "context '$context' is not kind, minikube, k3d or docker-desktop: set FAIRPRICE_CLUSTER=registry and kubernetes.image.registry in $CONFIG to push images instead"
      fi
      ;;
  esac
}

# The release's Namespace, labelled to enforce (and audit and warn on) the restricted Pod
# Security Standard. Helm's own create-namespace option would create it with no labels.
PSS_LABELS=(pod-security.kubernetes.io/{enforce,audit,warn}=restricted
  pod-security.kubernetes.io/{enforce,audit,warn}-version=latest)
namespace_manifest() { # namespace_manifest NAME
  kubectl create namespace "$1" --dry-run=client -o yaml \
    | kubectl label --local -f - -o yaml "${PSS_LABELS[@]}" app.kubernetes.io/part-of=fairprice
}

fullname() { # the chart's object-name prefix for a release
  case "$1" in *fairprice*) echo "$1" ;; *) echo "$1-fairprice" ;; esac
}

up() {
  need python3 "Python 3.11+"
  need docker "Docker (a running engine: Docker Desktop, or docker.io on Linux)"
  need helm "Helm 3.8+ (https://helm.sh/docs/intro/install/)"
  read -r kind name < <(detect)
  case "$kind" in
    kind) need kind "kind (https://kind.sigs.k8s.io/)" ;;
    minikube) need minikube "minikube (https://minikube.sigs.k8s.io/)" ;;
    k3d) need k3d "k3d (https://k3d.io/)" ;;
    docker-desktop | registry) ;;
    *) die "FAIRPRICE_CLUSTER=$kind: expected kind, minikube, k3d, docker-desktop or registry" ;;
  esac
  docker info >/dev/null 2>&1 || die "the Docker engine is not running: start it, then run again"

  local release namespace tag registry offline
  release=$(setting kubernetes.release)
  namespace=$(setting kubernetes.namespace)
  tag=$(setting kubernetes.image.tag)
  registry=$(setting kubernetes.image.registry)
  offline=$(setting kubernetes.offline)
  say "cluster: $kind ($name), release $release in namespace $namespace, image tag $tag"

  local services=("${SERVICES[@]}") images=()
  [ "$offline" = "True" ] && services+=(sim)
  for service in "${services[@]}"; do
    local image="fairprice-$service:$tag"
    [ -n "$registry" ] && image="$registry/$image"
    say "building $image (docker build -f dev.Dockerfile --build-arg SERVICE=$service)"
    docker build --quiet -f dev.Dockerfile --build-arg "SERVICE=$service" -t "$image" . >/dev/null
    images+=("$image")
  done

  case "$kind" in
    kind) say "loading the images into kind cluster $name"; kind load docker-image --name "$name" "${images[@]}" ;;
    minikube) for image in "${images[@]}"; do say "loading $image into minikube ($name)"; minikube -p "$name" image load "$image"; done ;;
    k3d) say "importing the images into k3d cluster $name"; k3d image import --cluster "$name" "${images[@]}" ;;
    docker-desktop) say "docker-desktop runs the images built locally: nothing to load" ;;
    registry)
      [ -n "$registry" ] || die "FAIRPRICE_CLUSTER=registry needs kubernetes.image.registry in $CONFIG"
      for image in "${images[@]}"; do say "pushing $image"; docker push --quiet "$image"; done ;;
  esac

  mkdir -p "$STATE"
  say "writing chart values from $CONFIG to $STATE/k8s-values.json"
  python3 scripts/k8s_values.py --config "$CONFIG" --out "$STATE/k8s-values.json"
  say "applying the MarketFeed CRD (helm installs CRDs on first install only, never upgrades them)"
  kubectl apply --server-side --force-conflicts -f k8s/base/crd/marketfeeds.fairprice.io.yaml >/dev/null
  say "namespace $namespace, enforcing the restricted Pod Security Standard"
  namespace_manifest "$namespace" | kubectl apply -f - >/dev/null
  say "helm upgrade --install $release $CHART (namespace $namespace)"
  helm upgrade --install "$release" "$CHART" --namespace "$namespace" \
    --values "$STATE/k8s-values.json" >/dev/null

  say "waiting for the rollouts"
  local workload
  for workload in $(kubectl -n "$namespace" get deployments,statefulsets \
      -l "app.kubernetes.io/instance=$release" -o name); do
    say "  $workload"
    kubectl -n "$namespace" rollout status "$workload" --timeout=600s >/dev/null
  done

  local prefix port password user
  prefix=$(fullname "$release")
  port=${GRAFANA_PORT:-3000}
  stop_port_forward
  say "port-forwarding Grafana to 127.0.0.1:$port (log: $STATE/grafana-port-forward.log)"
  nohup kubectl -n "$namespace" port-forward "svc/$prefix-grafana" "$port:3000" \
    >"$STATE/grafana-port-forward.log" 2>&1 &
  echo $! >"$STATE/grafana-port-forward.pid"
  user=$(kubectl -n "$namespace" get secret "$prefix-grafana" -o jsonpath='{.data.admin-user}' | base64 -d)
  password=$(kubectl -n "$namespace" get secret "$prefix-grafana" -o jsonpath='{.data.admin-password}' | base64 -d)
  say "fairprice is up"
  echo
  echo "  Grafana:   http://127.0.0.1:$port   (dashboards: fairprice / Market, fairprice / Pipeline)"
  echo "  user:      $user"
  echo "  password:  $password"
  echo "  feeds:     kubectl -n $namespace apply -f k8s/examples/btcusdt.yaml; kubectl -n $namespace get marketfeeds"
  echo "  checks:    helm test $release -n $namespace"
  echo "  stop:      make stop"
}

stop_port_forward() {
  local pidfile="$STATE/grafana-port-forward.pid"
  if [ -f "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      say "stopping the Grafana port-forward (pid $pid)"
      kill "$pid"
    fi
    rm -f "$pidfile"
  fi
}

down() {
  need python3 "Python 3.11+"
  need helm "Helm 3.8+ (https://helm.sh/docs/intro/install/)"
  read -r kind name < <(detect)
  local release namespace
  release=$(setting kubernetes.release)
  namespace=$(setting kubernetes.namespace)
  stop_port_forward
  say "removing fairprice from $kind ($name)"
  if helm status "$release" --namespace "$namespace" >/dev/null 2>&1; then
    say "helm uninstall $release (namespace $namespace)"
    helm uninstall "$release" --namespace "$namespace" --wait >/dev/null
  else
    say "release $release is not installed"
  fi
  say "deleting the volumes of NATS and InfluxDB"
  kubectl -n "$namespace" delete pvc -l "app.kubernetes.io/instance=$release" --ignore-not-found >/dev/null
  say "deleting namespace $namespace"
  kubectl delete namespace "$namespace" --ignore-not-found --wait=true >/dev/null
  say "deleting the MarketFeed CRD (helm keeps CRDs on uninstall)"
  kubectl delete crd marketfeeds.fairprice.io --ignore-not-found >/dev/null
  say "done"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  detect) detect ;;
  namespace) namespace_manifest "${2:-$(setting kubernetes.namespace)}" ;;
  *) die "usage: scripts/cluster.sh up|down|detect|namespace [NAME]" ;;
esac
