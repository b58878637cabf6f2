#!/usr/bin/env bash
# The reference load balancer's own new-flow cost, beside ka's new-flow rows: the unchanged
# `xdp_lb.c` of the reference (built with its LRU connection table, -DUSE_LRU) behind a wrapper
# that first advances the frame's TCP source port in place (and the source address on wrap),
# as ka's `ka_xdp_bench_new_flow` does. BPF_PROG_TEST_RUN reuses the buffer between repeats, so
# every repeat is a new 5-tuple: a miss, the hash onto a backend, and an LRU insert.
#   lb_lru_new       16,384 new flows while the LRU table (65,536 entries) fills, min of 3 runs
#                    (each run from a source address of its own, so none revisits a flow)
#   lb_lru_new_full  1M new flows once the table is full (every insert evicts), min of 3 runs
# Usage: new_flow.sh [REF_DIR] (default: ../ref-lb beside this script). Needs what run.sh does.
# Prints `NAME ns` lines like run.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REF=$(cd "${1:-$HERE/../ref-lb}" && pwd)
T=$(mktemp -d); P=/sys/fs/bpf/kaRefNF_$$
trap 'rm -rf "$T" "$P" "${P}_maps"' EXIT
# The reference's entry point becomes an inlined function the wrapper calls.
sed 's/^SEC("xdp") int xdp_lb(struct xdp_md \*ctx)$/static __always_inline int xdp_lb(struct xdp_md *ctx)/' "$REF/xdp_lb.c" > "$T/lb.c"
grep -q '^static __always_inline int xdp_lb(' "$T/lb.c" || { echo "new_flow.sh: xdp_lb.c has no entry point this script knows" >&2; exit 1; }
cat >> "$T/lb.c" <<'C'
SEC("xdp") int xdp_lb_new_flow(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *th = (void *)(ip + 1);
	if ((void *)(th + 1) > end) return XDP_DROP;
	__u16 port = bpf_ntohs(th->source) + 1;
	th->source = bpf_htons(port);
	if (port == 0) ip->saddr = bpf_htonl(bpf_ntohl(ip->saddr) + 1);
	return xdp_lb(ctx);
}
C
CL=/usr/lib/llvm-22/bin/clang
$CL -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -I"$REF" -DUSE_LRU -c "$T/lb.c" -o "$T/lb.o"
python3 "$REF/mkpkt.py" "$T/pkt.bin"
bpftool prog load "$T/lb.o" "$P" type xdp pinmaps "${P}_maps"
# As run.sh: VIP 198.19.0.100:80/tcp onto 16 backends whose address is the VIP itself.
bpftool map update pinned "${P}_maps/vips" key hex c6 13 00 64 00 50 06 00 value hex 00 00 00 00 10 00 00 00
for i in $(seq 0 15); do b=$(printf '%02x' $((i+1)))
  bpftool map update pinned "${P}_maps/backends" key $i 0 0 0 value hex c6 13 00 64 01 00 00 00 02 00 00 00 01 $b 00 00
done
# The frame with source address 198.18.$1.1 (byte 28 of the frame: the address's third octet).
pkt() { python3 -c "import sys; b=bytearray(open('$T/pkt.bin','rb').read()); b[28]=$1; open('$T/p$1.bin','wb').write(b)"; echo "$T/p$1.bin"; }
run() { bpftool prog run pinned "$P" data_in "$1" repeat "$2" | grep -oE "duration \(average\): [0-9]+" | grep -oE "[0-9]+$"; }
best=999999
for r in 1 2 3; do ns=$(run "$(pkt $r)" 16384); [ "$ns" -lt "$best" ] && best=$ns; done
echo "lb_lru_new $best"
run "$(pkt 100)" 70000 > /dev/null
best=999999
for r in 101 102 103; do ns=$(run "$(pkt $r)" 1000000); [ "$ns" -lt "$best" ] && best=$ns; done
echo "lb_lru_new_full $best"
