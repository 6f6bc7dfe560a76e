"""The `lfsbench` command line: a thin typer layer over the library."""

from __future__ import annotations

import errno
import functools
import json
import math
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lfsbench.errors import LfsbenchError

app = typer.Typer(
    help="lfsbench: lifelong few-shot customization benchmark for text-to-image diffusion.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
toy_app = typer.Typer(
    help="The embedded toy world: build its models, check that they are fit for purpose.", no_args_is_help=True
)
app.add_typer(toy_app, name="toy")
console = Console()


def _storage_error(err: OSError) -> LfsbenchError | None:
    """A full disk, a folder that cannot be written or a path through a file, as one paragraph naming the file and
    the fix (None for other OS errors, which are bugs to see whole)."""
    where = f" {err.filename}" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return LfsbenchError(
            f"Cannot write{where}: {err.strerror}. Free space on that disk (or point --output/-O elsewhere) and run "
            "the same command again: a run resumes from its last finished session, and nothing half-written is kept."
        )
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.ENAMETOOLONG):
        return LfsbenchError(
            f"Cannot write or read{where}: {err.strerror}. Choose a folder you can write (--output/-O), or fix its "
            "permissions."
        )
    return None


def friendly_errors(fn):
    """Print an LfsbenchError (or a storage error: a full disk, a folder that cannot be written) as one paragraph (no
    traceback) and exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (LfsbenchError, OSError) as caught:
            err = caught if isinstance(caught, LfsbenchError) else _storage_error(caught)
            if err is None:
                raise
            # the message is plain text: paths may hold [brackets] and :names: that rich would read as markup
            console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, emoji=False)
            raise typer.Exit(2) from None

    return wrapper


@app.command("run")
@friendly_errors
def run(
    method: str | None = typer.Option(None, "--method", "-m", help="Method name (`lfsbench ls methods`)."),
    protocol: str | None = typer.Option(
        None, "--protocol", "-p", help="Protocol name or YAML file (`lfsbench ls protocols`; default: toy)."
    ),
    seed: int = typer.Option(0, help="Seed of training and generation."),
    output: Path | None = typer.Option(
        None, "--output", "-O", help="Run folder (default: runs/PROTOCOL/METHOD-seedN)."
    ),
    override: list[str] = typer.Option(
        [],
        "--set",
        "-o",
        help="KEY=VALUE: a method setting (steps=100) or a protocol field (evaluation.images_per_prompt=4).",
    ),
    data: Path | None = typer.Option(
        None,
        help="Where the protocol's dataset lives (else $LFSBENCH_CC101, $LFSBENCH_DREAMBOOTH, "
        "$LFSBENCH_DATA, or the protocol's default).",
    ),
    backbone: str | None = typer.Option(
        None, help="Replace the protocol's backbone: toy, a diffusers folder, sd-v1-5, sd-random[:RES[:DTYPE]]."
    ),
    evaluator: str | None = typer.Option(
        None, help="Replace the protocol's evaluator: toy, MODEL:PRETRAINED (ViT-B-32:openai), local-dir:PATH."
    ),
    resume: Path | None = typer.Option(
        None, help="Continue the run in this folder, with the settings it was started with."
    ),
    track: str | None = typer.Option(
        None, help="Also send each session's figures, the summary and image grids to mlflow, tensorboard or wandb."
    ),
    cache: bool = typer.Option(
        True, help="Share the base model's work with other runs ($LFSBENCH_CACHE, else ~/.cache/lfsbench)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the run's resolved identity and folder, and run nothing."
    ),
):
    """Run one method through a lifelong protocol; rerunning the same command resumes it."""
    from lfsbench.identity import resolve_identity
    from lfsbench.method import canonical_method
    from lfsbench.protocol import parse_settings
    from lfsbench.results import RunFolder
    from lfsbench.runner import Runner

    if resume is not None:
        identity = RunFolder(resume).identity()
        if identity is None:
            raise LfsbenchError(f"{resume} holds no lfsbench run (no config.json); --resume needs a run folder.")
        given = [
            flag
            for flag, value, kept in (
                ("-m/--method", method, identity.method.name),
                ("-p/--protocol", protocol, identity.protocol.name),
                ("-o/--set", override, None),
                ("--data", data, None),
                ("--backbone", backbone, None),
                ("--evaluator", evaluator, None),
                ("--output", output, None),
            )
            if value and value != kept
        ]
        if given:
            raise LfsbenchError(
                f"--resume continues the run in {resume} exactly as it was started ({identity.method_name} on "
                f"{identity.protocol.name}, seed {identity.seed}); {', '.join(given)} would change it, so nothing was "
                "run. Drop them, or start a new run (without --resume) in another folder."
            )
        output = resume
    else:
        if method is None:
            raise LfsbenchError("Name the method: lfsbench run -m METHOD (`lfsbench ls methods` lists them).")
        models = [f"{k}={v}" for k, v in (("backbone", backbone), ("evaluator", evaluator)) if v]
        settings = parse_settings(override + models)
        # unknown names and settings fail here, before any model loads
        identity = resolve_identity(canonical_method(method), protocol or "toy", settings, seed, data)
        output = output or identity.default_folder(Path("runs"))
    if dry_run:
        console.print(identity_table(identity, output))
        return
    console.print(f"run folder: [bold]{escape(str(output))}[/] (identity {identity.key()})")
    summary = Runner(identity, output, track=track, cache=cache).run()
    console.print(
        summary_table(
            summary,
            f"{identity.method_name} on {identity.protocol.name} (seed {identity.seed}), "
            f"after session {summary['sessions_finished'] - 1}",
        )
    )
    if "IA_dino" not in summary:
        console.print(
            "IA_dino is not computed: the protocol names no DINO model (its `dino` field; the toy world has none, "
            "docs/metrics.md). On real data: -o dino=facebook/dino-vits16 with the model in the local cache."
        )
    console.print(f"results in [bold]{escape(str(output))}[/] (summary.json, sessions/, ia_matrix.csv, images/)")


def identity_table(identity, output: Path) -> Table:
    """What `run --dry-run` shows: every resolved field of the run's identity (the folder's config.json to be), the
    folder, and what the folder holds now."""
    from lfsbench.identity import field_order, flat_content
    from lfsbench.results import RunFolder

    folder = RunFolder(output)
    total = len(identity.protocol.sessions)
    if not folder.is_run():
        holds = folder.path.is_dir() and any(folder.path.iterdir())
        state = "holds files but no run: `lfsbench run` refuses it" if holds else "empty: the run starts at session 0"
    elif folder.is_exported():
        state = "an exported copy: `lfsbench run` refuses it (copies never resume)"
    elif folder.identity() is not None and not folder.identity().same_run(identity):
        state = "holds another run: `lfsbench run` refuses it"
    else:
        done = len(folder.finished_sessions())
        state = "finished" if folder.is_finished(total) else f"{done} of {total} sessions finished: it resumes"
    table = Table(title=f"{escape(identity.label)} on {escape(identity.protocol.name)}, seed {identity.seed} (dry run)")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    table.add_row("folder", f"{escape(str(output))} ({state})")
    table.add_row("identity", identity.key())
    for key, value in sorted(flat_content(identity).items(), key=lambda kv: field_order(kv[0])):
        table.add_row(escape(key), escape(json.dumps(value) if not isinstance(value, str) else value))
    return table


def summary_table(summary: dict, title: str) -> Table:
    """`lfsbench run`'s closing table: the metrics of the `cli` view (evaluation/metrics.py) that the run has."""
    from lfsbench.evaluation.metrics import METRICS, in_view

    table = Table(title=title)
    for col in ("metric", "value", "95% interval", "better", "what it is"):
        table.add_column(col, overflow="fold")
    for key in in_view("cli"):
        m = METRICS[key]
        value = summary.get(key, summary.get("cost", {}).get(key))
        if value is None:  # e.g. the in-context control of a method without one
            continue
        point = value["value"] if isinstance(value, dict) else value
        interval = f"[{m.format(value['ci_low'])}, {m.format(value['ci_high'])}]" if m.has_interval else ""
        better = {True: "higher", False: "lower", None: ""}[m.higher_is_better]
        table.add_row(key, m.format(point), interval, better, escape(m.definition))
    if "keeps" in summary:
        table.add_row(
            "keeps", escape(summary["keeps"]), "", "", "what the method keeps between sessions besides its weights"
        )
    return table


