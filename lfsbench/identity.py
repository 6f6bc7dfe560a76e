"""A run's identity: one typed value that goes from the command line or a study spec to the run folder and back.

    RunIdentity
      protocol            the resolved protocol (includes, overrides and the drawn concept order applied)
      protocol_overrides  the protocol fields the run was given (`-o evaluation.steps=10`), as typed values
      method              name, preset, the settings given, every setting as resolved (defaults < preset < given),
                          and its source fingerprint (lfsbench/method.py, `method_source`)
      seed
      data                the source kind, the folder read (absolute; for information and for resuming) and the
                          fingerprint of what was read (lfsbench/datasets.py, `data_fingerprint`)
      models              fingerprints of the shipped weights the backbone and evaluator names load (toy)
      lfsbench            lfsbench's version

The backbone, the evaluator and the evaluation sampling are fields of the resolved protocol. Everything else derives
from this value, here and nowhere else: config.json (`to_config`, `from_config`), the run folder's name (`dirname`),
a short hash (`key`, and `setting_key` without the seed), the label reports and thresholds use (`label`), and what
differs between two runs (`differences`). Two runs are the same setting exactly when their identities are equal up
to the seed; the folder read, the settings' spelling and the protocol's description are kept for information only.

A run made before lfsbench recorded identities (config.json with `method_config` and no `format`) reads as a legacy
identity: its fingerprints are unknown (None), so it is never pooled with a run whose fingerprints are known; it can
be reported, checked and exported, never resumed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lfsbench.errors import LfsbenchError, validation_problems
from lfsbench.protocol import Protocol, load_protocol, split_settings

FORMAT = 1  # config.json's layout of an identity (older runs have none: `from_config` migrates them)
MAX_DIRNAME = 120  # longer folder names (many settings) end in a hash of the settings instead
INFORMATION_ONLY = (  # fields that say where or how a run was asked for, not what it is
    ("protocol", "description"),
    ("protocol", "source", "path"),
    ("protocol_overrides",),
    ("method", "overrides"),
    ("data", "path"),
    ("legacy",),
)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MethodIdentity(_Frozen):
    name: str  # a registered name, an entry point's, `/abs/path/file.py:Class` or `package.module:Class`
    preset: str  # the preset its backbone selects (`toy`, `stable-diffusion`)
    overrides: dict[str, Any] = Field(default_factory=dict)  # the settings it was given, validated
    settings: dict[str, Any]  # every knob as resolved
    source: dict[str, Any] | None  # `method_source`; None for a legacy run's built-in method


class DataIdentity(_Frozen):
    kind: str  # the protocol's source (toy, folder, cc101, dreambooth)
    path: str | None = None  # the folder read, absolute (or hf:NAME); None for the toy world
    fingerprint: str | None  # `data_fingerprint`; None for a legacy run


class ModelsIdentity(_Frozen):
    backbone_weights: str | None = None  # `weights_fingerprint` of the backbone name (toy), else None
    evaluator_weights: str | None = None


class RunIdentity(_Frozen):
    format: int = FORMAT
    protocol: Protocol
    protocol_overrides: dict[str, Any] = Field(default_factory=dict)
    method: MethodIdentity
    seed: int = 0
    data: DataIdentity
    models: ModelsIdentity = ModelsIdentity()
    lfsbench: str | None = None
    legacy: bool = False  # read from a config.json written before identities (fingerprints unknown)

    # ------------------------------------------------------------ derived, in one place

    def content(self) -> dict:
        """The identity without its information-only fields (what equality, `key` and `setting_key` compare)."""
        content = self.model_dump(mode="json")
        for path in INFORMATION_ONLY:
            parent = content
            for part in path[:-1]:
                parent = parent.get(part) or {}
            parent.pop(path[-1], None)
        return content

    def key(self) -> str:
        """A short hash of the identity: equal exactly for the same run (config.json records it)."""
        return _digest(self.content())

    def setting_key(self) -> str:
        """The hash without the seed: runs with the same setting key are seeds of one setting."""
        content = self.content()
        content.pop("seed")
        return _digest(content)

    def same_run(self, other: RunIdentity) -> bool:
        return self.content() == other.content()

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting given, protocol fields and method knobs together (what names the run folder)."""
        return {**self.protocol_overrides, **self.method.overrides}

    @property
    def method_name(self) -> str:
        """The method as folders, reports and thresholds name it: its name, or the class of a `file.py:Class`."""
        return self.method.name.rpartition(":")[2] or self.method.name

    @property
    def label(self) -> str:
        """The setting as reports and thresholds name it: `lfs (icgen=False)`, and `[order N]` where a concept order
        was drawn. Runs with the same label and different identities get what differs appended by the report."""
        label = self.method_name
        if self.method.overrides:
            label += f" ({settings_text(self.method.overrides, ', ')})"
        return label if self.protocol.order_seed is None else f"{label} [order {self.protocol.order_seed}]"

    def dirname(self) -> str:
        """The run's folder name: `naive-seed0`, `lfs-context_strength=0.6,dfkd=False-seed1` (the settings given)."""
        import re

        middle = f"-{settings_text(self.settings, ',')}" if self.settings else ""
        name = f"{self.method_name}{middle}-seed{self.seed}"
        if len(name) > MAX_DIRNAME:
            digest = hashlib.sha1(settings_text(self.settings, "\n").encode()).hexdigest()[:10]
            name = f"{self.method_name}-{digest}-seed{self.seed}"
        return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", name)

    def default_folder(self, root: Path) -> Path:
        """Where the run goes unless told: ROOT/PROTOCOL/NAME (`lfsbench run` under runs/, a study under its root)."""
        return Path(root) / self.protocol.name / self.dirname()

    # ------------------------------------------------------------ config.json

    def to_config(self) -> dict:
        """config.json: the identity, its key (for reading by eye; never trusted on reading) and its format."""
        return {**self.model_dump(mode="json", exclude={"legacy"}), "key": self.key()}

    @classmethod
    def from_config(cls, config: dict, where: Path | str = "config.json") -> RunIdentity:
        """The identity saved in a config.json; a config of an earlier lfsbench is migrated (`legacy`). Protocol fields
        added since take their defaults, which reproduce the behaviour the run had."""
        if not isinstance(config, dict):
            raise LfsbenchError(f"{where} does not hold a run's identity (not a JSON object). Delete the run folder.")
        try:
            config = _split_as_it_was(config)
            if "format" in config:
                return cls.model_validate({k: v for k, v in config.items() if k != "key"})
            return cls._migrated(config)
        except (ValidationError, KeyError, TypeError) as err:
            problem = validation_problems(err) if isinstance(err, ValidationError) else f"no {err}"
            raise LfsbenchError(
                f"{where} does not describe a run this lfsbench can read ({problem}). It was written by another "
                "version or edited by hand: report it with the version that made it, or run it again into a new "
                "folder."
            ) from None

    @classmethod
    def _migrated(cls, config: dict) -> RunIdentity:
        """An identity from the config.json of lfsbench before identities: method, method_preset,
        method_overrides, method_config, seed, data and, for a method from outside the package, method_source."""
        protocol = Protocol.model_validate(config["protocol"])
        source = config.get("method_source")
        if source and "sha256" in source:  # a method file: its own SHA-256 (not yet its bases')
            source = {"sha256": source["sha256"], "files": [source.get("file", "")]}
        return cls(
            protocol=protocol,
            method=MethodIdentity(
                name=config["method"],
                preset=config.get("method_preset", "toy"),
                overrides=config.get("method_overrides", {}),
                settings=config["method_config"],
                source=source,
            ),
            seed=config["seed"],
            data=DataIdentity(kind=protocol.source.kind, path=config.get("data"), fingerprint=None),
            legacy=True,
        )

    # ------------------------------------------------------------ comparing

    def differences(self, other: RunIdentity) -> list[str]:
        """What differs from `other`, field by field: `method settings: steps 200 -> 400`, `data fingerprint 1a2b3c4d
        -> 5e6f7a8b`. Empty when they are the same run."""
        mine, theirs = flat_content(self), flat_content(other)
        out = []
        for key in sorted(set(mine) | set(theirs), key=field_order):
            a, b = mine.get(key, "(none)"), theirs.get(key, "(none)")
            if a != b:
                out.append(f"{describe_field(key)} {short(a)} -> {short(b)}")
        return out


