#!/bin/sh
# The guest half of guest-vm.test.ts: socklb-applier on the virtio-serial port, and a probe of each
# URL given (ClusterIPs), which prints "guest: URL -> ANSWER" whenever the answer changes. The
# first URL must fail before the applier runs: the guest has no default route, so nothing
# untranslated leaves it. Stops after DEADLINE seconds of uptime if the host never ends the VM.
# (busybox 1.35 wget -T segfaults when the connect fails: timeout instead.)
DEADLINE=600
if wget -q -O /dev/null "$1" 2>/tmp/error; then
	echo "guest: FAIL: $1 answered before the applier ran"
	exit 1
fi
echo "guest: before the applier: $(cat /tmp/error)"
# Its log goes to the console with the rest.
socklb-applier --serial /dev/virtio-ports/socklb &
applier=$!
while [ "$(cut -d. -f1 /proc/uptime)" -lt $DEADLINE ]; do
	kill -0 $applier 2>/dev/null || { echo "guest: FAIL: the applier exited"; exit 1; }
	i=0
	for url in "$@"; do
		i=$((i + 1))
		answer=$(timeout 5 wget -q -O - "$url" 2>&1 | head -n 1)
		[ "$answer" = "$(cat /tmp/answer.$i 2>/dev/null)" ] && continue
		echo "$answer" >/tmp/answer.$i
		echo "guest: $url -> $answer"
	done
	usleep 300000
done
echo "guest: FAIL: still running at uptime $DEADLINE s"
exit 1