@app.command("report")
@friendly_errors
def report(
    runs: list[Path] = typer.Argument(..., help="Run folders, or folders that contain them (e.g. runs/toy)."),
    output: Path = typer.Option(Path("report"), "--output", "-O", help="Report folder."),
    concept: list[str] = typer.Option(
        [], "--concept", help="Concepts shown in the image grids (default: the first three)."
    ),
    study_spec: Path | None = typer.Option(
        None,
        "--study",
        help="Study spec whose `primary:` comparisons are Holm-corrected together (default: every comparison is "
        "exploratory, Benjamini-Hochberg).",
    ),
):
    """Tables, forgetting curves, IA heatmaps, image grids and an HTML page from stored runs (never trains)."""
    from lfsbench.report import make_report
    from lfsbench.study import load_study

    primary = load_study(study_spec).primary_family() if study_spec else None
    page = make_report(runs, output, concept or None, primary)
    console.print(f"report in [bold]{output}[/]: open {page}")


@app.command("export")
@friendly_errors
def export(
    runs: list[Path] = typer.Argument(..., help="Run folders, or folders that contain them (a study's)."),
    output: Path = typer.Option(..., "--output", "-O", help="Folder the copies go to (the runs' layout is kept)."),
    images: bool = typer.Option(True, help="Keep the image grids (--no-images: numbers only, about 30% of the size)."),
):
    """Copy finished runs without their method states: every score, table and image, for reports, in a fraction of
    the size (a study gathered from machines or sessions that share no disk; results to publish)."""
    from lfsbench.report.runs import find_runs
    from lfsbench.results import refuse_overlap

    for root in runs:  # before anything is copied: the output may neither hold nor sit inside what is exported
        refuse_overlap(root, output)
    exported, unfinished = [], []
    for root in runs:
        for run in find_runs([root]):
            if not run.folder.is_finished(len(run.identity.protocol.sessions)):
                unfinished.append(run.path)
                continue
            rel = Path(run.path.name) if run.path == Path(root) else run.path.relative_to(root)
            exported.append(run.folder.export(output / rel, images))
    for path in unfinished:
        console.print(f"[yellow]not exported[/] {escape(str(path))}: not finished (rerun its command to finish it)")
    if not exported:
        raise LfsbenchError(f"No finished runs under {', '.join(map(str, runs))}: nothing was exported.")
    size = sum(f.stat().st_size for path in exported for f in path.rglob("*") if f.is_file())
    left_out = "no method states" + ("" if images else ", no images")
    console.print(f"{len(exported)} runs exported to [bold]{output}[/] ({size / 1e6:.1f} MB, {left_out})")


