# Stands in for a MODE E receiver (the client side of RETR and MLSD): logs in, asks for
# OPTS RETR Parallelism=$PAR, listens for the server's data connections via PORT, and logs every block
# header each connection carries. Usage: FU=user FP=pass PAR=3 python3 capture_modee_send.py HOST PORT
# MLSD:/dir RETR:/file REST:0-100 ...  (docs/gridftp/modee-send-wire.txt)
import os, socket, struct, sys, threading, time
host, port = sys.argv[1], int(sys.argv[2]); paths = sys.argv[3:]
c = socket.create_connection((host, port)); f = c.makefile('rb')
def resp():
    lines = []
    while True:
        l = f.readline().decode(); lines.append(l.rstrip())
        if l[3:4] == ' ' and l[:3].isdigit(): return lines
def cmd(s):
    c.sendall((s + '\r\n').encode()); r = resp(); print('>', s, '|', ' / '.join(r)); return r
resp(); cmd("USER " + os.environ.get("FU", "anonymous")); cmd("PASS " + os.environ.get("FP", "x")); cmd('TYPE I'); cmd('MODE E')
par = int(os.environ.get("PAR", "2"))
cmd(f'OPTS RETR Parallelism={par},{par},{par};')
L = socket.socket(); L.bind(('127.0.0.1', 0)); L.listen(16); p = L.getsockname()[1]
cmd(f'PORT 127,0,0,1,{p>>8},{p&255}')
conns = []
def acceptor():
    while True:
        s, a = L.accept(); conns.append(s); print('accepted conn', len(conns)-1, a, flush=True)
        threading.Thread(target=reader, args=(s, len(conns)-1), daemon=True).start()
def reader(s, i):
    buf = b''
    while True:
        while len(buf) < 17:
            d = s.recv(65536)
            if not d: print(f'conn {i}: closed', flush=True); return
            buf += d
        desc, cnt, off = struct.unpack('>BQQ', buf[:17]); buf = buf[17:]
        while len(buf) < cnt:
            d = s.recv(65536)
            if not d: print(f'conn {i}: closed mid-block'); return
            buf += d
        payload = buf[:cnt]; buf = buf[cnt:]
        print(f'conn {i}: desc=0x{desc:02x} count={cnt} offset={off}' + (f' {payload[:60]!r}' if cnt and cnt < 200 else ''), flush=True)
threading.Thread(target=acceptor, daemon=True).start()
for pth in paths:
    verb, arg = pth.split(':', 1)
    c.sendall(f'{verb} {arg}\r\n'.encode()); print('>', verb, arg)
    while True:
        r = resp(); print('  ', ' / '.join(r), flush=True)
        if not r[-1].startswith('1'): break
    time.sleep(0.3)
cmd('QUIT'); time.sleep(0.3)
