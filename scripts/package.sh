#!/usr/bin/env bash
# Builds the Linux packages of Model Cache: a `.deb` and an `.rpm` holding the desktop app and
# the `mcache` command (both in /usr/bin), the desktop entry (which registers the
# `modelcache://` scheme), and the hicolor icons. They land in target/release/bundle/{deb,rpm}/
# (the cargo target folder; CARGO_TARGET_DIR is honoured).
#
#   scripts/package.sh                          # release .deb and .rpm
#   scripts/package.sh --debug --bundles deb    # a debug .deb from target/debug (the install test)
#
# The Tauri CLI is the npm package @tauri-apps/cli pinned in package.json (a prebuilt binary).
# AppImage is not made: Tauri's AppImage tools are downloaded from outside the package
# registries when it bundles one.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
bundles=deb,rpm
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --bundles) bundles="${2:?--bundles needs a list such as deb,rpm}"; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "package: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

scripts/setup.sh --with-packaging-tools

target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cargo_profile=()
[ "$profile" = release ] && cargo_profile=(--release)
tauri_profile=()
[ "$profile" = debug ] && tauri_profile=(--debug)

# `mcache` goes into the package as an extra binary: Tauri takes it from a file named after the
# target triple, and only while packaging (a plain `cargo build` of the app never needs it).
cargo build --locked -p mcache "${cargo_profile[@]}"
triple=$(rustc -vV | sed -n 's/^host: //p')
# (Copied only when it changed: the app's build script watches the file.)
external_bin() { printf '{"bundle":{"externalBin":["%s/mcache"]}}' "$1"; }
stage="$target_dir/$profile/package-bin"
mkdir -p "$stage"
cmp -s "$target_dir/$profile/mcache" "$stage/mcache-$triple" ||
  cp -p "$target_dir/$profile/mcache" "$stage/mcache-$triple"

rm -rf "$target_dir/$profile/bundle"
node_modules/.bin/tauri build "${tauri_profile[@]}" --ci --no-bundle --config "$(external_bin "$stage")" \
  -- --locked
if [ "$profile" = release ]; then
  # Packages ship without debug information, as Debian's own do (dh_strip): it is most of the
  # release binaries' size (the release profile keeps line tables for backtraces).
  strip --strip-debug "$target_dir/release/model-cache-app"
  mkdir -p "$stage/stripped"
  strip --strip-debug -o "$stage/stripped/mcache-$triple" "$stage/mcache-$triple"
  stage="$stage/stripped"
fi
node_modules/.bin/tauri bundle "${tauri_profile[@]}" --ci --bundles "$bundles" --config "$(external_bin "$stage")"

# Tauri names the files after the product name ("Model Cache_0.1.0_amd64.deb"); give them the
# package's own name, as the distributions do: model-cache_0.1.0_amd64.deb,
# model-cache-0.1.0-1.x86_64.rpm.
product=$(node -p 'require("./tauri.conf.json").productName')
for file in "$target_dir/$profile"/bundle/{deb,rpm}/"$product"[_-]*.{deb,rpm}; do
  [ -e "$file" ] || continue
  mv "$file" "$(dirname "$file")/model-cache${file##*/"$product"}"
done
echo "package: built" >&2
find "$target_dir/$profile/bundle" -maxdepth 2 -type f \( -name '*.deb' -o -name '*.rpm' \) \
  -printf '  %p (%s bytes)\n' >&2
