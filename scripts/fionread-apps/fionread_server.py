"""A server that sizes its reads with FIONREAD: on readable, ask FIONREAD how
much is there and read exactly that; readable with FIONREAD 0 is taken as the
peer having closed (what such readers conclude). Answers one line per
connection: OK or FAIL, the bytes it got, and why it stopped.
Usage: python3 fionread_server.py PORT BYTES TIMEOUT_S"""
import array
import fcntl
import select
import socket
import sys
import termios
import time

port, nbytes, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('127.0.0.1', port))
srv.listen()
print('listening', flush=True)
while True:
    conn, _ = srv.accept()
    got, why = 0, ''
    deadline = time.time() + timeout
    while got < nbytes:
        left = deadline - time.time()
        if left <= 0 or not select.select([conn], [], [], left)[0]:
            why = 'timeout'
            break
        n = array.array('i', [0])
        fcntl.ioctl(conn, termios.FIONREAD, n)
        if n[0] == 0:
            why = 'readable but FIONREAD 0: taken as closed'
            break
        got += len(conn.recv(n[0]))
    conn.sendall(f"{'OK' if got >= nbytes else 'FAIL'} got={got} {why}\n".encode())
    conn.close()