def _split_as_it_was(config: dict) -> dict:
    """A config.json from before `split` existed: real data was split in file-name order then, and the field's default
    (random) would misdescribe it."""
    protocol = config.get("protocol")
    if not isinstance(protocol, dict) or "split" in protocol:
        return config
    source = protocol.get("source") or {}
    if isinstance(source, dict) and source.get("kind", "toy") == "toy":  # the toy source takes no split
        return config
    return {**config, "protocol": {**protocol, "split": {"order": "file-name"}}}


def legacy_refusal(path: Path | str) -> LfsbenchError:
    """Why a run made before identities is not resumed or run into."""
    return LfsbenchError(
        f"The run in {path} was made by an lfsbench that did not record a run's identity (the fingerprints of its "
        "method's source, its data and its weights), so continuing it could mix two different runs. Nothing was "
        "changed. It can still be reported, checked and exported; to finish it, run it again into a new folder (or "
        "delete this one): the same command does it."
    )


# ---------------------------------------------------------------- resolving a run from what was asked


def resolve_identity(
    method: str,
    protocol: str | Path | Protocol = "toy",
    settings: dict | None = None,
    seed: int = 0,
    data: Path | str | None = None,
) -> RunIdentity:
    """The identity of a run asked for by name: load the protocol (a name, a file, or an already loaded one), apply
    the protocol fields among `settings` (typed values, as a study spec or `-o` after YAML gives them), resolve the
    method's knobs (defaults < preset < the rest of `settings`) and fingerprint the method's source, the data and
    the shipped weights. Unknown or ill-typed settings are errors naming them."""
    from lfsbench.method import method_class, method_source, preset_for, validated_config
    from lfsbench.models import weights_fingerprint

    protocol_given, method_given = split_settings(settings or {})
    if isinstance(protocol, Protocol):
        if protocol_given:
            raise ValueError("protocol overrides apply to a protocol loaded by name or file, not to a loaded one")
        loaded, shown = protocol, {}
    else:
        loaded = load_protocol(str(protocol), protocol_given, Path(data) if data is not None else None)
        shown = _validated_overrides(loaded, protocol_given)
    cls = method_class(method)
    preset = preset_for(loaded.backbone)
    config = validated_config(cls, method, preset, method_given)
    resolved = config.model_dump(mode="json")
    return RunIdentity(
        protocol=loaded,
        protocol_overrides=shown,
        method=MethodIdentity(
            name=method,
            preset=preset,
            overrides={k: resolved[k] for k in method_given},
            settings=resolved,
            source=method_source(method),
        ),
        seed=seed,
        data=data_identity(loaded, data),
        models=ModelsIdentity(
            backbone_weights=weights_fingerprint(loaded.backbone),
            evaluator_weights=weights_fingerprint(loaded.evaluator),
        ),
        lfsbench=lfsbench_version(),
    )


