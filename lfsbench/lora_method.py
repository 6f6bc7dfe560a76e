"""The LoRA family's common base, `LoRAMethod`: modifier tokens plus low-rank adapters on the UNet's attention
projections, through `peft` (the adapters diffusers' own LoRA scripts install with `unet.add_adapter`).

Two ways to carry adapters from session to session:
- one adapter trained on and on (`lora`: sequential LoRA fine-tuning);
- a new adapter per session (`c-lora`, `o-lora`): at the session's end its factors join the earlier sessions'
  in one frozen adapter, `past`, whose rank grows by `rank` per session. Stacking the factors,
  B_past = [B_1 ... B_t] and A_past = [A_1; ...; A_t], makes B_past A_past = sum_i B_i A_i exactly: the merge of
  every earlier update, kept in float32 beside the (possibly half-precision) frozen weights instead of rounded into
  them. What regularises the new adapter against the earlier ones is the subclass's `penalty`.

The saved state is the factors and the tokens (a few kilobytes per session), never the UNet.
"""

from __future__ import annotations

import warnings
from typing import ClassVar, Literal

import torch
from pydantic import Field

from lfsbench.concepts import SessionView
from lfsbench.kv_method import TokenConfig, TokenMethod
from lfsbench.training import final_loss, train_session

NEW, PAST = "lfsbench_new", "lfsbench_past"  # the peft adapter names

# peft target_modules (a module matches when its name ends with ".<key>"): every attention projection, as diffusers'
# examples/dreambooth/train_dreambooth_lora.py targets, or cross-attention K/V only (Custom Diffusion's parameters,
# where C-LoRA puts its adapters)
TARGETS = {
    "attention": ["to_q", "to_k", "to_v", "to_out.0"],
    "cross-kv": ["attn2.to_k", "attn2.to_v"],
}

# Stable Diffusion settings of every LoRA method: diffusers' examples/dreambooth/README.md, "Training with Low-Rank
# Adaptation of Large Language Models (LoRA)": --learning_rate=1e-4 --train_batch_size=1 --max_train_steps=500, rank 4
# (the script's --rank default) with lora_alpha = rank. The script trains no token (it uses a rare word); the shared
# protocol needs one per concept, and its row trains at the adapters' rate.
SD_LORA_PRESET = {"lr": 1e-4, "token_lr": 1e-4, "batch_size": 1, "steps": 500, "rank": 4}


class LoRAConfig(TokenConfig):
    """Knobs of every LoRA method (toy defaults; Stable Diffusion: SD_LORA_PRESET)."""

    rank: int = Field(4, ge=1)
    # the adapters' learning rate (the token rows keep token_lr); toy: 3x the K/V rate, as LoRA trains at 10-20x a
    # full fine-tune's rate in diffusers' scripts (1e-4 against 5e-6 and 1e-5). The equal-budget sweep on toy-tune
    # (reports/sweeps/toy-tune-lora.yaml, docs/methods.md) kept it, and rank 4, for every LoRA method
    lr: float = Field(3e-3, ge=0)
    target: Literal["attention", "cross-kv"] = "attention"