@app.command("check")
@friendly_errors
def check(
    runs: list[Path] = typer.Argument(..., help="Run folders, or folders that contain them."),
    thresholds: Path = typer.Option(..., "--thresholds", help="Thresholds file (tests/regression/thresholds.yaml)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the checks as JSON (a list of {check, value, measured, bound, passed}) instead."
    ),
    junit: Path | None = typer.Option(None, "--junit", help="Also write the checks as a JUnit XML file, for CI."),
):
    """The regression gate: compare stored runs with a thresholds file; exit 1 if any check fails."""
    import math

    from lfsbench.gate import junit_xml, load_thresholds, run_checks
    from lfsbench.results import atomic_write_text

    results = run_checks(runs, load_thresholds(thresholds))
    failed = [r for r in results if not r["passed"]]
    if junit is not None:
        try:
            junit.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(junit, junit_xml(results, thresholds))
        except OSError as err:
            raise LfsbenchError(f"Cannot write the JUnit file {junit} ({err.strerror}); pass a writable path.") from err
    if as_json:
        plain = [{**r, "measured": r["measured"] if math.isfinite(r["measured"]) else None} for r in results]
        typer.echo(json.dumps(plain, indent=1))  # strict JSON: a figure that could not be measured is null
        if failed:
            raise typer.Exit(1)
        return
    table = Table(title=f"lfsbench check against {thresholds}")
    for col in ("check", "value", "measured", "bound", "result"):
        table.add_column(col, overflow="fold")  # CI logs are 80 columns wide: wrap metric names, never cut them
    for r in results:
        table.add_row(
            escape(r["check"]),
            escape(r["value"]),
            f"{r['measured']:.3f}",
            escape(r["bound"]),
            "[green]pass[/]" if r["passed"] else "[red]FAIL[/]",
        )
    console.print(table)
    if failed:
        named = "; ".join(f"{r['check']} ({r['value']} = {r['measured']:.3f}, needs {r['bound']})" for r in failed)
        console.print(f"[red]{len(failed)} of {len(results)} checks failed:[/] " + escape(named))
        raise typer.Exit(1)
    console.print(f"all {len(results)} checks passed")


