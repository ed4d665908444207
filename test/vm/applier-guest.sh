#!/bin/sh
# Guest half of the applier's VM check (test/vm/applier-vm.ts): the production socklb-applier on
# the virtio-serial port. 10.96.0.10:80 is unreachable (no route) until the host's snapshot is
# committed; then busybox wget reaches the host's HTTP server at 10.0.2.2 through it.
# (busybox 1.35 wget -T segfaults when the connect fails: timeout instead.)
url=http://10.96.0.10/
if wget -q -O /dev/null $url 2>/tmp/err; then
	echo "guest: FAIL: $url answered before any translation"
	exit 1
fi
echo "guest: before the applier: $(cat /tmp/err)"
socklb-applier --serial /dev/virtio-ports/socklb 2>/tmp/applier.log &
pid=$!
i=0
until timeout 10 wget -q -O /tmp/body $url 2>/dev/null; do
	kill -0 $pid 2>/dev/null || { echo "guest: FAIL: the applier exited"; cat /tmp/applier.log; exit 1; }
	i=$((i + 1))
	[ $i -lt 300 ] || { echo "guest: FAIL: $url never answered"; cat /tmp/applier.log; exit 1; }
	usleep 200000
done
echo "guest: $url -> $(cat /tmp/body) at uptime $(cut -d' ' -f1 /proc/uptime)s"
# The host reconnects and checks the HELLO it gets meanwhile.
sleep 15
echo "guest: applier Rss $(awk '/^Rss:/ { print $2 }' /proc/$pid/smaps_rollup) kB, $(stat -c %s /bin/socklb-applier) bytes on disk"
sed 's/^/guest: applier: /' /tmp/applier.log
kill -0 $pid 2>/dev/null || { echo "guest: FAIL: the applier exited"; exit 1; }
