#!/usr/bin/env bash
# Makes a release into OUT_DIR (default dist/):
#   m4watch-VERSION.tar.gz          the source archive (`git archive` of HEAD; its
#                                   REVISION file names the commit, so a build from
#                                   it reports the revision without .git); what the
#                                   Homebrew formula (packaging/homebrew/m4watch.rb)
#                                   builds from
#   m4watch-VERSION-TARGET.tar.gz   the binary for this machine's target (a Linux
#                                   binary on Linux) with the example config, rules,
#                                   dashboards, stack config and packaging
#   SHA256SUMS                      both archives' SHA-256 (`sha256sum -c SHA256SUMS`)
#
# usage: scripts/release.sh [OUT_DIR]
#   M4WATCH_RELEASE_BINARY=PATH  package this binary instead of building one with
#                                `cargo build --release --locked` (the tests pass their
#                                debug build to stay fast)
# Only committed files are released: a dirty work tree is reported, not included.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[ -n "$version" ] || { echo "release.sh: no version in Cargo.toml" >&2; exit 1; }
target=$(rustc -vV | sed -n 's/^host: //p')
name=m4watch-$version
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "release.sh: warning: uncommitted changes are not in the release (HEAD $(git rev-parse --short=12 HEAD))" >&2
fi

git archive --format=tar.gz --prefix="$name/" -o "$out/$name.tar.gz" HEAD

binary=${M4WATCH_RELEASE_BINARY:-}
if [ -z "$binary" ]; then
  cargo build --release --locked -q --bin m4watch
  binary=${CARGO_TARGET_DIR:-target}/release/m4watch
fi
[ -x "$binary" ] || { echo "release.sh: $binary is not an executable" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dir="$stage/$name-$target"
mkdir -p "$dir"
cp "$binary" "$dir/m4watch"
# The release profile strips already; a given (debug) binary is stripped here.
if command -v strip >/dev/null 2>&1; then strip "$dir/m4watch"; fi
# The same files as the source archive's, from HEAD, not the work tree.
git archive --format=tar HEAD README.md m4watch.example.yml alert-rules grafana-dashboards \
  prometheus packaging | tar -x -C "$dir"
tar -czf "$out/$name-$target.tar.gz" -C "$stage" "$name-$target"

cd "$out"
if command -v sha256sum >/dev/null 2>&1; then
  sha256sum "$name.tar.gz" "$name-$target.tar.gz" >SHA256SUMS
else
  shasum -a 256 "$name.tar.gz" "$name-$target.tar.gz" >SHA256SUMS
fi
cat SHA256SUMS
echo "formula: url …/$name.tar.gz, sha256 $(cut -d' ' -f1 <SHA256SUMS | head -n1)"
