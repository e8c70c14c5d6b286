"""The page's model-bound jobs: a first-come queue with `concurrency` slots, a stop flag of
each job's own, and estimates of when a job starts and ends that count the jobs ahead.

A job's slot belongs to the thread doing its work, from the moment it starts until that
thread returns, whatever happens to the request that asked for it.  (Gradio's queue frees a
slot when it cancels the request's task, but a thread cannot be cancelled: Stop followed by
Generate within a second ran the stopped job to its end beside the new one, two jobs under a
concurrency of one, and the new job's start cleared the stop flag the old one polled.)  So:

- :meth:`JobQueue.submit` starts one thread per job; the thread waits for its turn (first
  come, first served) and a free slot, runs the work, and frees the slot when the work
  returns or raises;
- :meth:`JobQueue.stop` sets the flags of one owner's jobs: a waiting job leaves the queue
  without running, a running one ends at its next window (the work polls
  :attr:`Job.stop`);
- :meth:`JobQueue.follow` lets the request watch its job (an async iterator of
  :class:`Update`), and stops the job when the request goes away (cancelled or closed).

Nothing here knows Gradio.  Each job's start and end is logged (one line each), so the
server's log shows which jobs ran when.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from vab.errors import VabError, describe


class Stopped(VabError):
    """The user pressed Stop (or the request that asked for the job went away)."""


@dataclass(frozen=True)
class Update:
    """What a job's request shows while it waits or runs: one `line`, and the `fraction` of
    its work done (None: not started, or not measured in windows)."""

    line: str
    fraction: float | None = None


@dataclass(eq=False)
class Job:
    """One request's work.  `owner`: (browser session, tab); `label`: what it works on, for
    the log; `windows`: sampler windows it will take (0 when its work is not windowed);
    `steps`: decoding steps per window (1 for other work)."""

    id: int
    kind: str
    owner: tuple[str, str]
    label: str
    windows: int
    steps: int
    submitted: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)
    started: float | None = None
    ended: float | None = None
    done: int = 0  # windows finished
    last_window: float | None = None  # when the latest window finished
    result: Any = None
    error: BaseException | None = None

    def progress(self, done: int, total: int) -> None:
        """The work's progress callback: `done` of `total` windows finished (raises
        :class:`Stopped` when the flag is set, so the work ends here)."""
        self.done, self.windows, self.last_window = done, total, time.monotonic()
        if self.stop.is_set():
            raise Stopped(f"stopped after window {done} of {total}")

    @property
    def units(self) -> int:
        """Its work in window-steps (1 for work that is not windowed)."""
        return max(1, self.windows) * max(1, self.steps)


class Pace:
    """Seconds per window-step of each kind of job, from the jobs that finished: the mean
    of the last few, so the estimate follows the machine's load."""

    def __init__(self, memory: int = 8):
        self.memory = memory
        self._seen: dict[str, list[float]] = {}

    def record(self, job: Job) -> None:
        if job.error is None and job.started is not None and job.ended is not None:
            seen = self._seen.setdefault(job.kind, [])
            seen.append((job.ended - job.started) / job.units)
            del seen[: -self.memory]

    def seconds(self, job: Job) -> float | None:
        """The time `job` takes in all, or None before a job of its kind has finished."""
        seen = self._seen.get(job.kind)
        return sum(seen) / len(seen) * job.units if seen else None


