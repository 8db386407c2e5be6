#!/usr/bin/env bash
# Put the C load generators `tritium tune` and the benchmarks use into DIR: `h2load` (Debian's
# nghttp2-client; gRPC) and `wrk` (REST), each a small wrapper in DIR running the real binary with the
# libraries its package needs from DIR/../lib/tritium-loadgen.
#
# Same way as scripts/install-prometheus.sh, for the same reasons: the package files are downloaded
# (`apt-get download`: no root needed once the package lists exist) and unpacked with `dpkg-deb -x`,
# which never runs maintainer scripts; nothing is installed system-wide and no service is started.
# The libraries taken along are the packages' own (libnghttp2, libev, libjemalloc, libluajit); libc,
# libstdc++ and libssl come from the system (Python itself needs them). A tool already on PATH is
# left alone. As root on a machine without package lists it runs `apt-get update` first.
#
# Usage: scripts/install-load-generators.sh DIR
set -euo pipefail

dest=${1:?usage: install-load-generators.sh DIR}
packages=()
command -v h2load >/dev/null 2>&1 || [ -x "$dest/h2load" ] || packages+=(nghttp2-client libnghttp2-14 libev4 libjemalloc2)
command -v wrk >/dev/null 2>&1 || [ -x "$dest/wrk" ] || packages+=(wrk libluajit-5.1-2)
if [ ${#packages[@]} = 0 ]; then
  exit 0
fi
for tool in apt-get dpkg-deb; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "install-load-generators: needs $tool (Debian or Ubuntu)" >&2
    exit 1
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
download() { (cd "$work" && apt-get download -qq "${packages[@]}") >>"$work/apt.log" 2>&1; }
if ! download; then
  if ! { [ "$(id -u)" = 0 ] && apt-get update -qq >>"$work/apt.log" 2>&1 && download; }; then
    cat "$work/apt.log" >&2
    exit 1
  fi
fi
for deb in "$work"/*.deb; do
  dpkg-deb -x "$deb" "$work/root"
done

libs="$(cd "$dest/.." && pwd)/lib/tritium-loadgen"
mkdir -p "$dest" "$libs"
cp -a "$work"/root/usr/lib/x86_64-linux-gnu/*.so* "$libs"/ 2>/dev/null || cp -a "$work"/root/usr/lib/*/*.so* "$libs"/
for tool in h2load wrk; do
  [ -x "$work/root/usr/bin/$tool" ] || continue
  install -m 0755 "$work/root/usr/bin/$tool" "$libs/$tool"
  # write then rename: a test running the old wrapper never sees a half-written file
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s/%s" "$@"\n' \
    "$libs" "$libs" "$tool" >"$dest/.$tool.new"
  chmod 0755 "$dest/.$tool.new"
  mv -f "$dest/.$tool.new" "$dest/$tool"
done
if [ -x "$dest/h2load" ]; then "$dest/h2load" --version >/dev/null; fi
if [ -x "$dest/wrk" ]; then "$dest/wrk" --version >/dev/null 2>&1 || [ $? = 1 ]; fi  # wrk --version exits 1
echo "installed ${packages[*]} into $dest"
