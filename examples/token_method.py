"""Textual inversion in one file: each session learns only the new concept's modifier token; the model never changes.

The backbone's weights stay the base model's, so nothing earlier is forgotten through them, and what a concept
keeps is its token embedding alone (a few hundred numbers). It is the smallest method lfsbench can run: the shared
training loop `train_session` with no parameter group but the new token's row. Run it (docs/custom-methods.md):

    lfsbench run --method examples/token_method.py:TextualInversion --protocol toy-quick
"""

from pydantic import Field

from lfsbench.concepts import SessionView
from lfsbench.kv_method import TokenConfig, TokenMethod
from lfsbench.training import final_loss, train_session


class TextualInversionConfig(TokenConfig):
    """The knobs: steps, batch_size, token_lr and token_init (the word a new token starts from)."""

    token_lr: float = Field(5e-2, ge=0)  # one embedding row learns alone: a larger rate than naive's 5e-3


class TextualInversion(TokenMethod):
    description = "textual inversion: only the new concept's token embedding learns; the model never changes"
    Config = TextualInversionConfig

    def learn(self, session: SessionView) -> dict:
        token_ids = self.add_tokens(session)  # <newK> for each concept of the session, initialised from its class
        c = self.config
        losses = train_session(
            self.backbone,
            [self.instance_data(session)],  # the session's shots, each with its training prompt ("a <new1> circle")
            [],  # no parameter group: only the new token rows (added by train_session) learn
            token_ids,
            c.token_lr,
            c.steps,
            c.batch_size,
            self.train_seed(session),
            progress=self.on_step,
        )
        return {"final_loss": final_loss(losses)}

    # state_dict / load_state_dict (the tokens, for resume), trainable_parameters and generate come from TokenMethod.