@app.command("study")
@friendly_errors
def study(
    spec: Path = typer.Argument(..., help="Study spec (YAML) or a name under reports/ (ablation, scalability, seeds)."),
    output: Path | None = typer.Option(
        None, "--output", "-O", help="Report folder (default: the study's run folder/report)."
    ),
    report: bool = typer.Option(True, help="Write the study's report once every run is finished."),
    shard: str = typer.Option(
        "1/1",
        help="K/N: run only every N-th run from the K-th, to split a study over N processes or machines "
        "that share its run folder; the report is written by whichever finds every run finished.",
    ),
    executor: str = typer.Option(
        "local",
        help="Where the runs execute: local (one after another here), ray (Ray tasks: --address of a cluster, "
        "else a local one), submitit (one Slurm job array; options in the spec's slurm: section). Results land "
        "in the same run folders whichever runs them.",
    ),
    workers: int | None = typer.Option(
        None, help="ray on CPUs: runs at once (default: one per 2 cores); with GPUs, one run per GPU."
    ),
    address: str | None = typer.Option(None, help="ray: the cluster to join (e.g. auto); default: start one here."),
    threads: int | None = typer.Option(
        None, help="torch threads per run (default: the run's share of the cores on ray and submitit)."
    ),
    track: str | None = typer.Option(
        None, help="Also send each session's figures, the summary and image grids to mlflow, tensorboard or wandb."
    ),
    cache: bool = typer.Option(
        True,
        help="Runs share the base model's work ($LFSBENCH_CACHE, else ~/.cache/lfsbench); --no-cache: each its own.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Check every cell and print each run's identity, folder and state; run nothing."
    ),
):
    """Run every cell of a study (skipping finished runs, resuming partial ones), then report it."""
    from lfsbench.report import make_report
    from lfsbench.results import RunFolder
    from lfsbench.study import load_study, parse_shard, plan, run_study, unfinished_runs

    loaded = load_study(spec)
    part = parse_shard(shard)
    if dry_run:
        table = Table(title=f"study {escape(loaded.name)}: the runs it asks for (nothing is run)")
        for col in ("run", "method and settings", "seed", "identity", "folder", "state"):
            table.add_column(col, overflow="fold")
        planned = plan(loaded)
        for i, run in enumerate(planned):
            state = RunFolder(run.output)
            done = len(state.finished_sessions()) if state.is_run() else 0
            total = len(run.identity.protocol.sessions)
            shown = "finished" if run.finished else (f"{done} of {total} sessions" if done else "to run")
            mine = "" if i % part[1] == part[0] - 1 else " (another shard)"
            table.add_row(
                str(i + 1), escape(run.identity.label), str(run.identity.seed), run.identity.key(),
                escape(str(run.output)), shown + mine,
            )  # fmt: skip
        console.print(table)
        return
    folders = run_study(
        loaded, console, part, executor, workers=workers, address=address, threads=threads, track=track, cache=cache
    )
    root = folders[0].parent.parent
    console.print(f"{len(folders)} runs of study {loaded.name!r} in [bold]{root}[/]")
    if not report:
        return
    unfinished = unfinished_runs(loaded) if part != (1, 1) else []
    if unfinished:
        console.print(f"{len(unfinished)} runs of other shards are not finished: no report yet ({unfinished[0]}, ...)")
        return
    by_protocol = sorted({f.parent for f in folders})  # one report per protocol: runs of different ones do not compare
    for folder in by_protocol:
        out = (output or root / "report") / (folder.name if len(by_protocol) > 1 else "")
        page = make_report([f for f in folders if f.parent == folder], out, primary=loaded.primary_family())
        console.print(f"report of {folder.name}: [bold]{page}[/]")


@app.command("track")
@friendly_errors
def track_command(
    runs: list[Path] = typer.Argument(..., help="Run folders, or folders holding run folders (a study's)."),
    to: str = typer.Option(..., "--to", help="mlflow, tensorboard or wandb."),
):
    """Send finished sessions of stored runs to a tracker (what --track does while a run runs)."""
    from lfsbench.report.runs import find_runs
    from lfsbench.tracking import Tracker, check_tracker

    check_tracker(to)
    found = find_runs(runs)
    for run in found:
        tracker = Tracker(to, run.path)
        before = len(tracker.sent())
        sessions = tracker.replay()
        already = f" ({before} sent before, not sent again)" if before else ""
        console.print(f"{escape(str(run.path))}: {sessions} sessions sent to {to}{already}")
    console.print(f"{len(found)} runs sent to {to}")


