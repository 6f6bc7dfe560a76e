"""`lfsbench check`: a regression gate over stored runs and a thresholds file.

    protocol: toy-quick            # the runs must be of this protocol (their protocol's name)
    checks:
      - name: naive learns its concepts
        value: naive.IA_right_after_learning      # SETTING.METRIC: a run label and a summary metric
        min: 0.45
        why: ...                                   # how the bound was chosen
      - name: replay forgets less than naive
        value: replay.IAD
        less_than: naive.IAD                       # a relation between two values
        margin: 0.03                               # value <= other - margin

A value is the mean over the setting's seeds: runs whose identities are equal but for the seed (lfsbench/identity.py);
runs that differ in anything else are never pooled. Metrics are the keys of summary.csv (`TA`,
`IAD`, `cost.train_seconds_per_session`, ...). An unknown setting or metric is an error,
never a pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from lfsbench.errors import LfsbenchError, load_yaml_model
from lfsbench.evaluation.metrics import METRICS
from lfsbench.report.runs import Run, find_runs, group_by_setting, same_protocol


def _number(value):
    """A bound is a number as written: `yes`, `true` or `"0.5"` are not read as 1.0 or 0.5."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, not {value!r}")
    return value


Number = Annotated[float, BeforeValidator(_number)]


def _metric_of(ref: str):
    """The metric a SETTING.METRIC reference names, where it is one of the metric table's (the longest match)."""
    names = [m for m in METRICS if ref.endswith("." + m)]
    return METRICS[max(names, key=len)] if names else None


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    value: str
    min: Number | None = None
    max: Number | None = None
    less_than: str | None = None
    greater_than: str | None = None
    margin: Number = 0.0
    why: str = ""

    @model_validator(mode="after")
    def _one_bound(self):
        if all(b is None for b in (self.min, self.max, self.less_than, self.greater_than)):
            raise ValueError("needs a bound: min, max, less_than or greater_than")
        never = self.never_fails()
        if never:
            raise ValueError(f"can never fail ({never}); a check must be able to catch a regression")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"can never pass (min {self.min:g} is above max {self.max:g})")
        return self

    def never_fails(self) -> str | None:
        """Why this check would pass whatever the runs measure (None where it can fail)."""
        for bound in (self.min, self.max, self.margin):
            if bound is not None and not np.isfinite(bound):
                return "an infinite bound"
        if self.value in (self.less_than, self.greater_than) and self.margin <= 0:
            return f"it compares {self.value} with itself"
        metric = _metric_of(self.value)
        relation = self.less_than is not None or self.greater_than is not None
        if metric is not None and metric.bounds is not None and not relation:
            low, high = metric.bounds
            if (self.min is None or self.min <= low) and (self.max is None or self.max >= high):
                return f"{metric.name} always lies in [{low:g}, {high:g}]"
        return None


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    protocol: str
    checks: list[Check] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_once(self):
        names = [c.name for c in self.checks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"check names must differ; given more than once: {', '.join(twice)}")
        return self


def load_thresholds(path: Path) -> Thresholds:
    path = Path(path)
    if not path.is_file():
        raise LfsbenchError(f"No thresholds file {path}. The project's own is tests/regression/thresholds.yaml.")
    return load_yaml_model(path, Thresholds, "Thresholds file", "Fix the entries named.")


def gate_metrics(summary: dict) -> dict[str, float]:
    """A run's summary as metric -> number: `IAD` (its value), `IAD.ci_low`, `cost.train_seconds_per_session`, ..."""
    out = {}
    for key, value in summary.items():
        if isinstance(value, dict) and "value" in value:
            out[key] = value["value"]
            out.update({f"{key}.{b}": value[b] for b in ("ci_low", "ci_high") if b in value})
        elif isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, (int, float))})
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "seed":
            out[key] = value
    return out


