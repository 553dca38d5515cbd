#!/usr/bin/env bash
# The main job, end to end: build dist/podpy.pyz, start a real registry on loopback, put a
# busybox image into it, then pull it with podpy and run a container from it.
# Needs the Debian packages docker-registry and busybox-static (bash .ci/run installs them).
# Everything lives in a temporary directory that is removed at the end; exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

PYTHON="${PYTHON:-python3}"
for tool in docker-registry /bin/busybox; do
    if ! command -v "$tool" >/dev/null; then
        echo "demo.sh: $tool is missing: apt install docker-registry busybox-static" >&2
        exit 1
    fi
done

echo "+ $PYTHON build_zipapp.py"
"$PYTHON" build_zipapp.py

work=$(mktemp -d /tmp/podpy-demo.XXXXXX)
chmod 755 "$work"
registry_pid=""
podpy() { "$PYTHON" -I dist/podpy.pyz --root "$work/storage" --runroot "$work/run" "$@"; }
cleanup() {
    local status=$?
    podpy rm -af >/dev/null 2>&1 || true
    podpy system reset --force >/dev/null 2>&1 || true
    if [ -n "$registry_pid" ]; then
        # (wait reports the registry's SIGTERM as 143: under set -e that must not end the
        # cleanup before the rm, nor become the demo's exit status)
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

port=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
EOF
echo "+ docker-registry serve (127.0.0.1:$port)"
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    "$PYTHON" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v2/')" 2>/dev/null && break
    sleep 0.1
done

image="127.0.0.1:$port/demo/busybox:latest"
echo "+ build a busybox image from /bin/busybox (tests/images.py) and push it with podpy"
"$PYTHON" -c "import sys, pathlib; sys.path.insert(0, 'tests'); from images import build_busybox_image; build_busybox_image(pathlib.Path('$work/oci'))"
podpy image copy --quiet --dest-tls-verify=false "oci:$work/oci:latest" "docker://$image"

echo "+ podpy pull $image"
podpy pull --tls-verify=false "$image"
echo "+ podpy images"
podpy images
echo "+ podpy run --rm $image sh -c 'echo hello from \$(hostname) as \$(id -un); uname -sm'"
podpy run --rm "$image" sh -c 'echo hello from $(hostname) as $(id -un); uname -sm'
