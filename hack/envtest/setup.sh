#!/usr/bin/env bash
# Provide the test control plane: kube-apiserver, kube-controller-manager, kube-scheduler, etcd,
# kubectl and helm binaries, KServe's controller manager, plus the KServe
# Gateway API and Prometheus Operator (monitoring) CRDs, all at pinned versions; and versitygw, the S3-compatible server the
# staging tests store artifacts in; and Prometheus for the canary analysis. Prints two lines: the folder holding the binaries
# and the folder holding the CRDs.
#
# Binaries come from $KUBEBUILDER_ASSETS when it holds them (the envtest convention); anything
# missing is built once from its Go module through the Go module proxy into a per-user store
# (~/.cache/modeldeploy/envtest-bin, or $ENVTEST_BIN_STORE) and linked from .cache/envtest/bin
# (ignored by git). CRDs are read from the KServe and Gateway API Go
# modules at the versions in versions.env; nothing is copied into the repository.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${ENVTEST_CACHE:-$root/.cache/envtest}
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
# shellcheck source=versions.env
source "$here/versions.env"

log() { echo "envtest: $*" >&2; }

module_version() { # <build folder> <module>
  (cd "$here/$1" && go list -m -f '{{.Version}}' "$2")
}

# Built binaries are kept per user, as setup-envtest keeps its downloads, so a fresh clone on
# the same machine links them instead of building each again from Go's build cache (about
# 1.5 min warm). Each is keyed by what it is built from: the build folder's files, the build
# flags, the assembly steps below and the Go version; a change to any of them builds anew.
store=${ENVTEST_BIN_STORE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy/envtest-bin}

build_key() { # <build folder> [go build flags]: a digest of everything the binary is built from
  local folder=$1
  shift
  { go version; printf '%s\n' "$@"; declare -f "assemble_$folder" || true
    echo "${lego_refused:-} ${lego_refused_modules:-}"
    (cd "$here/$folder" && find . -type f -print0 | sort -z | xargs -0 sha256sum); } \
    | sha256sum | cut -c1-16
}

build() { # <build folder> <package> <binary> <version> [go build flags, after -ldflags="-s -w"]
  local folder=$1 package=$2 binary=$3 version=$4 dir="$here/$1"
  shift 4
  local out
  out="$store/$folder-$version-$(build_key "$folder" "$package" "$@")/$binary"
  if [[ ! -x $out ]]; then
    log "building $binary $version from $package (first time only; several minutes on 2 cores)"
    local start=$SECONDS
    mkdir -p "$(dirname "$out")"
    if declare -F "assemble_$folder" >/dev/null; then  # a build folder with parts filled in here
      dir="$cache/$folder-$version/src"
      "assemble_$folder" "$dir"
    fi
    (cd "$dir" && go build -trimpath -ldflags="-s -w" "$@" -o "$out.tmp.$$" "$package")
    mv "$out.tmp.$$" "$out"
    log "built $binary in $((SECONDS - start))s"
  fi
  ln -sfn "$out" "$cache/bin/$binary"
}

mkdir -p "$cache/bin"
k8s=$(module_version kubernetes k8s.io/kubernetes)
etcd=$(module_version etcd go.etcd.io/etcd/server/v3)
helm=$(module_version helm helm.sh/helm/v3)
versitygw=$(module_version versitygw github.com/versity/versitygw)
kserve_manager=$(module_version kserve github.com/kserve/kserve)
if [[ $kserve_manager != "$KSERVE_VERSION" ]]; then
  log "hack/envtest/kserve/go.mod builds KServe $kserve_manager but versions.env reads its CRDs at $KSERVE_VERSION: make them one version"
  exit 1
fi

for binary in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd; do
  if [[ -n ${KUBEBUILDER_ASSETS:-} && -x ${KUBEBUILDER_ASSETS}/$binary ]]; then
    ln -sfn "$KUBEBUILDER_ASSETS/$binary" "$cache/bin/$binary"
    continue
  fi
  case $binary in
    kube-apiserver) build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$k8s" ;;
    kube-controller-manager) build kubernetes k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager "$k8s" ;;
    kube-scheduler) build kubernetes k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler "$k8s" ;;
    kubectl) build kubernetes k8s.io/kubernetes/cmd/kubectl kubectl "$k8s" ;;
    etcd) build etcd go.etcd.io/etcd/server/v3 etcd "$etcd" ;;
  esac
done
if [[ -n ${KUBEBUILDER_ASSETS:-} && -x ${KUBEBUILDER_ASSETS}/helm ]]; then
  ln -sfn "$KUBEBUILDER_ASSETS/helm" "$cache/bin/helm"
else
  build helm helm.sh/helm/v3/cmd/helm helm "$helm"
fi

build versitygw github.com/versity/versitygw/cmd/versitygw versitygw "$versitygw"
# KServe's own controller manager, for the tests that run KServe's reconcile and webhooks.
build kserve github.com/kserve/kserve/cmd/manager kserve-manager "$kserve_manager"

