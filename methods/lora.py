"""Sequential LoRA fine-tuning: one LoRA adapter on the UNet's attention projections, trained session after session
with a modifier token per concept, nothing kept, no regularisation (the "naive continual fine-tuning" of a LoRA
adapter in Staniszewski et al., "Low-Rank Continual Personalization of Diffusion Models", 2024; the sequential LoRA
baseline of Smith et al.'s Continual Diffusion, 2023). The adapter is peft's, installed as diffusers' LoRA scripts do.
"""

from lfsbench.lora_method import SD_LORA_PRESET, LoRAConfig, LoRAMethod
from lfsbench.method import METHODS


@METHODS.register("lora")
class SequentialLoRA(LoRAMethod):
    description = "one peft LoRA adapter (attention projections) + modifier token, trained on and on, no regularisation"
    Config = LoRAConfig
    presets = {"stable-diffusion": SD_LORA_PRESET}
    new_adapter_each_session = False