@app.command("data")
@friendly_errors
def data_command(
    name: str | None = typer.Argument(None, help="cc101 or dreambooth (default: both)."),
    data: Path | None = typer.Option(
        None,
        help="The folder of NAME, or hf:REPO for a hub dataset in the local Hugging Face cache (dreambooth) "
        "(default: $LFSBENCH_CC101 / $LFSBENCH_DREAMBOOTH, else ~/.cache/lfsbench/...).",
    ),
    fetch: bool = typer.Option(
        False, "--fetch", help="Fetch NAME into its folder (needs the hub and GitHub: a connected machine)."
    ),
):
    """Where each real dataset is expected, whether it is there and complete; --fetch gets one."""
    from lfsbench import datasets

    if name is not None and name not in datasets.published():
        raise LfsbenchError(f"`lfsbench data {name}`: the datasets are {', '.join(datasets.published())}.")
    if (data is not None or fetch) and name is None:
        raise LfsbenchError("--data and --fetch need a dataset name: `lfsbench data cc101 --data PATH [--fetch]`.")
    kinds = [name] if name else datasets.published()

    def where(kind: str) -> tuple[Path, str]:
        return datasets.where(kind, data)

    if fetch:
        root, _ = where(name)
        console.print(f"fetching {name} into {root} ...")
        datasets.fetch(name, root)
    table = Table(title="datasets")
    for col in ("dataset", "folder (from)", "metadata", "concepts", "with images", "images"):
        table.add_column(col)
    for kind in kinds:
        root, origin = where(kind)
        s = datasets.status(kind, root)
        table.add_row(
            kind,
            f"{root} ({origin})",
            "yes" if s["metadata"] else "[red]missing[/]",
            str(s["concepts"]),
            str(s["with_images"]),
            str(s["images"]),
        )
    console.print(table)
    for kind in kinds:
        console.print(f"{kind}: {datasets.dataset_spec(kind).source}")
    console.print(
        "Protocols cc101, cc101-full, dreambooth and dreambooth-30 read these folders; "
        "`lfsbench data NAME --fetch` fetches one on a connected machine."
    )


@app.command("ls")
@friendly_errors
def ls(
    what: str = typer.Argument(..., help="methods, protocols, metrics, executors, trackers, backbones or evaluators."),
    name: str | None = typer.Argument(None, help="With `methods`: one method's every setting, default and preset."),
    as_json: bool = typer.Option(False, "--json", help="Print the listing as JSON (one object per row)."),
):
    """List what is registered: methods (with their settings), protocols, metrics, executors, trackers, backbones
    and evaluators."""
    from lfsbench import catalog

    if what not in catalog.LISTINGS:
        raise LfsbenchError(f"`lfsbench ls {what}`: list one of {', '.join(catalog.KINDS)}.")
    if name is not None and what != "methods":
        raise LfsbenchError(f"`lfsbench ls {what} {name}`: only `ls methods NAME` shows one entry in full.")
    rows = catalog.method_settings(name) if name else catalog.LISTINGS[what]()
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table(title=f"{what}: {name}" if name else what)
    for col in rows[0] if rows else ():
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(v)) for v in row.values()))
    console.print(table)
    if what == "methods" and not name:
        console.print(
            "`lfsbench ls methods NAME` shows one method's settings in full. A method of your own runs without "
            "installing: --method path/to/file.py:ClassName (docs/custom-methods.md)."
        )