# Prometheus with Kubernetes service discovery, for the KServe cluster (tests/support/cluster.py):
# Debian's package below is built without it. Built from its module with only that discovery
# compiled in (Prometheus's own build tags).
prometheus_module=$(module_version prometheus github.com/prometheus/prometheus)
release=${prometheus_module#v0.}  # module v0.316.0 is Prometheus 3.16.0, as --version says
if [[ -n ${PROMETHEUS_K8S_BIN:-} && -x $PROMETHEUS_K8S_BIN ]]; then
  ln -sfn "$PROMETHEUS_K8S_BIN" "$cache/bin/prometheus-kubernetes"
else
  build prometheus github.com/prometheus/prometheus/cmd/prometheus prometheus-kubernetes \
    "$prometheus_module" -tags remove_all_sd,enable_kubernetes_sd \
    -ldflags="-s -w -X github.com/prometheus/common/version.Version=${release:0:1}.${release:1}"
fi

# Prometheus, for the canary analysis tests: Debian's package, unpacked (not installed) into the
# cache, so no root and no system change are needed beyond reading the package index.
if [[ -n ${PROMETHEUS_BIN:-} && -x $PROMETHEUS_BIN ]]; then
  ln -sfn "$PROMETHEUS_BIN" "$cache/bin/prometheus"
elif [[ ! -x $cache/prometheus/usr/bin/prometheus ]]; then
  log "fetching Debian's prometheus package"
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get download prometheus >/dev/null 2>&1; }; })
  rm -rf "$cache/prometheus" && dpkg-deb -x "$tmp"/prometheus_*.deb "$cache/prometheus"
  rm -rf "$tmp"
  ln -sfn "$cache/prometheus/usr/bin/prometheus" "$cache/bin/prometheus"
else
  ln -sfn "$cache/prometheus/usr/bin/prometheus" "$cache/bin/prometheus"
fi

# iptables, for the node agent's Service ClusterIPs (kube-proxy's rules, written into each pod's
# network namespace: tests/support/kubelet/services.py). The node agent runs as root to make
# those namespaces, so this is installed as a system package, as a CNI host would have it.
if ! command -v iptables-restore >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing Debian's iptables (Service ClusterIPs inside pods)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q iptables >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q iptables >/dev/null; }
  else
    log "iptables-restore is missing: install iptables (pods cannot reach Service ClusterIPs without it)"
  fi
fi

module_dir() { # <module@version>
  go mod download -json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if "Error" in d else print(d["Dir"])'
}

traefik_require() { # <module>: its version in hack/envtest/traefik/go.mod
  (cd "$here/traefik" && go mod edit -json) | python3 -c '
import json, sys
print(next(r["Version"] for r in json.load(sys.stdin)["Require"] if r["Path"] == sys.argv[1]))' "$1"
}

assemble_traefik() { # <folder>: hack/envtest/traefik with its go-http-auth and lego folders filled
  local src=$1 auth lego
  rm -rf "$src" && mkdir -p "$src" && cp -r "$here/traefik/." "$src/"
  auth=$(module_dir "github.com/abbot/go-http-auth@v0.4.0")
  cp -r "$auth/." "$src/go-http-auth/" && chmod -R u+w "$src/go-http-auth"
  rm -rf "$src/go-http-auth/examples"
  printf 'module github.com/abbot/go-http-auth\n\ngo 1.12\n' > "$src/go-http-auth/go.mod"
  lego=$(module_dir "github.com/go-acme/lego/v5@$(traefik_require github.com/go-acme/lego/v5)")
  cp -r "$lego" "$src/lego" && chmod -R u+w "$src/lego"
  local providers="$src/lego/providers/dns/zz_gen_dns_providers.go" p
  for p in $lego_refused; do
    sed -i -e "\#\"github.com/go-acme/lego/v5/providers/dns/$p\"#d" \
      -e "/^\tcase \"$p\"\(, \"[a-z0-9]*\"\)*:\$/{N;d}" "$providers"
  done
  # The refused SDKs leave lego's requirements, so the module graph never asks the proxy for them.
  local m drops=()
  for m in $lego_refused_modules; do drops+=("-droprequire=$m"); done
  (cd "$src/lego" && go mod edit "${drops[@]}")
}

