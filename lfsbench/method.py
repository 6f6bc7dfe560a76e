"""The method adapter interface and the method registry.

A method is one file in `methods/` that subclasses `Method` and registers itself:

    @METHODS.register("naive")
    class Naive(Method):
        description = "..."
        Config = NaiveConfig          # its knobs (a pydantic model)
        def learn(self, session): ...

It sees a session only through `SessionView` (the new concepts' shots, tokens,
class nouns and training prompts) and is asked to `generate` images for prompts.

What only some methods do is an optional capability, a small mixin the runner asks for
with isinstance (a method inherits only what it uses):
- `ReportsSteps`: reports training progress step by step (`self.on_step(done, total)`);
- `UsesEvaluator`: its algorithm uses the benchmark's CLIP-family model (LFS-Diffusion's
  similarity-based context selection); scoring never goes through the method;
- `GeneratesControl`: it generates from stored context, so the runner also asks it for the
  control (the base model from the same contexts, strength and seeds).

A method's `Config` defaults are its settings for the toy backbone (chosen by a
sweep, recorded in the method file); `presets` holds other backbones' settings
(`stable-diffusion`: from the literature, with the source). Precedence: defaults <
preset < command-line overrides; the resolved settings are saved with the run.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from lfsbench.backbone import Backbone
from lfsbench.concepts import SessionView
from lfsbench.errors import LfsbenchError, validation_problems
from lfsbench.registry import Registry


class MethodConfig(BaseModel):
    """Base of every method's knobs; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Method:
    """Base class of method adapters: learn sessions, generate images, expose state for resume."""

    description: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    presets: ClassVar[dict[str, dict]] = {}  # backbone kind -> settings that replace the (toy) defaults

    def __init__(self, config: MethodConfig):
        self.config = config
        self.backbone: Backbone | None = None
        self.seed = 0

    def setup(self, backbone: Backbone, seed: int):
        """Receive the backbone (already on its device) before the first session."""
        self.backbone = backbone
        self.seed = seed

    def learn(self, session: SessionView) -> dict:
        """Learn the session's concepts; return figures worth recording (e.g. final loss)."""
        raise NotImplementedError

    def generate(self, prompts: list[str], seeds: list[int], steps: int, guidance: float) -> torch.Tensor:
        """One image per (prompt, seed), [0, 1] NCHW."""
        return self.backbone.generate(prompts, seeds, steps=steps, guidance=guidance)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to continue after the last finished session (tensors only)."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        raise NotImplementedError

    def trainable_parameters(self) -> int:
        return 0

    def stored_bytes(self) -> int:
        """Bytes of data (images, latents) kept between sessions."""
        return 0

    def keeps(self) -> str:
        """What the method keeps between sessions besides its weights, in words ("nothing", "shots as images", "shots
        as VAE latents", "generated class images"): reported beside stored bytes, so no method is called data-free
        while it keeps its shots."""
        return "nothing"


# ---------------------------------------------------------------- optional capabilities


class ReportsSteps:
    """Capability: reports training progress; the runner sets `on_step(done, total)` before a session."""

    on_step = None

    def report_steps_to(self, callback):
        self.on_step = callback


class UsesEvaluator:
    """Capability: the method's algorithm uses the benchmark's evaluator, which the runner hands it after setup."""

    evaluator = None

    def use_evaluator(self, evaluator):
        self.evaluator = evaluator


class GeneratesControl:
    """Capability: the method generates from stored context (in-context generation), so copying the context could
    raise IA without any learning; the runner also scores the control it generates."""

    def generate_control(
        self, prompts: list[str], seeds: list[int], steps: int, guidance: float, plain_prompts: list[str]
    ) -> torch.Tensor | None:
        """The base model from the same contexts, strength and seeds; None where the method uses no context now.

        `plain_prompts` are `prompts` without the modifier token (the base model does not know it).
        """
        raise NotImplementedError


METHODS: Registry[type[Method]] = Registry("method")


def _import_methods():
    import lfsbench.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"lfsbench.methods.{info.name}")


def method_class(name: str) -> type[Method]:
    _import_methods()
    return METHODS.get(name)


def all_methods() -> list[tuple[str, type[Method]]]:
    _import_methods()
    return METHODS.items()


def preset_for(backbone: str) -> str:
    """The preset a backbone gets: `toy` (the Config defaults) or `stable-diffusion` (everything else)."""
    return "toy" if backbone == "toy" else "stable-diffusion"


def create_method(name: str, overrides: dict | None = None, preset: str = "toy") -> Method:
    """Instantiate a registered method: defaults < preset < overrides; unknown or ill-typed knobs are errors."""
    cls = method_class(name)
    try:
        config = cls.Config.model_validate({**cls.presets.get(preset, {}), **(overrides or {})})
    except ValidationError as err:
        known = ", ".join(cls.Config.model_fields)
        raise LfsbenchError(
            f"Bad setting for method {name!r}: {validation_problems(err)}. Its settings are: {known}."
        ) from None
    return cls(config)