@app.command("bench")
@friendly_errors
def bench_command(
    method: list[str] = typer.Option(
        [],
        "--method",
        "-m",
        help="Methods to time (repeat; default: every built-in method and anchor, not the ceilings and controls).",
    ),
    protocol: str = typer.Option("toy", "--protocol", "-p", help="Protocol: its first concept, evaluation plan."),
    backbone: str | None = typer.Option(
        None, help="Replace the protocol's backbone (e.g. sd-random:512 or sd-random:512:bf16 on a GPU)."
    ),
    steps: int = typer.Option(20, help="Training steps of each timed session."),
    override: list[str] = typer.Option(
        [],
        "--set",
        "-o",
        help="KEY=VALUE: a protocol field (evaluation.images_per_prompt=4, evaluation.steps=10), or a method setting "
        "given to each timed method that has it (class_images=8).",
    ),
    output: Path = typer.Option(Path("runs/bench/bench.csv"), "--output", "-O", help="Where the CSV goes."),
):
    """Training steps, generated images and evaluator images per second, against diffusers' example-script loop."""
    import pandas as pd

    from lfsbench.bench import bench, timed_by_default
    from lfsbench.concepts import load_concepts
    from lfsbench.method import canonical_method, method_class
    from lfsbench.models import load_backbone, load_evaluator
    from lfsbench.protocol import load_protocol, parse_overrides

    protocol_overrides, method_settings = parse_overrides(override + ([f"backbone={backbone}"] if backbone else []))
    proto = load_protocol(protocol, protocol_overrides)
    methods = [canonical_method(m) for m in method] or timed_by_default()
    known = {k for name in methods for k in method_class(name).Config.model_fields}
    unknown = sorted(set(method_settings) - known)
    if unknown:
        raise LfsbenchError(
            f"lfsbench bench: {', '.join(unknown)} is neither a protocol field nor a setting of the methods timed "
            f"({', '.join(methods)}). Give protocol fields (-o evaluation.steps=10) or method settings that one of "
            "them has (-o class_images=8: each method that has it gets it)."
        )
    evaluator = load_evaluator(proto.evaluator)
    loaded = [load_backbone(proto.backbone)]  # its resolution sizes the concept's images; bench uses it first
    concept = load_concepts(proto, resolution=loaded[0].resolution)[0]

    def fresh_backbone():
        return loaded.pop() if loaded else load_backbone(proto.backbone)

    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()

    def write(rows) -> None:  # after each row: a bench stopped early (a time limit) keeps what it measured
        rows.to_csv(output, index=False)

    def say(what: str) -> None:  # a line per stage where no live display shows it (a log file, a batch job)
        console.print(f"[{time.time() - started:6.0f} s] {what}", highlight=False)

    def timed(progress) -> pd.DataFrame:
        return bench(methods, proto, fresh_backbone, evaluator, concept, steps, progress, method_settings, write)

    if console.is_terminal:
        with console.status("timing") as status:
            table = timed(status.update)
    else:
        table = timed(say)
    shown = Table(
        title=f"lfsbench bench: {proto.backbone} backbone, {table.threads.iloc[0]} torch threads, "
        f"peak {table.peak_gflops.iloc[0]:.0f} GFLOP/s (a large matrix product)"
    )
    columns = ("method", "stage", "lfsbench", "reference", "ratio", "unit", "GFLOP/unit (ours, ref.)", "of peak", "MB")
    for col in columns:
        shown.add_column(col)
    for row in table.itertuples():
        shown.add_row(
            row.method,
            row.stage,
            f"{row.lfsbench_per_s:.2f}",
            f"{row.reference_per_s:.2f}",
            f"{row.ratio:.2f}x",
            row.unit,
            f"{row.lfsbench_gflop_per_unit:.3g}, {row.reference_gflop_per_unit:.3g}",
            f"{row.lfsbench_fraction_of_peak:.0%}, {row.reference_fraction_of_peak:.0%}",
            f"{row.peak_memory_mb:,.0f}",
        )
    console.print(shown)
    console.print(f"written: {output}")


@app.command("show")
@friendly_errors
def show(
    protocol: str = typer.Argument("toy", help="Protocol name or YAML file (`lfsbench ls protocols`)."),
    override: list[str] = typer.Option(
        [], "--set", "-o", help="KEY=VALUE: a protocol field, as `lfsbench run -o` takes it."
    ),
    data: Path | None = typer.Option(None, help="The data folder (needed by the `folder` protocol)."),
):
    """Print a protocol as it resolves (includes merged, overrides applied, every default filled in): every field
    `-o` accepts, nested fields dotted (`steps` under `evaluation:` is `-o evaluation.steps=50`)."""
    import yaml

    from lfsbench.protocol import load_protocol, parse_overrides

    protocol_overrides, method_settings = parse_overrides(override)
    if method_settings:
        raise LfsbenchError(
            f"show prints a protocol; {', '.join(method_settings)} is not a protocol field. `lfsbench ls methods "
            "NAME` shows a method's settings."
        )
    resolved = load_protocol(protocol, protocol_overrides, data=data).model_dump(mode="json")
    typer.echo(yaml.safe_dump(resolved, sort_keys=False, width=120).rstrip())


def _split_note(proto, concepts) -> str:
    """`validate`'s line on a real-data split: its order and fold, and the concepts left with few references."""
    from lfsbench.datasets import MIN_REFERENCES, folds

    note = f"split: {proto.split.order} order, fold {proto.split.fold}"
    if proto.references < MIN_REFERENCES:
        return note + f"; references: {proto.references} holds out fewer than {MIN_REFERENCES} images of every concept"
    few = [c for c in concepts if len(c.references) < MIN_REFERENCES]
    if not few:
        return note + f"; every concept keeps at least {MIN_REFERENCES} held-out references"
    named = ", ".join(f"{escape(c.name)} {len(c.references)}" for c in few[:6]) + (", ..." if len(few) > 6 else "")
    # below the `references` cap every image after the shots is held out, so a concept has shots + references images
    cycle = math.lcm(*(folds(len(c.images) + len(c.references), proto.shots) for c in few))
    return (
        f"{note}; {len(few)} of {len(concepts)} concepts keep fewer than {MIN_REFERENCES} held-out references in this "
        f"fold ({named}): read their IA over folds 0..{cycle - 1} (-o split.fold=F), over which each of their images "
        "is held out equally often"
    )


