#!/bin/sh
# The guest half of vm-support.ts's GuestShell: a shell on the second serial port (ttyS1; a Unix
# socket on the host). Each line the host sends is a base64-encoded script; it runs with no input
# and its output in a file, and the answer is one line, "status STATUS BASE64-OF-OUTPUT".
port=/dev/ttyS1
stty -F $port raw -echo
exec <$port >$port
echo "guest-shell: ready"
while read -r line; do
	echo "$line" | base64 -d >/tmp/command
	sh /tmp/command </dev/null >/tmp/output 2>&1
	echo "status $? $(base64 -w 0 /tmp/output)"
done
