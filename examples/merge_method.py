"""A method of your own in one file: naive K/V + token training, then a merge with the weights before the session.

Each session trains the cross-attention K/V (and the new modifier token) on the new concept's shots, as `naive`
does, and then keeps only a fraction `keep_new` of the change it made to K/V: w = w_before + keep_new x (w_trained -
w_before). Earlier concepts keep more of their K/V (less forgetting); the new one loses some of what it learned.
The modifier token, which only the new concept uses, is kept whole. Run it (docs/custom-methods.md):

    lfsbench run --method examples/merge_method.py:Merge --protocol toy-quick -o keep_new=0.7
"""

from pydantic import Field

from lfsbench.concepts import SessionView
from lfsbench.kv_method import KVConfig, KVTokenMethod
from lfsbench.training import kv_state, load_kv_state


class MergeConfig(KVConfig):
    """The knobs: everything naive has (steps, batch_size, kv_lr, token_lr, token_init) and the merge weight."""

    steps: int = Field(400, ge=1)  # naive's toy default, so the two differ only in the merge
    keep_new: float = Field(0.7, ge=0, le=1)  # 1: naive; 0: K/V never change (only tokens learn)


class Merge(KVTokenMethod):
    description = "naive K/V + token training, then K/V merged with the weights before the session (keep_new)"
    Config = MergeConfig
    presets = {"stable-diffusion": {"steps": 250, "batch_size": 2, "kv_lr": 2e-5, "token_lr": 2e-5}}

    def learn(self, session: SessionView) -> dict:
        before = kv_state(self.backbone)
        token_ids = self.add_tokens(session)
        figures = self.train(session, [self.instance_data(session)], token_ids)
        trained = kv_state(self.backbone)
        keep = self.config.keep_new
        load_kv_state(self.backbone, {k: before[k] + keep * (trained[k] - before[k]) for k in trained})
        return {**figures, "kv_change_kept": keep}

    # state_dict / load_state_dict (K/V and tokens, for resume), trainable_parameters, stored_bytes (nothing kept)
    # and generate come from KVTokenMethod: this method keeps nothing else between sessions.