@app.command("validate")
@friendly_errors
def validate(
    protocol: str = typer.Argument(..., help="Protocol name or YAML file."),
    data: Path | None = typer.Option(None, help="Where the protocol's dataset lives."),
    override: list[str] = typer.Option(
        [], "--set", "-o", help="KEY=VALUE: a protocol field, as `lfsbench run` takes it (-o shots=2)."
    ),
):
    """Check a protocol and read all of its data (each concept's shots and held-out references), without loading
    any model or training."""
    from lfsbench.concepts import load_concepts, load_pairs
    from lfsbench.datasets import data_root, dataset_spec
    from lfsbench.protocol import load_protocol, parse_overrides

    protocol_overrides, method_settings = parse_overrides(override)
    if method_settings:
        raise LfsbenchError(
            f"validate checks a protocol; {', '.join(method_settings)} is not a protocol field (fields: "
            "shots, references, sessions, evaluation.*, ...). Pass method settings to `lfsbench run`."
        )
    proto = load_protocol(protocol, protocol_overrides, data=data)
    learned = proto.learned_in()
    if dataset_spec(proto.source.kind).published:
        _describe_dataset(proto, data_root(proto, data))
    concepts = load_concepts(proto, data, resolution=64)  # reads (and so checks) every image
    table = Table(title=f"protocol {escape(proto.name)}: {len(proto.sessions)} sessions, {len(concepts)} concepts")
    for col in ("session", "concept", "class", "token", "shots (train)", "references (held out)", "eval prompts"):
        table.add_column(col)
    for c in concepts:
        table.add_row(
            str(learned[c.name]),
            escape(c.name),
            escape(c.class_noun),
            escape(c.token),
            str(len(c.images)),
            str(len(c.references)),
            str(len(c.prompts)),
        )
    console.print(table)
    if proto.source.kind != "toy":
        console.print(_split_note(proto, concepts))
    per_concept = sum(len(c.prompts) for c in concepts) / len(concepts) * proto.evaluation.images_per_prompt
    when = (
        f"every concept learned so far after sessions {', '.join(map(str, proto.evaluation.checkpoints))} "
        f"and the last, "
        "the concept just learned after the others"
        if proto.evaluation.checkpoints
        else "every concept learned so far after every session"
    )
    console.print(
        f"evaluation: {per_concept:.0f} images per concept, {when}; backbone {proto.backbone}, evaluator "
        f"{proto.evaluator}, DINO {proto.dino or 'none (no IA_dino)'}"
    )
    pairs = load_pairs(proto, concepts, data)  # reads (and so checks) the published pair list where there is one
    if proto.multi_concept is not None:
        named = ", ".join(escape(p.name) for p in pairs[:6]) + (", ..." if len(pairs) > 6 else "")
        console.print(
            f"multi-concept: {len(pairs)} pairs of this protocol's concepts, each scored once both are learned"
            + (f" ({named})" if pairs else "")
        )
    console.print("[green]valid[/]")


def _describe_dataset(proto, root: Path):
    """What a real dataset folder holds, and which of the protocol's concepts lack images (then an error)."""
    from lfsbench.datasets import dataset_spec

    spec = dataset_spec(proto.source.kind)
    available = spec.read(root)
    nouns = {c.class_noun for c in available.values()}
    prompt_files = {c.prompt_file for c in available.values()}
    prompt_lists = {tuple(c.prompts) for c in available.values()}
    with_images = [c for c in available.values() if c.images]
    console.print(
        f"{proto.source.kind} data in {root}: {len(available)} concepts, {len(nouns)} classes, "
        f"{len(prompt_files)} prompt files with {len(prompt_lists)} distinct prompt lists, "
        f"{sum(len(c.images) for c in with_images)} images in {len(with_images)} of {len(available)} concept folders"
    )
    missing = [name for name in proto.concepts if name in available and not available[name].images]
    if missing:
        table = Table(title=f"protocol {proto.name}: concepts without images")
        for col in ("concept", "class", "prompts", "expected images in"):
            table.add_column(col)
        for name in missing:
            c = available[name]
            table.add_row(name, c.class_noun, f"{len(c.prompts)} ({c.prompt_file.name})", str(c.image_dir))
        console.print(table)
        raise LfsbenchError(
            f"The metadata of {proto.source.kind} is complete, but the images of {len(missing)} of the "
            f"protocol's {len(proto.concepts)} concepts are missing. {spec.images_hint}"
        )


