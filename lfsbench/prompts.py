"""Evaluation prompt templates as protocols and a user's concepts.yaml give them: '{}' is where "<token> <class>" goes.

A type of its own module so that the protocol schema and the sources of concepts (lfsbench/datasets.py), which the
schema's validation consults, both use it without importing each other.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def _with_placeholder(prompts: list[str]) -> list[str]:
    for p in prompts:
        if "{}" not in p:
            raise ValueError(f"prompt {p!r} has no '{{}}' placeholder for the concept")
    return prompts


PromptTemplates = Annotated[list[str], AfterValidator(_with_placeholder)]  # '{}' is where "<token> <class>" goes