def identity_of(
    protocol: Protocol, method: str, overrides: dict | None = None, seed: int = 0, data: Path | str | None = None
) -> RunIdentity:
    """The identity of `method` with `overrides` on an already loaded protocol (library use and tests)."""
    return resolve_identity(method, protocol, overrides, seed, data)


def current(identity: RunIdentity) -> RunIdentity:
    """The identity the same run would have now: the method's source, the data and the weights fingerprinted again
    (the settings as recorded). A run resumes only where this equals the recorded one."""
    from lfsbench.method import method_source
    from lfsbench.models import weights_fingerprint

    protocol = identity.protocol
    path = identity.data.path
    return identity.model_copy(
        update={
            "method": identity.method.model_copy(update={"source": method_source(identity.method.name)}),
            "data": data_identity(protocol, path),
            "models": ModelsIdentity(
                backbone_weights=weights_fingerprint(protocol.backbone),
                evaluator_weights=weights_fingerprint(protocol.evaluator),
            ),
            "lfsbench": lfsbench_version(),
        }
    )


def data_identity(protocol: Protocol, data: Path | str | None) -> DataIdentity:
    """The data a run of `protocol` reads: the folder (absolute) and the fingerprint of its content."""
    from lfsbench.datasets import data_fingerprint, data_root, dataset_spec
    from lfsbench.readers import HF_PREFIX

    spec = dataset_spec(protocol.source.kind)
    path = None
    if spec.needs_data:
        root = str(data_root(protocol, Path(data) if data is not None else None))
        path = root if root.startswith(HF_PREFIX) else str(Path(root).resolve())
    return DataIdentity(
        kind=protocol.source.kind,
        path=path,
        fingerprint=data_fingerprint(protocol, Path(path) if path and not path.startswith(HF_PREFIX) else path),
    )


