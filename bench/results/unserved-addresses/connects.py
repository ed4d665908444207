import socket, sys
family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
target, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
errors = {}
for _ in range(count):
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if mode == 'connect':
            s.connect((target, 80))
        else:
            s.sendto(b'x', (target, 80))
    except OSError as e:
        errors[e.errno] = errors.get(e.errno, 0) + 1
    s.close()
print(errors)
