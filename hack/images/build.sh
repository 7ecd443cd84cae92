#!/usr/bin/env bash
# `make images`: build the operator, staging and runtime (CPU and CUDA) images with podman, and
# record their tags, sizes and build times in .cache/images/built.json.
#
# The Dockerfiles take their base from the BASE build argument (a public python image by
# default). When no registry can be reached, as on a sandboxed machine, a Debian bookworm base
# (whose Python is 3.11) is made once with debootstrap and passed instead. pip's downloads are
# kept in a build cache mount, so a warm rebuild downloads nothing.
#
# Environment: REGISTRY (default ghcr.io/modeldeploy), IMAGES (default: all four, by name:
# operator staging runtime runtime-cuda), BASE (skip the registry probe and use this base).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=$root/.cache/images
export CONTAINERS_CONF=$here/containers.conf
registry=${REGISTRY:-ghcr.io/modeldeploy}
version=$(python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$root/pyproject.toml")
log() { echo "images: $*" >&2; }

need_tools() {
  local missing=()
  for tool in podman runc debootstrap skopeo; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [[ ${#missing[@]} -eq 0 ]] && return
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]} (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc buildah debootstrap skopeo >/dev/null
  else
    log "missing ${missing[*]}: install podman, runc, debootstrap and skopeo"; exit 1
  fi
}

reachable() { # <url>: any HTTP answer at all (a registry answers 401 without a token)
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$1" 2>/dev/null) || true
  [[ ${code:-000} != 000 ]]
}

local_base() { # a Debian bookworm base with python3, made once
  local tag=localhost/modeldeploy/base:bookworm
  if ! podman image exists "$tag"; then
    log "no registry reachable: making $tag with debootstrap (once)"
    local rootfs=$cache/base-rootfs
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$cache/debootstrap.log" 2>&1
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
    rm -rf "$rootfs"
  fi
  echo "$tag"
}

mkdir -p "$cache"
need_tools
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
args=()
if [[ -n ${BASE:-} ]]; then
  base=$BASE
elif reachable https://registry-1.docker.io/v2/; then
  base=""
else
  base=$(local_base)
fi
[[ -n $base ]] && args+=(--build-arg "BASE=$base")
# pip inside the build trusts what the host trusts (a TLS-intercepting proxy's CA included).
host_ca=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
if [[ -f $host_ca ]]; then
  args+=(--volume "$host_ca:/run/host-ca.crt:ro" --build-arg HOST_CA=/run/host-ca.crt)
fi
reachable https://download.pytorch.org/whl/cpu/ || args+=(--build-arg TORCH_INDEX=)
reachable https://pypi.nvidia.com/ || args+=(--build-arg GPU_EXTRAS=)

declare -A files=(
  [operator]=images/operator.Dockerfile
  [staging]=images/staging.Dockerfile
  [runtime]=runtimes/onnx/Dockerfile.cpu
  [runtime-cuda]=runtimes/onnx/Dockerfile.cuda
)
declare -A tags=(
  [operator]=$registry/operator:$version
  [staging]=$registry/staging:$version
  [runtime]=$registry/onnx-runtime:$version
  [runtime-cuda]=$registry/onnx-runtime:$version-cuda12
)
record=$cache/built.json
[[ -f $record ]] || echo '{}' >"$record"
# What the images are built from: the test cluster runs only images built from the tree as it is.
source_digest=$(python3 "$root/tests/support/image_source.py" "$root")
for name in ${IMAGES:-operator runtime staging runtime-cuda}; do
  # The CUDA image's public base is NVIDIA's; the local base has no CUDA, so it is built, not run.
  log "building ${tags[$name]} (${files[$name]})"
  start=$SECONDS
  podman build --quiet --layers -f "$root/${files[$name]}" -t "${tags[$name]}" "${args[@]}" "$root" >/dev/null
  seconds=$((SECONDS - start))
  size=$(podman image inspect --format '{{.Size}}' "${tags[$name]}")
  log "built ${tags[$name]} in ${seconds}s, $((size / 1048576)) MiB"
  python3 - "$record" "$name" "${tags[$name]}" "$seconds" "$size" "${base:-public}" "$source_digest" <<'PY'
import json, sys
path, name, tag, seconds, size, base, source = sys.argv[1:]
data = json.load(open(path))
previous = data.get(name, {})
data[name] = {"tag": tag, "seconds": int(seconds), "bytes": int(size), "base": base,
              "builds": previous.get("builds", 0) + 1, "source": source,
              "firstSeconds": previous.get("firstSeconds", int(seconds))}
json.dump(data, open(path, "w"), indent=1, sort_keys=True)
PY
done

# After building them all, untagged images older than this build are earlier builds' leftovers
# (a staging build leaves two of 6 GB); this build's own build stages stay, so the next rebuild
# still finds its cache. (Building some of them prunes nothing: the others' cache is older.)
if [[ -z ${IMAGES:-} ]]; then
  podman image prune -f --filter "until=$started" >/dev/null
fi

# The table docs/benchmarks.md quotes: what each image weighs, its first and its latest build.
python3 - "$record" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
print("| image | tag | size | first build | latest build | builds |")
print("| --- | --- | --- | --- | --- | --- |")
for name, item in sorted(data.items()):
    print(f"| {name} | `{item['tag']}` | {item['bytes'] / 2**20:.0f} MiB | {item['firstSeconds']} s "
          f"| {item['seconds']} s | {item['builds']} |")
PY
