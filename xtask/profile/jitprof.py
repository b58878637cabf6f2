#!/usr/bin/env python3
"""Attribute perf IPs (perf script -F ip,sym,symoff | grep bpf_prog) to a JIT dump (jitinfo.py).
usage: jitprof.py IPS JITDIR [TOP]"""
import json, sys, collections, bisect
ips = [int(l.split()[0], 16) for l in open(sys.argv[1]) if l.strip()]
d = json.load(open(sys.argv[2] + '/info.json'))
top = int(sys.argv[3]) if len(sys.argv) > 3 else 30
funcs = sorted((k, i, l) for i, (k, l) in enumerate(zip(d['ksyms'], d['func_lens'])))
starts = [f[0] for f in funcs]
fileoff = {}
o = 0
for i, l in enumerate(d['func_lens']): fileoff[i] = o; o += l
byf, byip, other = collections.Counter(), collections.Counter(), 0
for ip in ips:
    j = bisect.bisect_right(starts, ip) - 1
    if j < 0 or ip >= funcs[j][0] + funcs[j][2]: other += 1; continue
    k, i, l = funcs[j]
    byf[i] += 1; byip[(i, ip - k)] += 1
n = len(ips)
print(f'{n} samples, {other} outside ka_xdp')
for i, c in byf.most_common(): print(f'func {i:2} ({d["func_lens"][i]:5} B): {c:6} {100*c/n:5.1f}%')
print('hot spots (func, offset in func, offset in jit.bin):')
for (i, off), c in byip.most_common(top): print(f'  {c:6} {100*c/n:5.1f}%  func {i} +{off:#x}  file {fileoff[i]+off:#x}')
