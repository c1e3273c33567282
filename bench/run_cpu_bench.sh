#!/usr/bin/env bash
# CPU quantizer benchmark vs peers in the SAME run (the performance targets): builds bench_quant, runs it and
# bench/peers_kmeans.py (/usr/bin/python3: scikit-learn, FAISS and ckwrap if importable), prints the ratio table.
# Usage: bench/run_cpu_bench.sh [BUILD_DIR]   (env PEER_ITERS=50: sklearn iterations timed per case; the same 50
# as netquant, so that sklearn's fixed set-up cost is amortised the same way on both sides; PEER_PY: the Python
# that runs the peers, default /usr/bin/python3)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build-bench}"
cmake -S "$here/.." -B "$build" -DCMAKE_BUILD_TYPE=Release -DNQ_BUILD_BENCH=ON -DNQ_BUILD_TESTS=OFF -DNQ_CUDA=OFF >/dev/null
cmake --build "$build" --target bench_quant -j"$(nproc)" >/dev/null
py="${PEER_PY:-/usr/bin/python3}"  # e.g. a venv with --system-site-packages where pip installed ckwrap
"$py" -c "import sklearn" 2>/dev/null || echo "note: scikit-learn missing for $py (apt-get install -y python3-sklearn)"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
ours="$("$build/bench_quant" all 3)"
echo "$ours"
peers="$("$py" "$here/peers_kmeans.py" "${PEER_ITERS:-50}")"
echo "$peers"
"$py" - "$ours" "$peers" <<'PY'
import re, sys
ours, peers = sys.argv[1], sys.argv[2]
def kv(line): return dict(re.findall(r"(\w+)=([^\s]+)", line))
o = [kv(l) for l in ours.splitlines() if "=" in l]
p = [kv(l) for l in peers.splitlines() if l.startswith("peer=") and "ms_per_iter" in l]
p_all = [kv(l) for l in peers.splitlines() if l.startswith("peer=")]
def peer(name, n, k):
    for x in p:
        if x["peer"] == name and x["n"] == str(n) and x["k"] == str(k): return float(x["ms_per_iter"])
print("\n| workload | netquant | sklearn | ratio | target | met |\n|---|---|---|---|---|---|")
for x in o:
    if "hwkmeans" in " ".join(x) or "end_to_end_s" in x:
        n, k, s = int(x["n"]), int(x["k"]), float(x["end_to_end_s"])
        sk = peer("sklearn", n, k)
        tgt = 100 if k == 16 else 300
        if sk:
            ratio = sk * 50 / 1e3 / s
            print(f"| HW k-means N={n:.0e} k={k}, 50 it. incl. sort | {s*1e3:.1f} ms | {sk*50:.0f} ms (50×{sk:.1f}) | {ratio:.0f}× | ≥{tgt}× | {'yes' if ratio >= tgt else 'no'} |")
        else:
            print(f"| HW k-means N={n:.0e} k={k}, 50 it. incl. sort | {s*1e3:.1f} ms | no peer | – | ≥{tgt}× | – |")
    if "rows" in x:
        print(f"| per-row HW k-means {x['rows']}×{x['cols']}, k={x['k']}, 50 it. | {float(x['ns_per_weight']):.1f} ns/w | – | – | – | – |")
    elif "ns_per_weight" in x:
        ns = float(x["ns_per_weight"]); sk = peer("sklearn", 1000000, 16)
        what = "ECSQ driver's pass (binned)" if x.get("pass") == "driver" else "ECSQ op (a), per weight"
        # sklearn's ms per iteration at N = 1e6 is its ns per weight and iteration.
        peer_col = f"{sk:.1f} ns/w/iter (k=16)" if sk else "no peer"
        r = sk / ns if sk else float("nan")
        print(f"| {what} k=32 λ={x['lambda']} | {ns:.2f} ns/w | {peer_col} | {r:.0f}× | ≤1.5 ns/w, ≥10× | {'yes' if ns <= 1.5 and r >= 10 else 'no'} |")
    if "peak_extra_mb" in x:
        s, mb = float(x["seconds"]), float(x["peak_extra_mb"])
        ck = [float(y["seconds"]) for y in p_all if y.get("peer") == "ckmeans" and y.get("n") == x["n"] and "seconds" in y]
        peer_col, r = (f"Ckmeans.1d.dp {ck[0]:.2f} s", f"{ck[0] / s:.0f}×") if ck else ("no peer", "–")
        print(f"| exact N={int(x['n']):.0e} k=256 | {s:.2f} s, {mb:.0f} MB | {peer_col} | {r} | ≤1 s, ≤64 MB (N=1e6) | {'yes' if s <= 1 and mb <= 64 else 'no'} |")
PY
