"""The terminal chat: ``pvebot shell`` and ``pvebot demo`` read commands line by line.

Replies and live job progress arrive through the shell outbox (see :mod:`adapters.shell.outbox`),
so a job run by a worker on another machine reports here just as it would in Slack.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TextIO

from sqlalchemy import Engine

from adapters import outages
from adapters.shell.outbox import OutboxEntry, OutboxReader
from core.chat import Answer, CommandRequest, ConversationRef, IdentityKey, MessageRef, Reply
from core.errors import BotError
from core.ids import show_job
from core.model import JobState
from core.ports import Clock, Notifier, UnitOfWorkFactory
from core.principal import Scope
from core.services import identity, jobs

PROMPT = "pvebot> "


class ShellDispatcher(Protocol):
    """The part of bot's dispatcher a shell session drives (as Slack's ``CommandDispatcher``)."""

    def handle(self, request: CommandRequest) -> Answer: ...

    def deliver(self, answer: Answer, post: Callable[[Reply], MessageRef]) -> MessageRef | None: ...


@dataclass(frozen=True)
class ShellPorts:
    """What a session talks to, handed in by bot (an adapter does not reach into the composition root)."""

    dispatcher: ShellDispatcher
    notifier: Notifier
    uow_factory: UnitOfWorkFactory
    clock: Clock
    engine: Engine  # the outbox's database, where replies and job progress arrive


class ShellSession:
    def __init__(
        self, ports: ShellPorts, *, email: str, out: TextIO, echo: bool = False, wait_seconds: float = 120.0,
        width: int | None = None,
    ) -> None:
        self.ports = ports
        self.out = out
        # None: the terminal's width when writing to one (it may be resized), else no wrapping
        self.width = width
        self.echo = echo
        self.wait_seconds = wait_seconds
        self.conversation = ConversationRef(platform="shell", channel=f"shell-{uuid.uuid4().hex[:12]}")
        self._reader = OutboxReader(ports.engine, self.conversation.channel)
        self._print_lock = threading.Lock()
        self._last_text: dict[str, str] = {}
        # job id -> the text of the last message about it that was shown
        self._job_text: dict[str, str] = {}
        self.email = ""
        self.identity = IdentityKey("shell", "local", "")
        self.switch_user(email)

    # ---- input ----

    def switch_user(self, email: str) -> None:
        self.identity = identity.link_local(self.ports.uow_factory, email, clock=self.ports.clock)
        self.email = email.lower()

    def run_line(self, line: str) -> None:
        line = line.strip()
        if not line or line.startswith("#"):
            return
        if self.echo:
            self._print(f"{self.email}> {line}")
        if line.startswith("/as"):
            email = line[3:].strip()
            try:
                self.switch_user(email)
                self._print(f"now acting as {self.email}")
            except BotError as e:
                self._print(f"❌ {e.user_message}")
            except Exception as e:
                self._print(f"❌ {outages.describe(e) or 'could not switch user (see the log)'}")
            return
        request = CommandRequest(identity=self.identity, text=line, conversation=self.conversation,
                                 request_id=uuid.uuid4().hex)
        answer = self.ports.dispatcher.handle(request)
        try:
            self.ports.dispatcher.deliver(answer, partial(self.ports.notifier.post, self.conversation))
            self.flush()
        except Exception as e:
            # the shell's replies travel through the database: when it is gone, say so and carry on
            self._print(f"❌ {outages.describe(e) or 'could not show the answer (see the log)'}")

    def run(self, lines: Iterable[str]) -> int:
        """Run every line, then wait (bounded) for the jobs this session started; returns the exit code."""
        poller = threading.Thread(target=self._poll_forever, daemon=True)
        self._polling = True
        poller.start()
        try:
            for line in lines:
                self.run_line(line)
            self._wait_for_jobs()
        except Exception as e:  # the database went away while waiting: the jobs go on without us
            self._print(f"❌ {outages.describe(e) or 'stopped waiting (see the log)'}; "
                        "'job status' will tell how the jobs end")
        finally:
            self._polling = False
            try:
                self.flush()
            except Exception:
                pass  # already said above; nothing more can be shown without the database
        return 0

    # ---- output ----

    def _poll_forever(self) -> None:
        while self._polling:
            try:
                self.flush()
            except Exception:  # the database went away for a moment: keep the shell alive
                pass
            time.sleep(0.2)

    def flush(self) -> None:
        with self._print_lock:
            for entry in self._reader.poll():
                self._show(entry)

    def _show(self, entry: OutboxEntry) -> None:
        reply = entry.reply
        if entry.edit or reply.progress_of is not None:
            job = reply.progress_of
            if job:
                self._job_text[job] = reply.text
            line = f"  [{show_job(job)}] {reply.text}" if job else f"  (updated) {reply.title}"
            if self._last_text.get(entry.message_id) != line:
                self._last_text[entry.message_id] = line
                self._write(line)
            return
        self._write(reply.plain_text(width=self._width()))

    def _width(self) -> int | None:
        if self.width is not None:
            return self.width
        isatty = getattr(self.out, "isatty", None)
        if isatty is not None and isatty():
            return shutil.get_terminal_size().columns
        return None  # a file or a pipe: whoever reads it has no width we know

    def _print(self, text: str) -> None:
        with self._print_lock:
            self._write(text)

    def _write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # ---- end of input ----

    def _active_jobs(self) -> list[str]:
        with self.ports.uow_factory(Scope.everything()) as uow:
            active = uow.jobs.list(states=[JobState.QUEUED, JobState.RUNNING], limit=1000)
        return [j.id for j in active if j.conversation.get("channel") == self.conversation.channel]

    def _outcomes(self, job_ids: list[str]) -> dict[str, str]:
        with self.ports.uow_factory(Scope.everything()) as uow:
            settled = [job for j in job_ids if (job := uow.jobs.get(j)) is not None and job.state.finished]
        return {job.id: jobs.render(job, now=self.ports.clock.now()).text for job in settled}

    def _wait_for_jobs(self) -> None:
        active = self._active_jobs()
        if not active:
            return
        self._print(f"waiting up to {self.wait_seconds:.0f} s for {len(active)} job(s) to finish…")
        deadline = time.monotonic() + self.wait_seconds
        waited = list(active)
        while active and time.monotonic() < deadline:
            time.sleep(0.2)
            self.flush()
            active = self._active_jobs()
        # a job settles before its last message is sent: wait (within the bound) until each settled
        # job's outcome, as its message will say it, has been shown
        self.flush()
        outcomes = self._outcomes([j for j in waited if j not in active])
        while any(self._job_text.get(j) != text for j, text in outcomes.items()) and time.monotonic() < deadline:
            time.sleep(0.1)
            self.flush()
        if active:
            still = ", ".join(show_job(j) for j in active)
            self._print(f"still running: {still}; 'job status' will tell how they end")
