#!/bin/bash
# Builds the VM test's busybox initramfs around ./init.
#   usage: build-initramfs.sh OUT KERNEL_DIR [FILE | /PATH=SOURCE ...]
# KERNEL_DIR comes from get-kernel.sh; the virtio modules (env MODULES) and their
# dependencies are copied from it. Each FILE (static binary, script) goes to /bin; each
# /PATH=SOURCE (a file or a directory) goes to /PATH, along with the shared libraries that the
# dynamically linked executables and libraries in it need (as ldd finds them here).
# Env COMPRESS: gzip (default) or none. A large image (a node binary) unpacks faster uncompressed
# under TCG than gunzip runs there.
set -euo pipefail
out=$1 kdir=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
MODULES=${MODULES:-virtio_pci virtio_mmio virtio_net virtio_console}
COMPRESS=${COMPRESS:-gzip}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,lib/modules}
cp /bin/busybox "$root/bin/"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
install -m 755 "$here/init" "$root/init"

# The libraries that dynamically linked ELF files under $1 need, at the paths they have here.
add_libraries() {
	local f lib
	find "$1" -type f -print0 | while IFS= read -r -d '' f; do
		[ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
		ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true
	done | sort -u | while read -r lib; do
		[ -e "$root$lib" ] && continue
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}
for item in "$@"; do
	case $item in
	/*=*)
		dest=${item%%=*}
		mkdir -p "$root$(dirname "$dest")"
		cp -rL "${item#*=}" "$root$dest"
		add_libraries "$root$dest"
		;;
	*) install -m 755 "$item" "$root/bin/" ;;
	esac
done

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

case $COMPRESS in
gzip) pack() { gzip -9; } ;;
none) pack() { cat; } ;;
*) echo "COMPRESS=$COMPRESS: gzip or none" >&2; exit 1 ;;
esac
(cd "$root" && find . | busybox cpio -o -H newc -R 0:0 2>/dev/null) | pack > "$out"
echo "$out: $(stat -c %s "$out") bytes, modules: $(tr '\n' ' ' < "$root/etc/modules")"