# Traefik, the Gateway API implementation serving KServe's Gateway in the cluster tests and the
# demo. Its module builds from hack/envtest/traefik/go.mod, which repeats Traefik's own replace
# directives, with three local folders in place of modules the Go proxy refuses ("403 Forbidden:
# This module version is not available"), assembled here from served modules:
# - ext: Traefik's nested module github.com/traefik/traefik/dynamic/ext, left out of its zip
#   (empty structs in open-source Traefik; the folder is in the repository);
# - go-http-auth: Traefik's fork github.com/containous/go-http-auth is refused, so upstream
#   github.com/abbot/go-http-auth v0.4.0 plus the two functions the fork adds (traefik_fork.go);
# - lego: github.com/go-acme/lego/v5 at Traefik's version, less the ACME DNS providers whose cloud
#   SDKs are refused ($lego_refused). Only Let's Encrypt DNS challenges with those providers are lost.
lego_refused_modules="github.com/akamai/AkamaiOPEN-edgegrid-golang/v13 github.com/aziontech/azionapi-go-sdk
  github.com/dnsimple/dnsimple-go/v9 github.com/go-acme/esa-20240910/v3 github.com/go-acme/alidns-20150109/v5
  github.com/go-acme/tencentedgdeone github.com/go-acme/tencentclouddnspod github.com/huaweicloud/huaweicloud-sdk-go-v3
  github.com/nrdcg/oci-go-sdk/common/v1065 github.com/nrdcg/oci-go-sdk/dns/v1065 github.com/regfish/regfish-dnsapi-go
  github.com/sacloud/sacloud-sdk-go github.com/ucloud/ucloud-sdk-go github.com/yandex-cloud/go-sdk/services/dns"
lego_refused="alidns aliesa azion dnsimple edgedns edgeone huaweicloud oraclecloud regfish sakuracloud tencentcloud ucloud yandexcloud"
traefik_version=$(traefik_require github.com/traefik/traefik/v3)
if [[ -n ${TRAEFIK_BIN:-} && -x $TRAEFIK_BIN ]]; then
  ln -sfn "$TRAEFIK_BIN" "$cache/bin/traefik"
else
  build traefik github.com/traefik/traefik/v3/cmd/traefik traefik "$traefik_version"
fi

crds="$cache/crds/kserve-$KSERVE_VERSION-gateway-api-$GATEWAY_API_VERSION-prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
if [[ ! -f $crds/.complete || ! -f $crds/kserve/initializer-entrypoint ]]; then
  log "reading CRDs from github.com/kserve/kserve@$KSERVE_VERSION and sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION"
  rm -rf "$crds" && mkdir -p "$crds"
  kserve=$(module_dir "github.com/kserve/kserve@$KSERVE_VERSION")
  # Every CRD KServe's manager watches: it refuses to start without one.
  for kind in inferenceservices servingruntimes clusterservingruntimes inferencegraphs trainedmodels; do
    cp "$kserve/config/crd/full/serving.kserve.io_$kind.yaml" "$crds/"
  done
  cp "$kserve/config/crd/full/clusterstoragecontainer/serving.kserve.io_clusterstoragecontainers.yaml" "$crds/"
  # What KServe's manager is configured from, read by tests/support/kserve.py (not installed
  # with the CRDs: a subfolder).
  mkdir -p "$crds/kserve"
  cp "$kserve/config/configmap/inferenceservice.yaml" "$kserve/config/webhook/manifests.yaml" \
    "$kserve/config/storagecontainers/default.yaml" "$kserve/config/runtimes/kserve-tritonserver.yaml" \
    "$crds/kserve/"
  # The storage-initializer image's program (the node agent runs it with kserve-storage).
  cp "$kserve/python/storage-initializer/scripts/initializer-entrypoint" "$crds/kserve/"
  gateway=$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")
  for f in "$gateway"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
    [[ $f == *_vap_* ]] || cp "$f" "$crds/"  # CRDs only, not the upgrade-guard policy
  done
  promop=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
  for kind in podmonitors servicemonitors prometheusrules; do
    cp "$promop/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$crds/"
  done
  chmod u+w "$crds"/*.yaml "$crds"/kserve/*
  touch "$crds/.complete"
fi

# Traefik's RBAC for its Gateway provider, from its module at the version built above
# (tests/support/traefik.py binds it to Traefik's ServiceAccount).
if [[ ! -f $crds/traefik/$traefik_version ]]; then
  rm -rf "$crds/traefik" && mkdir -p "$crds/traefik"
  cp "$(module_dir "github.com/traefik/traefik/v3@$traefik_version")/docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml" "$crds/traefik/"
  chmod u+w "$crds/traefik"/*.yml
  touch "$crds/traefik/$traefik_version"
fi

# KServe before spec.canary: its serving CRDs and the same Gateway API CRDs, in a subfolder (not
# installed with the others: a test starts a second API server with these instead).
legacy="$crds/kserve-$KSERVE_LEGACY_VERSION"
if [[ ! -f $legacy/.complete ]]; then
  log "reading CRDs from github.com/kserve/kserve@$KSERVE_LEGACY_VERSION (the path before spec.canary)"
  rm -rf "$legacy" && mkdir -p "$legacy"
  old_kserve=$(module_dir "github.com/kserve/kserve@$KSERVE_LEGACY_VERSION")
  for kind in inferenceservices servingruntimes clusterservingruntimes; do
    cp "$old_kserve/config/crd/full/serving.kserve.io_$kind.yaml" "$legacy/"
  done
  cp "$crds"/gateway.networking.k8s.io_*.yaml "$legacy/"
  chmod u+w "$legacy"/*.yaml
  touch "$legacy/.complete"
fi

echo "$cache/bin"
echo "$crds"
