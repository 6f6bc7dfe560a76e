#!/usr/bin/env bash
# One short GPU check at real Stable Diffusion sizes, without the real weights (issue 15). Two parts:
#
# 1. `lfsbench bench` on the SD-1.5-shaped random backbone at RES px, every built-in method: training steps,
#    generated images and evaluator images per second against diffusers' example-script loop, each side's GFLOP
#    per unit and the fraction of a large matrix product's rate (8192-square in the backbone's dtype, float16 on a
#    GPU) it reached. The summary below turns those into achieved TFLOP/s per stage with the card's name.
# 2. A smoke run of every built-in method: two sessions (lfs distils from the second on) of toy concepts on the
#    same backbone, half precision on a GPU, a short step budget and a small evaluation. Prints, per method and
#    session: seconds per training step, seconds per generated image and peak memory (GPU:
#    torch.cuda.max_memory_allocated; CPU: process RSS), from each run's cost.csv. A method that fails here (for
#    example a dtype error in half precision) stops the script with its error.
#
#   scripts/gpu_profile.sh [RES=512] [STEPS=50] [OUTPUT=runs/profile]
#
# On the lent GPU machine (diffusers and open_clip missing there: carry them as wheels, see
# ../.library/device/README.md) the whole script takes a few minutes. On a CPU, try RES=64 STEPS=2 (slow: the
# SD-shaped UNet has SD's 860M parameters at any resolution).
set -euo pipefail
RES=${1:-512}
STEPS=${2:-50}
OUTPUT=${3:-runs/profile}
IMAGES=4  # per prompt; one prompt, so 4 images per concept and 4 per class prompt per session
PROMPTS='evaluation.prompts=["a {}"]'
mkdir -p "$OUTPUT"

lfsbench bench --protocol toy-quick --backbone "sd-random:$RES" --steps "$STEPS" \
  -o "$PROMPTS" -o "evaluation.images_per_prompt=$IMAGES" --output "$OUTPUT/bench-$RES.csv"

# Settings each method needs to stay small at SD sizes (class images of the prior; distillation's batch).
declare -A EXTRA=(
  [custom-diffusion]="-o class_images=8"
  [dreambooth]="-o class_images=8"
  [lfs]="-o dfkd_batch_size=2 -o dfkd_trajectories=4"
)
for method in naive custom-diffusion dreambooth replay lfs lora c-lora o-lora; do
  # shellcheck disable=SC2086  # EXTRA holds several words on purpose
  lfsbench run --method "$method" --protocol toy-quick --backbone "sd-random:$RES" --evaluator toy \
    -o 'sessions=[[circle-1], [square-1]]' -o "steps=$STEPS" ${EXTRA[$method]:-} \
    -o "$PROMPTS" -o "evaluation.images_per_prompt=$IMAGES" \
    --output "$OUTPUT/$method-$RES"
done

python - "$OUTPUT" "$RES" "$STEPS" <<'PY'
import json, sys
from pathlib import Path

import pandas as pd
import torch

out, res, steps = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
print(f"device: {device}; backbone sd-random:{res}; {steps} training steps per session")

bench = pd.read_csv(out / f"bench-{res}.csv")
print(f"large matrix product: {bench.peak_gflops.iloc[0] / 1000:.3g} TFLOP/s (the 'of peak' reference)")
for row in bench.itertuples():
    ours = row.lfsbench_per_s * row.lfsbench_gflop_per_unit / 1000
    ref = row.reference_per_s * row.reference_gflop_per_unit / 1000
    print(f"bench {row.method} {row.stage}: {row.lfsbench_per_s:.2f} vs {row.reference_per_s:.2f} {row.unit} "
          f"({row.ratio:.2f}x); {ours:.3g} vs {ref:.3g} TFLOP/s achieved "
          f"({row.lfsbench_fraction_of_peak:.0%} vs {row.reference_fraction_of_peak:.0%} of the matrix product)")

for run in sorted(p for p in out.glob(f"*-{res}") if p.is_dir()):
    cost = pd.read_csv(run / "cost.csv")
    scores = [pd.read_csv(f) for f in sorted((run / "scores").glob("session_*.csv"))]
    config = json.loads((run / "config.json").read_text())["method_config"]
    for (_, row), s in zip(cost.iterrows(), scores):
        images = len(s[s.kind.isin(["concept", "class", "control"])])
        print(f"{run.name} session {int(row.session)}: {row.train_s / config['steps']:.3f} s per training step "
              f"(batch {config['batch_size']}; includes making class images in the first session of "
              f"custom-diffusion and dreambooth), {row.generate_s / images:.3f} s per generated image "
              f"({images} images), peak memory {row.peak_memory_mb:,.0f} MB")
PY
