#!/usr/bin/env bash
# Cost of custom-diffusion and lfs at real Stable Diffusion sizes, without the real weights: two sessions
# (lfs distils from the second on) of the toy concepts on the SD-1.5-shaped random backbone at RES px, with
# the methods' stable-diffusion preset (batch 2, the literature's learning rates), a short step budget, and
# a small evaluation. Prints, per method and session: seconds per training step, seconds per generated
# image and peak memory (GPU: torch.cuda.max_memory_allocated; CPU: process RSS), from each run's cost.csv.
#
#   scripts/gpu_profile.sh [RES=512] [STEPS=50] [OUTPUT=runs/profile]
#
# On the lent GPU machine (diffusers and open_clip missing there: carry them as wheels, see
# ../.library/device/README.md) the whole script takes a few minutes. On a CPU, try RES=64 STEPS=2.
set -euo pipefail
RES=${1:-512}
STEPS=${2:-50}
OUTPUT=${3:-runs/profile}
IMAGES=4  # per prompt; one prompt, so 4 images per concept and 4 per class prompt per session
for method in custom-diffusion lfs; do
  lfsbench run --method "$method" --protocol toy-quick --backbone "sd-random:$RES" --evaluator toy \
    -o 'sessions=[[circle-1], [square-1]]' -o "steps=$STEPS" -o class_images=8 -o dfkd_batch_size=2 \
    -o 'evaluation.prompts=["a {}"]' -o "evaluation.images_per_prompt=$IMAGES" \
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
for run in sorted(out.glob(f"*-{res}")):
    cost = pd.read_csv(run / "cost.csv")
    scores = [pd.read_csv(f) for f in sorted((run / "scores").glob("session_*.csv"))]
    for (_, row), s in zip(cost.iterrows(), scores):
        images = len(s[s.kind.isin(["concept", "class", "control"])])
        config = json.loads((run / "config.json").read_text())["method_config"]
        print(f"{run.name} session {int(row.session)}: {row.train_s / config['steps']:.3f} s per training step "
              f"(batch {config['batch_size']}; includes making class images in the first session of custom-diffusion), "
              f"{row.generate_s / images:.3f} s per generated image ({images} images), peak memory {row.peak_memory_mb:,.0f} MB")
PY