def lfsbench_version() -> str | None:
    import importlib.metadata as md

    try:
        return md.version("lfsbench")
    except md.PackageNotFoundError:
        return None


def _validated_overrides(protocol: Protocol, given: dict) -> dict:
    """The protocol fields given, as the validated protocol holds them (`-o evaluation.guidance=5` and a spec's `5.0`
    are the same value), flattened to dotted keys. The concept order drawn by order_seed is not applied to
    `sessions` here: the value given is the order written."""
    out = {}
    for key, value in _flat(given).items():
        if key == "sessions" or key.startswith("sessions."):
            out[key] = value
            continue
        node: Any = protocol
        for part in key.split("."):
            node = getattr(node, part) if isinstance(node, BaseModel) else node[part]
        out[key] = node.model_dump(mode="json") if isinstance(node, BaseModel) else node
    return out


# ---------------------------------------------------------------- text


def settings_text(settings: dict, separator: str) -> str:
    """`key=value` pairs in key order (what folder names and labels show)."""
    return separator.join(f"{k}={v}" for k, v in sorted(settings.items()))


FIELD_NAMES = {
    "data.fingerprint": "data",
    "method.source.sha256": "method source",
    "models.backbone_weights": "backbone weights",
    "models.evaluator_weights": "evaluator weights",
    "lfsbench": "lfsbench",
}


def describe_field(key: str) -> str:
    """A flattened identity field as people read it: `data`, `method setting steps`, `protocol field shots`."""
    if key in FIELD_NAMES:
        return FIELD_NAMES[key]
    if key.startswith("method.settings."):
        return f"method setting {key.removeprefix('method.settings.')}"
    if key.startswith("protocol."):
        return f"protocol field {key.removeprefix('protocol.')}"
    return key


def short(value) -> str:
    """A value in a label or message: hashes cut to 8 characters, None as `unrecorded`."""
    if value is None:
        return "unrecorded"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:8]
    return str(value)


def _flat(tree, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (lists stay values)."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    out = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(_flat(value, path))
        else:
            out[path] = value
    return out


def flat_content(identity: RunIdentity) -> dict[str, Any]:
    """The identity's content (no information-only fields) as dotted keys, without `method.source.files` (names)."""
    flat = _flat(identity.content())
    return {k: v for k, v in flat.items() if k != "method.source.files"}


def field_order(key: str) -> tuple[int, str]:
    order = ("method.", "protocol.", "data.", "models.", "lfsbench", "seed")
    return next((i for i, p in enumerate(order) if key.startswith(p)), len(order)), key


def _digest(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
