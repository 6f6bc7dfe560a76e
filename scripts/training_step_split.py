"""Where a naive training step on the toy backbone goes (docs/speed.md, "Where a training step goes").

    python scripts/training_step_split.py [STEPS]

Wall seconds per phase (CPU operations run synchronously), timed by wrapping each phase's entry point around naive's
own first session on circle-1 (batch 8, the toy defaults), then the operator mix of 30 steps under torch.profiler.
On a GPU the phases would need synchronising first: this measures the CPU.
"""

import sys
import time
from collections import defaultdict

import torch

from lfsbench import training
from lfsbench.backbone import Backbone
from lfsbench.concepts import Concept, session_view
from lfsbench.images import to_float
from lfsbench.method import create_method
from lfsbench.toy import load_toy_backbone, world

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 150
spent = defaultdict(float)


def timed(name, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - t0

    return wrapper


Backbone.encode_prompts = timed("text encoder (prompts, every step)", Backbone.encode_prompts)
Backbone.predict_noise = timed("UNet forward", Backbone.predict_noise)
torch.Tensor.backward = timed("backward", torch.Tensor.backward)
torch.optim.AdamW.step = timed("optimizer step", torch.optim.AdamW.step)
training.TokenEmbeddingTrainer.write_back = timed("token rows written back", training.TokenEmbeddingTrainer.write_back)
Backbone.posterior = timed("VAE encoding of the shots (once a session)", Backbone.posterior)

concept = world.concept_by_name("circle-1", world.concept_catalogue())
shots = to_float(world.concept_renders(concept, 6, world.SHOT_SEED, 1))
c = Concept("circle-1", "circle", "<new1>", shots, shots[:2])
method = create_method("naive", {"steps": STEPS})
method.setup(load_toy_backbone(device="cpu"), seed=0)
t0 = time.perf_counter()
method.learn(session_view(0, [c], "a {}", []))
total = time.perf_counter() - t0
print(f"naive, {STEPS} steps, batch 8, {torch.get_num_threads()} threads: {total:.2f} s, {STEPS / total:.1f} steps/s")
for name, s in spent.items():
    print(f"| {name} | {1000 * s / STEPS:.2f} ms | {100 * s / total:.0f}% |")
rest = total - sum(spent.values())
label = "the rest (batch draw, noise, add_noise, loss, zero_grad, Python)"
print(f"| {label} | {1000 * rest / STEPS:.2f} ms | {100 * rest / total:.0f}% |")

# operator mix of 30 steps
method2 = create_method("naive", {"steps": 30})
method2.setup(load_toy_backbone(device="cpu"), seed=0)
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    method2.learn(session_view(0, [c], "a {}", []))
groups = defaultdict(float)
for e in prof.key_averages():
    n = e.key
    if "conv" in n:
        kind = "convolution"
    elif any(k in n for k in ("addmm", "mm", "bmm", "linear", "matmul")):
        kind = "matrix products"
    elif "attention" in n or "softmax" in n:
        kind = "attention"
    elif "norm" in n:
        kind = "normalisation"
    else:
        kind = "element-wise and other"
    groups[kind] += e.self_cpu_time_total
allop = sum(groups.values())
for k, v in sorted(groups.items(), key=lambda kv: -kv[1]):
    print(f"op | {k} | {100 * v / allop:.0f}%")
