"""What `lfsbench ls` lists, generated from the registries: one function per kind, each row a dict of plain strings
(the CLI shows them as a table, or as JSON with --json)."""

from __future__ import annotations

KINDS = ("methods", "protocols", "metrics", "executors", "trackers", "backbones", "evaluators")


def methods() -> list[dict]:
    """Built-in methods and those installed packages add (entry points), with every setting and its default."""
    from lfsbench.method import all_methods

    rows = []
    for name, cls, origin in all_methods():
        if cls is None:  # an installed method that fails to load: listed with its error
            rows.append({"name": name, "role": "", "from": origin, "description": "", "settings (defaults)": ""})
            continue
        knobs = ", ".join(f"{k}={f.default}" for k, f in cls.Config.model_fields.items())
        rows.append(
            {
                "name": name,
                "role": cls.role,
                "from": origin,
                "description": cls.description,
                "settings (defaults)": knobs,
            }
        )
    return rows


def method_settings(name: str) -> list[dict]:
    """One method's settings: each knob's default on the toy backbone, its preset values and its constraints."""
    from lfsbench.method import canonical_method, method_class

    cls = method_class(canonical_method(name))
    rows = []
    for knob, field in cls.Config.model_fields.items():
        presets = ", ".join(f"{p}: {values[knob]}" for p, values in cls.presets.items() if knob in values)
        limits = ", ".join(str(m) for m in field.metadata)
        rows.append(
            {
                "setting": knob,
                "default (toy)": str(field.default),
                "presets": presets,
                "type": getattr(field.annotation, "__name__", str(field.annotation)),
                "limits": limits,
            }
        )
    return rows


def protocols() -> list[dict]:
    from lfsbench.protocol import builtin_protocols, load_protocol

    rows = []
    for name in sorted(builtin_protocols()):
        proto = load_protocol(name)
        rows.append(
            {
                "name": name,
                "sessions": str(len(proto.sessions)),
                "concepts": str(len(proto.concepts)),
                "description": proto.description,
            }
        )
    rows.append(
        {
            "name": "folder",
            "sessions": "one per subfolder",
            "concepts": "",
            "description": "built in: your own folder (--data PATH), one subfolder of images per concept, optional "
            "concepts.yaml",
        }
    )
    return rows


def metrics() -> list[dict]:
    from lfsbench.evaluation.metrics import METRICS

    better = {True: "higher", False: "lower", None: ""}
    return [
        {
            "name": m.name,
            "reads": m.reads.value if m.reads is not None else (f"{m.of}'s values" if m.of else ""),
            "aggregate": m.aggregate,
            "interval": m.interval,
            "better": better[m.higher_is_better],
            "views": m.views,
            "definition": m.definition,
        }
        for m in METRICS.values()
    ]


def executors() -> list[dict]:
    from lfsbench.executors import EXECUTORS

    return [
        {"name": e.name, "needs": f"lfsbench[{e.extra}]" if e.extra else "", "description": e.description}
        for e in EXECUTORS.in_order()
    ]


def trackers() -> list[dict]:
    from lfsbench.tracking import TRACKERS

    return [
        {"name": name, "needs": f"lfsbench[track] ({cls.package})", "description": cls.description}
        for name, cls in TRACKERS.items()
    ]


def backbones() -> list[dict]:
    from lfsbench.models import BACKBONES

    return [{"kind": k.name, "example": k.example, "description": k.description} for k in BACKBONES.in_order()]


def evaluators() -> list[dict]:
    from lfsbench.models import EVALUATORS

    return [{"kind": k.name, "example": k.example, "description": k.description} for k in EVALUATORS.in_order()]


LISTINGS = {
    "methods": methods,
    "protocols": protocols,
    "metrics": metrics,
    "executors": executors,
    "trackers": trackers,
    "backbones": backbones,
    "evaluators": evaluators,
}
