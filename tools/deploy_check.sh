#!/usr/bin/env bash
# make deploy-check: proves that deploy/runtime-packages.txt (the runtime stage of
# deploy/Dockerfile) holds everything kiln needs. Builds a Debian 12 root filesystem of
# exactly those packages with debootstrap (minbase: what debian:12-slim also is), copies the
# release binary in, and runs, as the image's non-root user inside it: kiln serve (a
# completion through it), kiln gateway under kiln-gateway-watch (a completion through the
# gateway), and kiln pull from the offline cache. Needs root (chroot, mount) and a Debian
# mirror (DEBIAN_MIRROR, default http://deb.debian.org/debian). The root filesystem is kept
# in build/deploy-check/ and rebuilt when the package list changes (about 3 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN_BIN:-build/release/kiln}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=build/deploy-check
rootfs=$work/rootfs
pkgs=$(grep -v '^#' deploy/runtime-packages.txt | tr '\n' ',' | sed 's/,*$//')
[ "$(id -u)" = 0 ] || { echo "deploy-check: needs root (debootstrap, chroot)"; exit 1; }
command -v debootstrap >/dev/null || { echo "deploy-check: apt-get install debootstrap"; exit 1; }

if [ ! -f "$rootfs/.kiln-packages" ] || [ "$(cat "$rootfs/.kiln-packages")" != "$pkgs" ]; then
  rm -rf "$rootfs"
  mkdir -p "$work"
  echo "deploy-check: debootstrap bookworm with $pkgs"
  debootstrap --variant=minbase --include="$pkgs" bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; exit 1; }
  echo "$pkgs" >"$rootfs/.kiln-packages"
fi

install -m 0755 "$KILN" "$rootfs/usr/local/bin/kiln"
install -m 0755 deploy/gateway/kiln-gateway-watch "$rootfs/usr/local/bin/kiln-gateway-watch"
rm -rf "$rootfs/models" "$rootfs/home/kiln" && mkdir -p "$rootfs/models" "$rootfs/home/kiln"
chown 10001:10001 "$rootfs/models" "$rootfs/home/kiln"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done # SIGTERM: they drain and exit
  wait 2>/dev/null || true
  umount "$rootfs/proc" 2>/dev/null || true
}
trap cleanup EXIT
mountpoint -q "$rootfs/proc" || mount -t proc proc "$rootfs/proc"
as_kiln() { chroot --userspec=10001:10001 "$rootfs" env -i HOME=/home/kiln PATH=/usr/local/bin:/usr/bin:/bin \
  HF_HUB_CACHE=/models/hub "$@"; }
# in the background, as its own process: $! is then the process to stop (chroot execs env,
# env execs the command)
start_kiln() { (exec chroot --userspec=10001:10001 "$rootfs" env -i HOME=/home/kiln \
  PATH=/usr/local/bin:/usr/bin:/bin HF_HUB_CACHE=/models/hub "$@") & }

echo "deploy-check: libraries the binary needs, resolved inside the root filesystem"
if chroot "$rootfs" ldd /usr/local/bin/kiln | grep 'not found'; then exit 1; fi
test -s "$rootfs/etc/ssl/certs/ca-certificates.crt" || { echo "deploy-check: no CA bundle (HTTPS pulls)"; exit 1; }

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "deploy-check: $1 did not answer"; return 1; }

# a model in the hub cache layout, as the init container's kiln pull leaves it
as_kiln kiln model make --out /home/kiln/m.gguf >/dev/null
sha=$(sha256sum "$rootfs/home/kiln/m.gguf" | cut -d' ' -f1)
commit=0123456789abcdef0123456789abcdef01234567
repo=$rootfs/models/hub/models--kiln--tiny-GGUF
mkdir -p "$repo/blobs" "$repo/snapshots/$commit" "$repo/refs"
mv "$rootfs/home/kiln/m.gguf" "$repo/blobs/$sha"
ln -s "../../blobs/$sha" "$repo/snapshots/$commit/tiny-Q8_0.gguf"
printf %s "$commit" >"$repo/refs/main"
chown -R 10001:10001 "$rootfs/models"

echo "deploy-check: kiln pull (offline, from the cache)"
as_kiln env HF_HUB_OFFLINE=1 kiln pull kiln/tiny-GGUF:Q8_0 --quiet

sp=$(port)
echo "deploy-check: kiln serve on 127.0.0.1:$sp inside the root filesystem"
start_kiln env HF_HUB_OFFLINE=1 kiln serve -m kiln/tiny-GGUF:Q8_0 --served-model-name tiny --port "$sp" -t 1 \
  >"$work/serve.log" 2>&1
pids+=($!)
wait_http "http://127.0.0.1:$sp/health" || { cat "$work/serve.log"; exit 1; }
curl -sf "http://127.0.0.1:$sp/v1/completions" -H 'content-type: application/json' \
  -d '{"model": "tiny", "prompt": "hello", "max_tokens": 4}' | grep -q '"completion_tokens":4'

gp=$(port)
echo "deploy-check: kiln gateway under kiln-gateway-watch on 127.0.0.1:$gp"
printf '{"listen": {"host": "127.0.0.1", "port": %s}, "models": [{"name": "tiny", "pools": [{"endpoints": [{"url": "http://127.0.0.1:%s"}]}]}]}\n' \
  "$gp" "$sp" >"$rootfs/home/kiln/gateway.json"
start_kiln kiln-gateway-watch /home/kiln/gateway.json >"$work/gateway.log" 2>&1
pids+=($!)
wait_http "http://127.0.0.1:$gp/health" || { cat "$work/gateway.log"; exit 1; }
curl -sf "http://127.0.0.1:$gp/v1/completions" -H 'content-type: application/json' \
  -d '{"model": "tiny", "prompt": "hello", "max_tokens": 4}' | grep -q '"completion_tokens":4'
echo "deploy-check: ok (kiln serve, kiln gateway, kiln pull run in a root filesystem of deploy/runtime-packages.txt)"
