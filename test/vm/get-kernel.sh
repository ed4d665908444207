#!/bin/bash
# Fetches Debian's cloud kernel for the VM test (guest-vm.test.ts) into DIR without installing it:
# `apt-get download` and `dpkg-deb -x`, so /boot, /lib/modules and dpkg's database stay as they
# were. Needs Debian's package lists (apt-get update when this machine has none for it).
#   usage: get-kernel.sh DIR      result: DIR/vmlinuz, DIR/config, DIR/modules/ (its .ko tree)
#   env: KERNEL_PKG (default linux-image-cloud-amd64, which tracks the current 6.1 cloud kernel)
set -euo pipefail
dir=$1
pkg=${KERNEL_PKG:-linux-image-cloud-amd64}
[ -e "$dir/vmlinuz" ] && exit 0
# The metapackage only depends on the versioned image package: that one has the kernel.
image() { apt-cache depends "$pkg" 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }'; }
real=$(image)
if [ -z "$real" ]; then
	apt-get update -qq
	real=$(image)
fi
[ -n "$real" ] || { echo "get-kernel: apt knows no package that $pkg depends on" >&2; exit 1; }
rm -rf "$dir"
mkdir -p "$dir/deb"
(cd "$dir/deb" && apt-get download -q -o APT::Sandbox::User=root "$real")
dpkg-deb -x "$dir"/deb/*.deb "$dir/root"
rm -rf "$dir/deb"
cp "$dir"/root/boot/config-* "$dir/config"
ln -sfn root/lib/modules "$dir/modules"
# Last: its presence says the directory is complete.
cp "$dir"/root/boot/vmlinuz-* "$dir/vmlinuz"
echo "get-kernel: $real in $dir"
