#!/usr/bin/env bash
# Builds m4watch's container image from a binary built already, without a registry:
# FROM scratch (packaging/docker/Dockerfile.prebuilt) with the binary, the shared
# libraries `ldd` says it links (glibc, libgcc_s) and the loader, at their paths.
#
#   scripts/image-from-binary.sh target/release/m4watch m4watch:local
#
# tests/image.rs runs it on the test build and checks the container (non-root user,
# the host's network families, the health check). The production image is the
# Dockerfile at the root, which compiles m4watch itself.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BINARY TAG" >&2; exit 2; }
bin=$1
tag=$2
root=$(cd "$(dirname "$0")/.." && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
fs=$ctx/rootfs
mkdir -p "$fs/usr/local/bin"
# Without its symbols (a test build's are most of its size, and every layer is copied).
strip -o "$fs/usr/local/bin/m4watch" "$bin"
chmod 0755 "$fs/usr/local/bin/m4watch"
# `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and the loader's own line,
# `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no file.
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
[ -n "$libs" ] || { echo "ldd found no libraries in $bin (a static binary needs none; this script expects glibc)" >&2; exit 1; }
for lib in $libs; do
  install -D -m 0755 "$(readlink -f "$lib")" "$fs$lib"
done
mkdir -p "$fs/etc/m4watch" "$fs/tmp" "$ctx/data"
chmod 1777 "$fs/tmp"
printf 'root:x:0:0:root:/:/nonexistent\nm4watch:x:10001:10001:m4watch:/var/lib/m4watch:/nonexistent\n' >"$fs/etc/passwd"
printf 'root:x:0:\nm4watch:x:10001:\n' >"$fs/etc/group"
install -m 0644 "$root/config/docker.yml" "$fs/etc/m4watch/m4watch.yml"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$fs/etc/ssl/certs/ca-certificates.crt"
fi
cp "$root/packaging/docker/Dockerfile.prebuilt" "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx" >/dev/null
echo "$tag"
