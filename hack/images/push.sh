#!/usr/bin/env bash
# `make push REGISTRY=registry.example.com/team`: copy the images `make images` built (tagged
# ghcr.io/modeldeploy/...:<version>) to REGISTRY/modeldeploy/... with skopeo, keeping name and tag. Credentials
# come from `skopeo login` / `podman login` (REGISTRY_AUTH_FILE), as in any CI.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF=$here/containers.conf
: "${REGISTRY:?set REGISTRY, e.g. make push REGISTRY=ghcr.io/my-org}"
built=$root/.cache/images/built.json
[[ -f $built ]] || { echo "push: nothing built; run make images first" >&2; exit 1; }

python3 -c 'import json,sys; [print(v["tag"]) for v in json.load(open(sys.argv[1])).values()]' "$built" |
while read -r tag; do
  # ghcr.io/modeldeploy/operator:0.1.0 -> REGISTRY/modeldeploy/operator:0.1.0: the chart's
  # repositories under another registry, so global.imageRegistry=REGISTRY is all it needs.
  target="${REGISTRY%/}/${tag#*/}"
  echo "push: $tag -> $target" >&2
  skopeo copy ${SKOPEO_ARGS:-} "containers-storage:$tag" "docker://$target"
done
