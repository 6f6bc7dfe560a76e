"""Naive sequential fine-tuning: each session trains cross-attention K/V and the new token, with no regularisation."""

from lfsbench.kv_method import KVTokenMethod
from lfsbench.method import METHODS


@METHODS.register("naive")
class Naive(KVTokenMethod):
    description = "sequential fine-tuning of cross-attention K/V + modifier token, nothing kept, no regularisation"

    def learn(self, session):
        token_ids = self.add_tokens(session)
        return self.train(session, [self.instance_data(session)], token_ids)
