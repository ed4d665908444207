#!/bin/bash
# Builds the VM test's busybox initramfs (cpio.gz) around ./init.
#   usage: build-initramfs.sh OUT.cpio.gz KERNEL_DIR [FILE...]
# KERNEL_DIR comes from get-kernel.sh; the virtio modules (env MODULES) and their
# dependencies are copied from it. Each FILE (static binary, script) goes to /bin.
set -euo pipefail
out=$1 kdir=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
MODULES=${MODULES:-virtio_pci virtio_mmio virtio_net virtio_console}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,lib/modules}
cp /bin/busybox "$root/bin/"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
install -m 755 "$here/init" "$root/init"
[ $# -eq 0 ] || install -m 755 "$@" "$root/bin/"

# Copy module $1 after its dependencies (read from the .ko's modinfo section).
: > "$root/etc/modules"
find -L "$kdir/modules" -name '*.ko' > "$root/modules.list"
add_module() {
	local f dep
	grep -qx "$1" "$root/etc/modules" && return
	f=$(grep -m1 "/$1\.ko$" "$root/modules.list" || true)
	[ -n "$f" ] || { echo "module $1 not found" >&2; exit 1; }
	for dep in $(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | tr , ' '); do
		add_module "$dep"
	done
	cp "$f" "$root/lib/modules/"
	echo "$1" >> "$root/etc/modules"
}
for m in $MODULES; do add_module "$m"; done
rm "$root/modules.list"

(cd "$root" && find . | busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9 > "$out"
echo "$out: $(stat -c %s "$out") bytes, modules: $(tr '\n' ' ' < "$root/etc/modules")"
