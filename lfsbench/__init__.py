"""lfsbench: a benchmark for lifelong few-shot customization of text-to-image diffusion (see README.md)."""

import os

# lfsbench never downloads: models and datasets come from local folders or the local Hugging Face cache, and a
# missing one is an error that says what to fetch. The hub libraries read these when they are first imported, so
# they are set here, before any of them is. A user who sets one explicitly keeps their value; `lfsbench data
# --fetch`, the one command that downloads, turns the hub on for itself.
for _variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_variable, "1")
