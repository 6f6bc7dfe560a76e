"""The `lfsbench` command line: a thin typer layer over the library."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lfsbench.errors import LfsbenchError

app = typer.Typer(help="lfsbench: lifelong few-shot customization benchmark for text-to-image diffusion.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
toy_app = typer.Typer(help="The embedded toy world: build its models, check that they are fit for purpose.",
                      no_args_is_help=True)
app.add_typer(toy_app, name="toy")
console = Console()


def friendly_errors(fn):
    """Print an LfsbenchError as one paragraph (no traceback) and exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LfsbenchError as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False)
            raise typer.Exit(2)

    return wrapper


def parse_overrides(pairs: list[str]) -> tuple[dict, dict]:
    """Split KEY=VALUE pairs into protocol overrides (keys that are protocol fields, dotted for nesting) and method settings."""
    import yaml

    from lfsbench.protocol import Protocol

    protocol, method = {}, {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise LfsbenchError(f"Override {pair!r} is not KEY=VALUE (e.g. -o steps=100 or -o evaluation.images_per_prompt=4).")
        value = yaml.safe_load(raw)
        parts = key.split(".")
        if parts[0] in Protocol.model_fields:
            target = protocol
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
        else:
            method[key] = value
    return protocol, method


def _default_output(protocol: str, method: str, seed: int, overrides: list[str]) -> Path:
    import hashlib

    suffix = "-" + hashlib.sha1("\n".join(sorted(overrides)).encode()).hexdigest()[:8] if overrides else ""
    return Path("runs") / Path(protocol).stem / f"{method}-seed{seed}{suffix}"


@app.command("run")
@friendly_errors
def run(
    method: str = typer.Option(..., "--method", "-m", help="Method name (`lfsbench ls methods`)."),
    protocol: str = typer.Option("toy", "--protocol", "-p", help="Protocol name or YAML file (`lfsbench ls protocols`)."),
    seed: int = typer.Option(0, help="Seed of training and generation."),
    output: Optional[Path] = typer.Option(None, "--output", help="Run folder (default: runs/PROTOCOL/METHOD-seedN)."),
    override: list[str] = typer.Option([], "--set", "-o", help="KEY=VALUE: a method setting (steps=100) or a protocol field (evaluation.images_per_prompt=4)."),
    data: Optional[Path] = typer.Option(None, help="Where the protocol's dataset lives (folder sources)."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this folder, with the settings it was started with."),
):
    """Run one method through a lifelong protocol; rerunning the same command resumes it."""
    from lfsbench.protocol import Protocol, load_protocol
    from lfsbench.runner import Runner, RunSpec

    if resume is not None:
        from lfsbench.results import RunFolder

        config = RunFolder(resume).config()
        if config is None:
            raise LfsbenchError(f"{resume} holds no lfsbench run (no config.json); --resume needs a run folder.")
        overrides = config.get("method_overrides", config["method_config"])
        spec = RunSpec(Protocol.model_validate(config["protocol"]), config["method"], overrides, config["seed"], config["data"])
        output = resume
    else:
        protocol_overrides, method_overrides = parse_overrides(override)
        spec = RunSpec(load_protocol(protocol, protocol_overrides, data), method, method_overrides, seed, str(data) if data else None)
        output = output or _default_output(protocol, method, seed, override)
    from lfsbench.method import create_method, preset_for

    create_method(spec.method, spec.method_overrides, preset_for(spec.protocol.backbone))  # unknown names and settings fail here, before any model loads
    console.print(f"run folder: [bold]{output}[/]")
    summary = Runner(spec, output).run()
    table = Table(title=f"{spec.method} on {spec.protocol.name} (seed {spec.seed}), after session {summary['sessions_finished'] - 1}")
    for col in ("metric", "value", "95% interval"):
        table.add_column(col)
    for key in ("TA", "CLIPScore", "IA", "IAD", "class_TA", "drift"):
        v = summary[key]
        table.add_row(key, f"{v['value']:.3f}", f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]")
    table.add_row("forgetting_max", f"{summary['forgetting_max']['value']:.3f}", "")
    table.add_row("IA right after learning (base class prompt)",
                  f"{summary['IA_right_after_learning']:.3f} ({summary['IA_base_class_prompt']:.3f})",
                  f"{summary['concepts_above_base_class_prompt_right_after_learning']}/{summary['concepts']} concepts above")
    table.add_row("drift between two seeds (scale)", f"{summary['drift_seed_scale']:.3f}", "")
    for key in ("IA_control", "TA_control", "IA_gain_over_control"):  # methods that generate from stored context
        if key in summary:
            v = summary[key]
            table.add_row(key, f"{v['value']:.3f}", f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]")
    cost = summary.get("cost", {})
    table.add_row("train s / session", f"{cost.get('train_seconds_per_session', float('nan')):.1f}", "")
    console.print(table)
    console.print(f"results in [bold]{output}[/] (summary.json, sessions/, ia_matrix.csv, images/)")


@app.command("report")
@friendly_errors
def report(
    runs: list[Path] = typer.Argument(..., help="Run folders, or folders that contain them (e.g. runs/toy)."),
    output: Path = typer.Option(Path("report"), "--output", "-O", help="Report folder."),
    concept: list[str] = typer.Option([], "--concept", help="Concepts shown in the image grids (default: the first three)."),
):
    """Tables, forgetting curves, IA heatmaps, image grids and an HTML page from stored runs (never trains)."""
    from lfsbench.report import make_report

    page = make_report(runs, output, concept or None)
    console.print(f"report in [bold]{output}[/]: open {page}")


@app.command("check")
@friendly_errors
def check(
    runs: list[Path] = typer.Argument(..., help="Run folders, or folders that contain them."),
    thresholds: Path = typer.Option(..., "--thresholds", help="Thresholds file (tests/regression/thresholds.yaml)."),
):
    """The regression gate: compare stored runs with a thresholds file; exit 1 if any check fails."""
    from lfsbench.gate import load_thresholds, run_checks

    results = run_checks(runs, load_thresholds(thresholds))
    table = Table(title=f"lfsbench check against {thresholds}")
    for col in ("check", "value", "measured", "bound", "result"):
        table.add_column(col)
    for r in results:
        table.add_row(r["check"], r["value"], f"{r['measured']:.3f}", r["bound"], "[green]pass[/]" if r["passed"] else "[red]FAIL[/]")
    console.print(table)
    failed = [r for r in results if not r["passed"]]
    if failed:
        console.print(f"[red]{len(failed)} of {len(results)} checks failed:[/] " + "; ".join(f"{r['check']} ({r['value']} = {r['measured']:.3f}, needs {r['bound']})" for r in failed))
        raise typer.Exit(1)
    console.print(f"all {len(results)} checks passed")


@app.command("study")
@friendly_errors
def study(spec: Path = typer.Argument(..., help="Study spec (YAML) or a name under reports/ (ablation, scalability, seeds).")):
    """Run every cell of a study (skipping finished runs, resuming partial ones)."""
    from lfsbench.study import load_study, run_study

    loaded = load_study(spec)
    folders = run_study(loaded, console)
    console.print(f"{len(folders)} runs of study {loaded.name!r} in [bold]{folders[0].parent.parent}[/]")


@app.command("ls")
@friendly_errors
def ls(what: str = typer.Argument(..., help="methods or protocols")):
    """List the registered methods (with their settings) or the shipped protocols."""
    if what == "methods":
        from lfsbench.method import all_methods

        table = Table(title="methods")
        for col in ("name", "description", "settings (defaults)"):
            table.add_column(col)
        for name, cls in all_methods():
            knobs = ", ".join(f"{k}={f.default}" for k, f in cls.Config.model_fields.items())
            table.add_row(name, cls.description, knobs)
        console.print(table)
    elif what == "protocols":
        from lfsbench.protocol import builtin_protocols, load_protocol

        table = Table(title="protocols")
        for col in ("name", "sessions", "concepts", "description"):
            table.add_column(col)
        for name in sorted(builtin_protocols()):
            proto = load_protocol(name)
            table.add_row(name, str(len(proto.sessions)), str(len(proto.concepts)), proto.description)
        table.add_row("folder", "one per subfolder", "", "built in: your own folder (--data PATH), one subfolder of images per concept, optional concepts.yaml")
        console.print(table)
    else:
        raise LfsbenchError(f"`lfsbench ls {what}`: list 'methods' or 'protocols'.")


@app.command("validate")
@friendly_errors
def validate(
    protocol: str = typer.Argument(..., help="Protocol name or YAML file."),
    data: Optional[Path] = typer.Option(None, help="Where the protocol's dataset lives."),
):
    """Check a protocol and read all of its data, without loading any model or training."""
    from lfsbench.concepts import load_concepts
    from lfsbench.protocol import load_protocol

    proto = load_protocol(protocol, data=data)
    concepts = load_concepts(proto, data)
    learned = {name: t for t, names in enumerate(proto.sessions) for name in names}
    table = Table(title=f"protocol {proto.name}: {len(proto.sessions)} sessions, {len(concepts)} concepts")
    for col in ("session", "concept", "class", "token", "shots", "eval prompts"):
        table.add_column(col)
    for c in concepts:
        table.add_row(str(learned[c.name]), c.name, c.class_noun, c.token, str(len(c.images)), str(len(c.prompts)))
    console.print(table)
    per_concept = len(proto.evaluation.prompts) * proto.evaluation.images_per_prompt
    console.print(f"evaluation: {per_concept} images per concept per session; backbone {proto.backbone}, evaluator {proto.evaluator}")
    console.print("[green]valid[/]")


@toy_app.command("build")
@friendly_errors
def toy_build(
    output: Path = typer.Option(None, help="Where the weights go (default: the package's lfsbench/toy/weights)."),
    work: Path = typer.Option(Path(".lfsbench-toy-build"), help="Checkpoints; run again with the same folder to resume."),
    seed: int = typer.Option(0, help="Seed of the whole build."),
    stages: str = typer.Option("evaluator,vae,unet", help="Comma-separated stages to run."),
    max_steps: Optional[int] = typer.Option(None, help="Stop each stage after this many steps (smoke tests)."),
    recipe_file: Optional[Path] = typer.Option(None, "--recipe", help="A recipe JSON overriding the defaults."),
):
    """Train the toy evaluator and backbone from a seed (resumable; shows progress and time left)."""
    from lfsbench.toy import WEIGHTS_DIR
    from lfsbench.toy.build import STAGES, build
    from lfsbench.toy.recipe import Recipe

    recipe = Recipe.model_validate_json(recipe_file.read_text()) if recipe_file else Recipe()
    recipe = recipe.model_copy(update={"seed": seed})
    chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
    unknown = set(chosen) - set(STAGES)
    if unknown:
        raise LfsbenchError(f"Unknown build stage(s) {sorted(unknown)}: the stages are {', '.join(STAGES)}.")
    out = output or WEIGHTS_DIR
    figures = build(recipe, out, work, chosen, max_steps)
    console.print(figures)
    console.print(f"weights written to [bold]{out}[/]; checkpoints in {work}")


@toy_app.command("check")
@friendly_errors
def toy_check(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line instead of a table."),
    out: Path = typer.Option(Path("toy-check"), help="Folder for the PNG grids."),
    quick: bool = typer.Option(False, help="Fewer images and training steps (a smoke test, not the gates)."),
    weights: Optional[Path] = typer.Option(None, help="Weights folder to check (default: the shipped ones)."),
    protocol: str = typer.Option("toy", help="Protocol whose concepts the concept gates use."),
    record: bool = typer.Option(False, help="Write the result as fitness.json beside the checked weights."),
):
    """Measure the toy world's fitness gates on the shipped weights and print them."""
    from lfsbench.toy import WEIGHTS_DIR
    from lfsbench.toy.check import run_check
    from lfsbench.toy.protocol_concepts import protocol_concepts

    concepts = protocol_concepts(protocol)
    result = run_check(concepts, out=out, quick=quick, weights=weights or WEIGHTS_DIR)
    if record:
        stamp = {"measured": time.strftime("%Y-%m-%d"), "protocol": protocol, "quick": quick}
        (Path(weights or WEIGHTS_DIR) / "fitness.json").write_text(json.dumps({**stamp, **result.as_dict()}, indent=2))
    if as_json:
        print(json.dumps(result.as_dict()))
    else:
        table = Table(title="toy world fitness")
        for col in ("gate", "value", "bound", "pass", "detail"):
            table.add_column(col)
        for g in result.gates:
            table.add_row(escape(g.name), f"{g.value:.3f}", f">= {g.bound:.2f}", "[green]yes[/]" if g.passed else "[red]NO[/]", g.detail)
        console.print(table)
        console.print(f"grids written to [bold]{out}[/]")
    if not result.passed:
        raise typer.Exit(1)


def main():
    app()


if __name__ == "__main__":
    main()
