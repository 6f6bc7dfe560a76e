#!/usr/bin/env bash
# The GPU figures of docs/speed.md, from one prepared script that ends within 10 minutes on one GPU:
#
#   scripts/gpu_profile.sh [OUTPUT=runs/profile] [RES=512] [STEPS=10]
#
# 1. The card: its name and memory (nvidia-smi) and torch's view of it.
# 2. `lfsbench bench` at Stable Diffusion 1.5's shapes with random weights (`sd-random:RES:DTYPE`), once with float16
#    and once with bfloat16 frozen weights: every built-in method's training steps per second (STEPS steps of its
#    first session, everything it does included), generated and scored images per second, each against diffusers'
#    example-script loop, the GFLOP of one unit, the fraction of a large matrix product's rate in that dtype, and the
#    peak memory of lfsbench's side (torch.cuda.max_memory_allocated). Prior images are cut to 8 (`class_images=8`)
#    and lfs's distillation to 2 prompts x 4 teacher trajectories so that both benches fit; the CSV's `settings`
#    column says what each method ran with.
# 3. A full `lfsbench run -m lfs -p toy` on the GPU (the toy backbone in float16 there, the toy evaluator on the
#    CPU), timed: what a toy run costs on a GPU. Then naive, if the time limit leaves room.
# 4. A summary: achieved TFLOP/s per method and stage beside the matrix product's, per dtype.
#
# Each part runs under its own time limit, so a slow part costs its own figures and not the others' (a bench keeps the
# rows it finished: it writes its CSV after each). Order: the float16 bench, the toy run of lfs, the bfloat16 bench,
# then the toy run of naive in what is left. On 2026-12-04 an H200 did not finish 8 methods x 20 steps in 200 s
# (docs/speed.md); 10 steps and these limits are a guess from that. On a CPU, try
# `scripts/gpu_profile.sh runs/profile 64 1` (slow: the SD-shaped UNet has SD's 860M parameters at any resolution).
set -uo pipefail
OUTPUT=${1:-runs/profile}
RES=${2:-512}
STEPS=${3:-10}
mkdir -p "$OUTPUT"
started=$(date +%s)
elapsed() { echo $(( $(date +%s) - started )); }

echo "== the card"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi"
python3 - <<'PY'
import torch
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"torch {torch.__version__}: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
else:
    print(f"torch {torch.__version__}: no GPU; the figures below are the CPU's")
PY

bench() {  # DTYPE LIMIT
  if [ "$2" -lt 30 ]; then echo "== bench $1 skipped: $2 s left"; return; fi
  echo "== bench at sd-random:$RES:$1, $STEPS training steps (started at $(elapsed) s, limit $2 s)"
  timeout "$2" lfsbench bench --protocol toy-quick --backbone "sd-random:$RES:$1" --steps "$STEPS" \
    -o 'evaluation.prompts=["a {}"]' -o evaluation.images_per_prompt=4 \
    -o class_images=8 -o dfkd_batch_size=2 -o dfkd_trajectories=4 \
    --output "$OUTPUT/bench-$1.csv" || echo "bench $1 stopped (exit $?)"
}

toy_run() {  # METHOD LIMIT
  if [ "$2" -lt 60 ]; then echo "== toy run of $1 skipped: $2 s left"; return; fi
  echo "== full toy run of $1 on the GPU (started at $(elapsed) s, limit $2 s)"
  local t0
  t0=$(date +%s)
  timeout "$2" lfsbench run --method "$1" --protocol toy --output "$OUTPUT/toy-$1" > "$OUTPUT/toy-$1.log" 2>&1
  echo "toy run of $1: exit $?, $(( $(date +%s) - t0 )) s wall"
  tail -n 3 "$OUTPUT/toy-$1.log"
}

bench fp16 180
toy_run lfs 220
bench bf16 $(( 520 - $(elapsed) ))
toy_run naive $(( 550 - $(elapsed) ))

echo "== summary (at $(elapsed) s)"
python3 - "$OUTPUT" <<'PY'
import json, sys
from pathlib import Path

import pandas as pd

out = Path(sys.argv[1])
for csv in sorted(out.glob("bench-*.csv")):
    bench = pd.read_csv(csv)
    print(f"{csv.stem}: large matrix product {bench.peak_gflops.iloc[0] / 1000:.0f} TFLOP/s")
    for row in bench.itertuples():
        ours = row.lfsbench_per_s * row.lfsbench_gflop_per_unit / 1000
        ref = row.reference_per_s * row.reference_gflop_per_unit / 1000
        print(
            f"  {row.method:16s} {row.stage:8s} {row.lfsbench_per_s:8.2f} vs {row.reference_per_s:8.2f} {row.unit} "
            f"({row.ratio:.2f}x); {1 / row.lfsbench_per_s:.3f} s per unit; {ours:.1f} vs {ref:.1f} TFLOP/s "
            f"({row.lfsbench_fraction_of_peak:.1%} vs {row.reference_fraction_of_peak:.1%} of the matrix product); "
            f"peak {row.peak_memory_mb:,.0f} MB; {row.settings if isinstance(row.settings, str) else ''}"
        )
for run in sorted(p for p in out.glob("toy-*") if p.is_dir()):
    cost = run / "cost.csv"
    if not cost.is_file():
        print(f"{run.name}: no finished session")
        continue
    c = pd.read_csv(cost)
    summary = json.loads((run / "summary.json").read_text())
    print(
        f"{run.name}: {len(c)} sessions, training {c.train_s.sum():.0f} s, generation {c.generate_s.sum():.0f} s, "
        f"scoring {c.evaluate_s.sum():.0f} s, peak {c.peak_memory_mb.max():,.0f} MB; "
        f"IA {summary['IA']['value']:.3f}, IAD {summary['IAD']['value']:.3f}"
    )
PY
echo "== done at $(elapsed) s"