class JobQueue:
    """`concurrency` jobs run at once and up to `queue_size` wait; first come, first served."""

    def __init__(self, concurrency: int = 1, queue_size: int = 16, log: Callable[[str], None] | None = None):
        self.concurrency = concurrency
        self.queue_size = queue_size
        self.pace = Pace()
        self._log = log or (lambda line: None)
        self._turns = threading.Condition()
        self._waiting: list[Job] = []
        self._running: list[Job] = []
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ jobs in
    def submit(self, kind: str, owner: tuple[str, str], label: str, work: Callable[[Job], Any],
               windows: int = 0, steps: int = 1) -> Job:
        """Queue `work(job)` and return its job at once; a VabError when the queue is full."""
        with self._turns:
            if len(self._waiting) >= self.queue_size:
                raise VabError(f"the queue is full ({len(self._waiting)} jobs wait); try again in a few minutes")
            job = Job(next(self._ids), kind, owner, label, windows, steps)
            self._waiting.append(job)
        threading.Thread(target=self._run, args=(job, work), name=f"vab-job-{job.id}", daemon=True).start()
        return job

    def stop(self, owner: tuple[str, str]) -> list[Job]:
        """Set the stop flag of every unfinished job of `owner`; returns them."""
        with self._turns:
            jobs = [j for j in self._waiting + self._running if j.owner == owner]
            for job in jobs:
                job.stop.set()
            self._turns.notify_all()  # a waiting job leaves at once
        return jobs

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        with self._turns:
            while not job.stop.is_set() and not self._my_turn(job):
                self._turns.wait()
            self._waiting.remove(job)
            if job.stop.is_set():
                job.error, job.ended = Stopped("stopped before it started"), time.monotonic()
                self._turns.notify_all()
                return
            job.started = time.monotonic()
            self._running.append(job)
            running = len(self._running)
        self._log(f"job {job.id} ({job.kind} {job.label}) started, {running} running")
        try:
            job.result = work(job)
        except BaseException as exc:  # noqa: BLE001 - handed to the request that watches the job
            job.error = exc
        finally:
            with self._turns:
                self._running.remove(job)
                job.ended = time.monotonic()
                self.pace.record(job)
                self._turns.notify_all()
            outcome = "done" if job.error is None else f"ended: {' '.join(describe(job.error).split())}"
            self._log(f"job {job.id} ({job.kind} {job.label}) {outcome} after {job.ended - job.started:.1f} s")

    def _my_turn(self, job: Job) -> bool:
        return self._waiting[0] is job and len(self._running) < self.concurrency

    # ------------------------------------------------------------------ jobs watched
    async def follow(self, job: Job, every: float = 0.5) -> AsyncIterator[Update]:
        """Updates of `job` (each only when it changed) until it has ended; then its
        :attr:`Job.result` / :attr:`Job.error` are set.  When the watching request goes away
        (its task cancelled, the iterator closed) the job is stopped."""
        last = None
        try:
            while job.ended is None:
                update = self.update(job)
                if update != last:
                    yield update
                    last = update
                await asyncio.sleep(every)
        except (asyncio.CancelledError, GeneratorExit):
            job.stop.set()
            with self._turns:
                self._turns.notify_all()
            raise

    def update(self, job: Job, now: float | None = None) -> Update:
        """One line on where `job` stands: its place in the queue and when it should start,
        or its windows and the time left; a stopping job says so."""
        now = time.monotonic() if now is None else now
        with self._turns:
            if job.started is None:
                return self._waiting_update(job, now)
            if job.stop.is_set():
                where = f"after window {job.done + 1} of {job.windows}" if job.windows else "in a moment"
                return Update(f"stopping: the job ends {where}", None)
            if not job.windows:
                return Update(f"{job.kind}: running", None)
            left = self._left(job, now)
            told = "timing the first window" if left is None else f"{_about(left)} left"
            return Update(f"window {min(job.done + 1, job.windows)} of {job.windows}: {told}", job.done / job.windows)

    def _left(self, job: Job, now: float) -> float | None:
        """Seconds until a running `job` ends: its own pace once a window finished, else the
        pace of past jobs; counted from its latest window, so it never runs below zero."""
        if job.done and job.last_window is not None:
            per_window = (job.last_window - job.started) / job.done
            return max(0.0, (job.windows - job.done) * per_window - (now - job.last_window))
        total = self.pace.seconds(job)
        return None if total is None else max(0.0, total - (now - job.started))

    def _waiting_update(self, job: Job, now: float) -> Update:
        if job.stop.is_set():
            return Update("stopping: the job leaves the queue", None)
        ahead = self._waiting[: self._waiting.index(job)]
        busy = len(self._running) + len(ahead) >= self.concurrency
        if not busy:
            return Update("starting", None)
        line = f"waiting for a free slot: {len(ahead) + 1} of {len(self._waiting)} in the queue"
        start = self._start_in(ahead, now)
        own = self.pace.seconds(job)
        if start is not None:
            line += f", starts in {_about(start)}"
            if own is not None:
                line += f" and takes {_about(own)}"
        return Update(line, None)

    def _start_in(self, ahead: list[Job], now: float) -> float | None:
        """Seconds until a slot is free for the job behind `ahead` (None if a time is unknown)."""
        slots = []
        for running in self._running:
            left = self._left(running, now) if not running.stop.is_set() else self._stopping_left(running, now)
            if left is None:
                return None
            slots.append(left)
        slots += [0.0] * (self.concurrency - len(slots))
        for waiting in ahead:
            own = self.pace.seconds(waiting)
            if own is None:
                return None
            slots.sort()
            slots[0] += own
        return min(slots)

    def _stopping_left(self, job: Job, now: float) -> float | None:
        """A stopping job ends with its current window."""
        if job.done and job.last_window is not None:
            per_window = (job.last_window - job.started) / job.done
            return max(0.0, per_window - (now - job.last_window))
        return self._left(job, now)


def _about(seconds: float) -> str:
    """An estimate as a person reads it: "a moment", "about 12 s", "about 3 min"."""
    if seconds < 1:
        return "a moment"
    if seconds < 90:
        return f"about {math.ceil(seconds)} s"
    return f"about {math.ceil(seconds / 60)} min"
