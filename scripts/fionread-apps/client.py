"""Sends BYTES to 127.0.0.1:PORT without closing, then prints the server's
one-line answer (or TIMEOUT). Usage: python3 client.py PORT BYTES TIMEOUT_S"""
import socket
import sys

port, nbytes, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
s.sendall(bytes((i * 31 + 7) & 0xff for i in range(nbytes)))
try:
    print(s.makefile().readline().strip() or 'EOF without an answer')
except socket.timeout:
    print('TIMEOUT: no answer')
