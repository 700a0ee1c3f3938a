"""``zcli -f FILE --parallel N``: N batch lines in flight on the batch's one connection.

Worker threads run the lines through :class:`zcli.pipeline.PipelinedClient`; each line's
output and errors are kept and printed in the order of the lines. Without
``--continue-on-error`` no line starts once one has failed (the lines already in flight
finish and print). The exit status is the worst of the lines run. ``login``, ``logout``, a
console and, on a terminal without ``--yes``, a line that may ask for a confirmation run
alone, after every line before them has finished.
"""

from __future__ import annotations

import io
import queue
import threading
from collections import deque
from collections.abc import Iterable

from zcli import act
from zcli.batch import Line, run_line
from zcli.options import Options
from zcli.pipeline import PipelinedClient
from zcli.progress import Progress
from zcli.runner import Runner
from zmn.api.errors import EXIT_FAILED, EXIT_OK, ZmnError

ALONE = ("login", "logout", "console", "OpenVmConsole")


class LineRunner(Runner):
    """A runner for one line in flight: the batch's connection and catalogue, its own output."""

    def __init__(self, main: Runner) -> None:
        self.__dict__.update(main.__dict__)
        self.out, self.err = io.StringIO(), io.StringIO()
        self.progress = Progress(self.err)

    def close(self) -> None:
        """Never close the connection other lines are using (a late reply is dropped)."""


class Job:
    def __init__(self, line: Line, runner: Runner) -> None:
        self.line = line
        self.runner = LineRunner(runner)
        self.code = EXIT_OK
        self.ran = False
        self.done = threading.Event()

    def print(self, main: Runner) -> None:
        """The line's output and errors, each flushed at once (nothing written when empty)."""
        for mine, theirs in ((self.runner.out, main.out), (self.runner.err, main.err)):
            assert isinstance(mine, io.StringIO)  # noqa: S101
            text = mine.getvalue()
            if text:
                theirs.write(text)
                theirs.flush()


def alone(line: Line, on_terminal: bool) -> bool:
    """Lines that must not overlap others: they change the session or talk to a person
    (``on_terminal``: the batch runs where a confirmation could be asked)."""
    if line.error is not None:
        return False
    if any(word in ALONE for word in line.tokens[:3]):
        return True
    asks = on_terminal and not line.opts.yes
    return asks and any(word in act.DESTRUCTIVE for word in line.tokens)


def run_parallel(runner: Runner, opts: Options, lines: Iterable[Line]) -> int:
    runner.client_class = PipelinedClient
    stop = threading.Event()
    work: queue.Queue[Job | None] = queue.Queue()
    pending: deque[Job] = deque()
    status = EXIT_OK

    def worker() -> None:
        while (job := work.get()) is not None:
            try:
                if not stop.is_set():
                    job.ran = True
                    job.code = run_line(job.runner, job.line)
                    if job.code != EXIT_OK and not opts.continue_on_error:
                        stop.set()
            except Exception as exc:  # a bug in one line must not hang the batch
                job.runner.err.write(f"error: CLI.INTERNAL: {exc!r}\nat {job.line.where}\n")
                job.code, job.ran = EXIT_FAILED, True
                stop.set()
            finally:
                job.done.set()

    def finish(job: Job) -> None:
        nonlocal status
        job.done.wait()
        job.print(runner)
        if job.ran:
            status = max(status, job.code)

    terminal = act.on_terminal(runner.err)  # once: two system calls a line otherwise
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(opts.parallel)]
    try:
        for thread in threads:
            thread.start()
        for line in lines:
            while pending and pending[0].done.is_set():
                finish(pending.popleft())
            if stop.is_set():
                break
            if alone(line, terminal) or not _ready(runner, line):
                while pending:
                    finish(pending.popleft())
                if stop.is_set():
                    break
                code = run_line(runner, line)
                status = max(status, code)
                if code != EXIT_OK and not opts.continue_on_error:
                    break
                continue
            while len(pending) >= 2 * opts.parallel:
                finish(pending.popleft())
            job = Job(line, runner)
            pending.append(job)
            work.put(job)
        while pending:
            finish(pending.popleft())
    finally:
        for _thread in threads:
            work.put(None)
    return status


def _ready(runner: Runner, line: Line) -> bool:
    """Connect and load the catalogue before lines share them; False: this line fails
    alone (its error is reported where it stands) and the next one tries again."""
    if line.error is not None or (runner.client is not None and runner._catalogue is not None):
        return True
    try:
        runner.catalogue()
    except ZmnError:
        return False
    return True
