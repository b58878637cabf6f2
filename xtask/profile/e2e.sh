#!/usr/bin/env bash
# Where the director's CPU goes in one end-to-end scenario, to the instruction of ka_xdp's JIT
# code: runs `cargo bench -p ka-tests --bench e2e` for SCENARIO (KA_E2E_ONLY: dr, nat, tun,
# floor, floor_touch, reference), samples the director's CPU (1) with perf's cpu-clock event
# (a timer: it works on VMs without hardware counters) for 5 s in the middle of the measured
# interval, dumps ka_xdp's JIT image per function while it is loaded (jitinfo.py), and prints the
# kernel symbols by share, then the samples inside ka_xdp by function and hot offset
# (jitprof.py). Disassemble a hot offset with
#   objdump -D -b binary -m i386:x86-64 --start-address=OFF OUT/jit/jit.bin
# Needs root, perf (Debian: linux-perf) and a release ka (target/release/ka).
# Usage: xtask/profile/e2e.sh SCENARIO [OUT_DIR]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
S=${1:?scenario}; OUT=${2:-$(mktemp -d)}; mkdir -p "$OUT/jit"
command -v perf >/dev/null || { echo "e2e.sh: perf is missing (apt-get install linux-perf)" >&2; exit 1; }
LOG=$OUT/e2e.log
cd "$ROOT"
KA_E2E_ROUNDS=1 KA_E2E_SECS=12 KA_BIN="$ROOT/target/release/ka" KA_E2E_ONLY=$S timeout 300 \
  cargo bench -q -p ka-tests --bench e2e > "$LOG" 2>&1 &
BENCH=$!
for _ in $(seq 240); do grep -q "round 1/1:" "$LOG" 2>/dev/null && break; sleep 0.5; done
sleep 3   # past the warm-up
perf record -q -e cpu-clock -F 25000 -C 1 -o "$OUT/perf.data" -- sleep 5
ID=$(bpftool prog show name ka_xdp -j 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d if isinstance(d,list) else [d]; print(d[-1]["id"] if d else "")' || true)
if [ -n "$ID" ]; then python3 "$HERE/jitinfo.py" "$ID" "$OUT/jit" > /dev/null; fi
wait $BENCH || true
grep -E "^\| (floor|ka|reference)" "$LOG" || true
perf report -i "$OUT/perf.data" --sort sym --stdio 2>/dev/null | grep -E "^ +[0-9]" | head -15 || true
perf script -i "$OUT/perf.data" -F ip,sym 2>/dev/null | grep bpf_prog > "$OUT/ips.txt" || true
if [ -n "$ID" ]; then python3 "$HERE/jitprof.py" "$OUT/ips.txt" "$OUT/jit" 15; fi
echo "output in $OUT"
