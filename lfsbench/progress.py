"""Rich progress bars used by every long-running command, and the plain lines that stand in for them in a log."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bar(transient: bool = False) -> Progress:
    """A progress display with counts, elapsed time and an estimate of the time left."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        transient=transient,
    )


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainLog:
    """One plain line per finished unit (a session), with the elapsed time and an estimate of the time left, for
    output that is not a terminal (a Slurm log, `nohup`), where a progress bar shows nothing until the end.

    The estimate is the mean time of the units finished in this process times the units left (later sessions, which
    evaluate more concepts, take longer: it is a lower bound)."""

    def __init__(self, console, what: str, total: int, done: int = 0):
        self.console, self.what, self.total, self.done = console, what, total, done
        self.started, self.done_here = time.time(), 0

    def finished(self, unit: str, detail: str = "") -> str:
        """Count one more unit finished; print its line where output is not a terminal; return the line."""
        self.done += 1
        self.done_here += 1
        elapsed = time.time() - self.started
        left = elapsed / self.done_here * (self.total - self.done)
        line = (
            f"{self.what}: {unit} finished ({self.done}/{self.total}){f', {detail}' if detail else ''}; "
            f"elapsed {_clock(elapsed)}, about {_clock(left)} left"
        )
        if not self.console.is_terminal:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        return line