def _lookup(ref: str, groups: dict[str, list[Run]], check: str) -> float:
    """SETTING.METRIC -> the metric's mean over the setting's seeds (a setting label may itself hold dots)."""
    matches = [label for label in groups if ref.startswith(label + ".")]
    split = [label for label, runs in groups.items() if runs[0].note and ref.startswith(runs[0].identity.label + ".")]
    if split and not matches:
        raise LfsbenchError(
            f"Check {check!r}: the runs of {groups[split[0]][0].identity.label!r} are {len(split)} settings whose "
            f"identities differ ({'; '.join(split)}), and check never pools runs of different identities (an edited "
            "method, other data, another default or version are other runs). Check the runs of one of them (pass "
            "only its folders), or name one in the thresholds file as SETTING [WHAT DIFFERS].METRIC."
        )
    if not matches:
        setting = ref.split(".")[0]
        raise LfsbenchError(
            f"Check {check!r}: no runs of {setting!r} among the runs given (settings found: "
            f"{', '.join(groups)}). Write the value as SETTING.METRIC, e.g. naive.IAD."
        )
    setting = max(matches, key=len)
    metric = ref[len(setting) + 1 :]
    values = []
    for run in groups[setting]:
        flat = gate_metrics(run.summary)
        if metric not in flat:
            known = ", ".join(k for k in flat if not k.endswith((".ci_low", ".ci_high")))
            what = f" ({METRICS[metric].definition}: this run does not report it)" if metric in METRICS else ""
            raise LfsbenchError(
                f"Check {check!r}: {setting} has no metric {metric!r}{what}. Its metrics: {known} "
                "(each with .ci_low and .ci_high where it has an interval; docs/metrics.md)."
            )
        values.append(float(flat[metric]))
    return float(np.mean(values))


def run_checks(paths: list[Path], thresholds: Thresholds) -> list[dict]:
    """Every check's measured value, bound and verdict."""
    runs = find_runs(paths)
    unfinished = [r for r in runs if not r.finished]
    if unfinished:
        described = ", ".join("{} ({} of {} sessions)".format(r.path, *r.sessions) for r in unfinished)
        raise LfsbenchError(
            f"The gate reads finished runs only, and these stopped early: {described}. Their figures are not the "
            "protocol's. Finish them (run the same command again, which resumes) or leave them out."
        )
    protocol = same_protocol(runs)
    if protocol["name"] != thresholds.protocol:
        raise LfsbenchError(
            f"The thresholds are for protocol {thresholds.protocol!r}, the runs are of {protocol['name']!r}."
        )
    groups = group_by_setting(runs)
    results = []
    for check in thresholds.checks:
        value = _lookup(check.value, groups, check.name)
        bounds, ok = [], True
        if check.min is not None:
            bounds.append(f">= {check.min:g}")
            ok &= value >= check.min
        if check.max is not None:
            bounds.append(f"<= {check.max:g}")
            ok &= value <= check.max
        if check.less_than is not None:
            other = _lookup(check.less_than, groups, check.name)
            bounds.append(f"<= {check.less_than} - {check.margin:g} = {other - check.margin:.3f}")
            ok &= value <= other - check.margin
        if check.greater_than is not None:
            other = _lookup(check.greater_than, groups, check.name)
            bounds.append(f">= {check.greater_than} + {check.margin:g} = {other + check.margin:.3f}")
            ok &= value >= other + check.margin
        results.append(
            {
                "check": check.name,
                "value": check.value,
                "measured": value,
                "bound": "; ".join(bounds),
                "passed": bool(ok),
            }
        )
    return results


def junit_xml(results: list[dict], thresholds: Path) -> str:
    """The checks as a JUnit XML test suite (one test case per check; a failed check is a <failure>), the report
    format CI systems (GitLab, Jenkins, GitHub's test-report actions) show."""
    from xml.etree import ElementTree as ET

    failed = [r for r in results if not r["passed"]]
    suite = ET.Element(
        "testsuite", name=f"lfsbench check {thresholds}", tests=str(len(results)), failures=str(len(failed)), errors="0"
    )
    for r in results:
        case = ET.SubElement(suite, "testcase", classname="lfsbench.check", name=r["check"])
        ET.SubElement(case, "system-out").text = f"{r['value']} = {r['measured']:.6g} (needs {r['bound']})"
        if not r["passed"]:
            failure = ET.SubElement(case, "failure", message=f"{r['value']} = {r['measured']:.3f}, needs {r['bound']}")
            failure.text = failure.get("message")
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True) + "\n"