class LoRAMethod(TokenMethod):
    """Tokens + peft LoRA adapters; `new_adapter_each_session` chooses how adapters carry over (module docstring)."""

    Config = LoRAConfig
    new_adapter_each_session: ClassVar[bool] = True

    def setup(self, backbone, seed):
        super().setup(backbone, seed)
        self.factors: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []  # per finished session: {module: (A, B)}

    # ------------------------------------------------------------ adapters

    def _add_adapter(self, name: str, rank: int):
        """A peft LoRA adapter on the configured targets, its weights float32 (trained or holding exact sums)."""
        from peft import LoraConfig

        config = LoraConfig(
            r=rank, lora_alpha=rank, target_modules=TARGETS[self.config.target], init_lora_weights=False
        )
        with warnings.catch_warnings():  # peft warns that a second adapter joins the first: that is the design
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            self.backbone.unet.add_adapter(config, adapter_name=name)
        for module in self._lora_modules().values():
            for part in (module.lora_A[name], module.lora_B[name]):
                part.to(torch.float32)

    def _lora_modules(self) -> dict[str, torch.nn.Module]:
        from peft.tuners.lora import LoraLayer

        return {n: m for n, m in self.backbone.unet.named_modules() if isinstance(m, LoraLayer)}

    def _adapters(self) -> dict:
        """The adapters installed now, by name (diffusers drops `peft_config` with the last one)."""
        return getattr(self.backbone.unet, "peft_config", {})

    def _activate(self):
        names = [n for n in (PAST, NEW) if n in self._adapters()]
        if not names:
            return
        self.backbone.unet.set_adapters(names)
        for module in self._lora_modules().values():  # set_adapters marks every active adapter trainable
            for name in names:
                module.lora_A[name].requires_grad_(False)
                module.lora_B[name].requires_grad_(False)

    def _start_new_adapter(self, session: SessionView):
        """A fresh adapter for this session, A Gaussian (std 1/rank, peft's "gaussian" init) from the session's seed,
        B zero, so the model is unchanged at the first step."""
        self._add_adapter(NEW, self.config.rank)
        generator = torch.Generator().manual_seed(self.train_seed(session))
        with torch.no_grad():
            for module in self._lora_modules().values():
                a, b = module.lora_A[NEW].weight, module.lora_B[NEW].weight
                a.copy_(torch.randn(a.shape, generator=generator) / self.config.rank)
                b.zero_()
        self._activate()

    def new_factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{module: (A, B)} of the adapter being trained, live (gradients flow), B's scaling folded in."""
        return {
            name: (m.lora_A[NEW].weight, m.lora_B[NEW].weight * m.scaling[NEW])
            for name, m in self._lora_modules().items()
        }

    def past_factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{module: (A_past, B_past)}: every finished session's factors stacked (empty before the second session)."""
        if not self.factors:
            return {}
        return {
            name: (torch.cat([f[name][0] for f in self.factors]), torch.cat([f[name][1] for f in self.factors], dim=1))
            for name in self.factors[0]
        }

    def _rebuild_past(self):
        """The frozen adapter `past` holds the stacked factors of every finished session."""
        unet = self.backbone.unet
        if PAST in self._adapters():
            unet.delete_adapters(PAST)
        if not self.factors:
            return
        self._add_adapter(PAST, self.config.rank * len(self.factors))
        modules = self._lora_modules()
        with torch.no_grad():
            for name, (a, b) in self.past_factors().items():
                modules[name].lora_A[PAST].weight.copy_(a)
                modules[name].lora_B[PAST].weight.copy_(b)

    def _finish_session(self):
        """Per-session adapters: the new adapter's factors join `past`, and the new adapter goes."""
        if not self.new_adapter_each_session:
            return
        self.factors.append({n: (a.detach().clone(), b.detach().clone()) for n, (a, b) in self.new_factors().items()})
        self.backbone.unet.delete_adapters(NEW)
        self._rebuild_past()
        self._activate()

    # ------------------------------------------------------------ training

    def penalty(self, session: SessionView):
        """A regulariser of the new adapter against the earlier ones: a function of the step, or None."""
        return None

    def learn(self, session):
        c = self.config
        token_ids = self.add_tokens(session)
        if self.new_adapter_each_session or NEW not in self._adapters():
            self._start_new_adapter(session)
        trained = [p for m in self._lora_modules().values() for p in (m.lora_A[NEW].weight, m.lora_B[NEW].weight)]
        for p in trained:
            p.requires_grad_(True)
        penalty = self.penalty(session)

        def extra_loss(step):
            with torch.autocast(self.backbone.device.type, enabled=False):  # tiny products: float32, not half
                return penalty(step)

        try:
            losses = train_session(
                self.backbone,
                [self.instance_data(session)],
                [{"params": trained, "lr": c.lr}],
                token_ids,
                c.token_lr,
                c.steps,
                c.batch_size,
                self.train_seed(session),
                extra_loss if penalty is not None else None,
                self.on_step,
            )
        finally:
            for p in trained:
                p.requires_grad_(False)
        self._finish_session()
        return {"final_loss": final_loss(losses)}

    # ------------------------------------------------------------ state

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {}
        for i, factors in enumerate(self.factors):
            for name, (a, b) in factors.items():
                state[f"lora.{i:04d}.{name}.A"], state[f"lora.{i:04d}.{name}.B"] = a, b
        if not self.new_adapter_each_session and NEW in self._adapters():
            for name, (a, b) in self.new_factors().items():
                state[f"lora.new.{name}.A"], state[f"lora.new.{name}.B"] = a.detach(), b.detach()
        return {**state, **super().state_dict()}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        super().load_state_dict(state)
        sessions: dict[str, dict] = {}
        for key, value in state.items():
            if key.startswith("lora."):
                _, which, rest = key.split(".", 2)
                name, part = rest.rsplit(".", 1)
                sessions.setdefault(which, {}).setdefault(name, {})[part] = value.float()
        new = sessions.pop("new", None)
        self.factors = [{n: (ab["A"], ab["B"]) for n, ab in sessions[k].items()} for k in sorted(sessions)]
        self._rebuild_past()
        if new is not None:  # the one adapter trained on and on: scaling is 1 (alpha = rank), B as saved
            self._add_adapter(NEW, self.config.rank)
            modules = self._lora_modules()
            with torch.no_grad():
                for name, ab in new.items():
                    modules[name].lora_A[NEW].weight.copy_(ab["A"])
                    modules[name].lora_B[NEW].weight.copy_(ab["B"])
        self._activate()

    def trainable_parameters(self) -> int:
        """The adapter one session trains (rank x (in + out) per targeted projection) and the tokens."""
        per_session = sum(self.config.rank * (m.in_features + m.out_features) for m in self._lora_modules().values())
        return per_session + super().trainable_parameters()
