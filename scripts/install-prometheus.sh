#!/usr/bin/env bash
# Put Debian's `prometheus` and `promtool` binaries into DIR, and nothing else.
#
# Why not `apt-get install prometheus`: the package's postinst starts a system Prometheus on :9090
# (invoke-rc.d, or deb-systemd-invoke under systemd), enables it for every boot and adds a system
# user. On someone else's machine that collides with their own Prometheus, and stopping it afterwards
# means ending processes by name, which may be theirs. A policy-rc.d that denies the start would
# still leave the service enabled for the next boot. The tests need only the two binaries (Go,
# linked against libc alone), so this script downloads the package file (`apt-get download`: no root
# needed once the package lists exist), unpacks it with `dpkg-deb -x`, which never runs the package's
# maintainer scripts, and copies the binaries. It starts and stops nothing and changes nothing outside
# DIR (as root on a machine without package lists, it runs `apt-get update` first).
#
# Usage: scripts/install-prometheus.sh DIR
#        TRITIUM_PROMETHEUS_DEB=/path/to/prometheus_*.deb scripts/install-prometheus.sh DIR   (no download)
set -euo pipefail

dest=${1:?usage: install-prometheus.sh DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "install-prometheus: needs dpkg-deb (Debian or Ubuntu)" >&2
  exit 1
fi

deb=${TRITIUM_PROMETHEUS_DEB:-}
if [ -z "$deb" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-prometheus: needs apt-get (Debian or Ubuntu)" >&2
    exit 1
  fi
  download() { (cd "$work" && apt-get download -qq prometheus) >>"$work/apt.log" 2>&1; }
  if ! download; then
    # A fresh machine may have no package lists yet; refreshing them needs root.
    if ! { [ "$(id -u)" = 0 ] && apt-get update -qq >>"$work/apt.log" 2>&1 && download; }; then
      cat "$work/apt.log" >&2
      exit 1
    fi
  fi
  debs=("$work"/prometheus_*.deb)
  deb=${debs[0]}
fi

dpkg-deb -x "$deb" "$work/root"
mkdir -p "$dest"
for tool in prometheus promtool; do
  # copy then rename: a test running the old binary never sees a half-written file
  install -m 0755 "$work/root/usr/bin/$tool" "$dest/.$tool.new"
  mv -f "$dest/.$tool.new" "$dest/$tool"
done
"$dest/promtool" --version >/dev/null
echo "installed $("$dest/prometheus" --version 2>&1 | head -n 1) into $dest"
