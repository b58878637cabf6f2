#!/usr/bin/env python3
"""Dump a loaded BPF program's JIT image per function, with JIT address -> xlated insn map.
usage: jitinfo.py PROG_ID OUTDIR"""
import ctypes, os, struct, sys, json
libc = ctypes.CDLL(None, use_errno=True)
SYS_bpf = 321
def bpf(cmd, attr):
    r = libc.syscall(SYS_bpf, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if r < 0: raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return r
pid, out = int(sys.argv[1]), sys.argv[2]
os.makedirs(out, exist_ok=True)
a = (ctypes.c_ubyte * 128)(); struct.pack_into('<I', a, 0, pid)
fd = bpf(13, a)
def info(bufs):
    inf = (ctypes.c_ubyte * 256)()
    for off, fmt, val in bufs: struct.pack_into(fmt, inf, off, val)
    at = (ctypes.c_ubyte * 128)(); struct.pack_into('<IIQ', at, 0, fd, 256, ctypes.addressof(inf))
    bpf(15, at); return inf
i0 = info([])
jlen, = struct.unpack_from('<I', i0, 16)
nks, nfl = struct.unpack_from('<II', i0, 104)
nli, = struct.unpack_from('<I', i0, 148); njli, lrs, jlrs = struct.unpack_from('<III', i0, 168)
jit = (ctypes.c_ubyte * jlen)(); ks = (ctypes.c_uint64 * nks)(); fl = (ctypes.c_uint32 * nfl)()
li = (ctypes.c_ubyte * (nli * lrs))(); jli = (ctypes.c_uint64 * njli)()
info([(16, '<I', jlen), (24, '<Q', ctypes.addressof(jit)), (104, '<I', nks), (108, '<I', nfl),
      (112, '<Q', ctypes.addressof(ks)), (120, '<Q', ctypes.addressof(fl)),
      (148, '<I', nli), (152, '<Q', ctypes.addressof(li)), (160, '<Q', ctypes.addressof(jli)),
      (168, '<I', njli), (172, '<I', lrs), (176, '<I', jlrs)])
open(f'{out}/jit.bin', 'wb').write(bytes(jit))
lines = [struct.unpack_from('<IIII', li, k * lrs) for k in range(nli)]
json.dump({'ksyms': list(ks), 'func_lens': list(fl),
           'lines': [[jli[k], lines[k][0]] for k in range(min(nli, njli))]}, open(f'{out}/info.json', 'w'))
print('jit', jlen, 'funcs', nfl, 'lines', nli, njli)
