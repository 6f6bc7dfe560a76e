"""The toy concepts a protocol names (for the fitness check's concept gates)."""

from __future__ import annotations

from lfsbench.errors import LfsbenchError
from lfsbench.protocol import load_protocol
from lfsbench.toy import world


def protocol_concepts(protocol: str) -> list[world.ToyConcept]:
    """Resolve every concept of a toy-source protocol against the toy catalogue."""
    proto = load_protocol(protocol)
    if proto.source.kind != "toy":
        raise LfsbenchError(
            f"Protocol {proto.name!r} reads {proto.source.kind} data; the toy check needs a toy-world protocol."
        )
    catalogue = world.concept_catalogue()
    try:
        return [world.concept_by_name(name, catalogue) for name in proto.concepts]
    except KeyError as err:
        raise LfsbenchError(f"Protocol {proto.name!r}: {err.args[0]}") from None