@toy_app.command("build")
@friendly_errors
def toy_build(
    output: Path = typer.Option(
        None, "--output", "-O", help="Where the weights go (default: the package's lfsbench/toy/weights)."
    ),
    work: Path = typer.Option(
        Path(".lfsbench-toy-build"), help="Checkpoints; run again with the same folder to resume."
    ),
    seed: int = typer.Option(0, help="Seed of the whole build."),
    stages: str = typer.Option("evaluator,vae,unet", help="Comma-separated stages to run."),
    max_steps: int | None = typer.Option(None, help="Stop each stage after this many steps (smoke tests)."),
    recipe_file: Path | None = typer.Option(None, "--recipe", help="A recipe JSON overriding the defaults."),
):
    """Train the toy evaluator and backbone from a seed (resumable; shows progress and time left)."""
    from pydantic import ValidationError

    from lfsbench.toy import WEIGHTS_DIR
    from lfsbench.toy.build import STAGES, build
    from lfsbench.toy.recipe import Recipe

    try:
        recipe = Recipe.model_validate_json(recipe_file.read_text()) if recipe_file else Recipe()
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'recipe'}: {e['msg']}" for e in error.errors())
        raise LfsbenchError(
            f"The build recipe {recipe_file} is not valid ({problems}). Fix it; every field and its default is in "
            "lfsbench/toy/recipe.py, and docs/toyworld.md gives the recipes of the builds so far."
        ) from None
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
    out: Path = typer.Option(Path("toy-check"), "--output", "-O", "--out", help="Folder for the PNG grids."),
    quick: bool = typer.Option(False, help="Fewer images and training steps (a smoke test, not the gates)."),
    weights: Path | None = typer.Option(
        None, help="Weights folder to check (default: the shipped models the protocol names, e.g. toy-v2)."
    ),
    protocol: str = typer.Option("toy", help="Protocol whose concepts and prompts the gates use."),
    record: bool = typer.Option(False, help="Write the result as fitness.json beside the checked weights."),
    sampler: str | None = typer.Option(
        None, help="Evaluation sampler the backbone's gates generate with (ddim, dpmsolver++; default: the protocol's)."
    ),
    steps: int | None = typer.Option(None, min=1, help="Sampling steps (default: the protocol's evaluation.steps)."),
):
    """Measure the toy world's fitness gates on the shipped weights and print them. The backbone's gates sample as
    the protocol's evaluation does, unless --sampler/--steps say otherwise (to find the fastest adequate setting)."""
    from lfsbench.protocol import load_protocol
    from lfsbench.toy import NAMED_WEIGHTS
    from lfsbench.toy.check import run_check
    from lfsbench.toy.protocol_concepts import protocol_concepts

    concepts = protocol_concepts(protocol)
    proto = load_protocol(protocol)
    weights = weights or NAMED_WEIGHTS.get(proto.backbone, NAMED_WEIGHTS["toy"])  # the protocol's own toy models
    plan = proto.evaluation
    sampler, steps = sampler or plan.sampler, steps or plan.steps
    if record and quick:
        raise LfsbenchError(
            "--record writes the fitness the protocol's runs rely on, which only a full check measures: drop --quick "
            "(a smoke test, not the gates) or --record."
        )
    if record and (sampler, steps) != (plan.sampler, plan.steps):
        raise LfsbenchError(
            f"--record writes the fitness the {protocol} protocol's runs rely on, so it measures at the protocol's "
            f"sampling ({plan.sampler}, {plan.steps} steps), not at --sampler/--steps. Drop --record to explore "
            "another setting, or change the protocol's evaluation.sampler/steps and record that."
        )
    result = run_check(
        concepts,
        out=out,
        quick=quick,
        weights=weights,
        prompts=list(plan.prompts),
        sampler=sampler,
        steps=steps,
        guidance=plan.guidance,
        eta=plan.eta if sampler == "ddim" else 0.0,  # DDIM's alone
        precision=plan.precision,
    )
    if record:
        from lfsbench.fingerprint import folder_fingerprint

        stamp = {
            "measured": time.strftime("%Y-%m-%d"),
            "protocol": protocol,
            "quick": quick,
            "weights_sha256": folder_fingerprint(Path(weights)),  # what passed (tests compare it)
        }
        (Path(weights) / "fitness.json").write_text(json.dumps({**stamp, **result.as_dict()}, indent=2))
    if as_json:
        print(json.dumps(result.as_dict()))
    else:
        table = Table(title="toy world fitness")
        for col in ("gate", "value", "bound", "pass", "detail"):
            table.add_column(col)
        for g in result.gates:
            table.add_row(
                escape(g.name),
                f"{g.value:.3f}",
                f"{'<=' if g.at_most else '>='} {g.bound:.2f}",
                "[green]yes[/]" if g.passed else "[red]NO[/]",
                g.detail,
            )
        console.print(table)
        console.print(f"grids written to [bold]{out}[/]")
    if not result.passed:
        raise typer.Exit(1)


def main():
    app()


if __name__ == "__main__":
    main()
