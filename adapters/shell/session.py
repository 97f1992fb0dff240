"""The terminal chat: ``pvebot shell`` and ``pvebot demo`` read commands line by line.

Replies and live job progress arrive through the shell outbox (see :mod:`adapters.shell.outbox`),
so a job run by a worker on another machine reports here just as it would in Slack.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from typing import TextIO

from adapters.shell.outbox import OutboxEntry, OutboxReader
from bot.bootstrap import App
from core.chat import CommandRequest, ConversationRef, IdentityKey
from core.errors import BotError
from core.ids import show_job
from core.model import JobState
from core.principal import Scope
from core.services import identity

PROMPT = "pvebot> "


class ShellSession:
    def __init__(self, app: App, *, email: str, out: TextIO, echo: bool = False, wait_seconds: float = 120.0) -> None:
        self.app = app
        self.out = out
        self.echo = echo
        self.wait_seconds = wait_seconds
        self.conversation = ConversationRef(platform="shell", channel=f"shell-{uuid.uuid4().hex[:12]}")
        self._reader = OutboxReader(app.storage.engine, self.conversation.channel)
        self._print_lock = threading.Lock()
        self._last_text: dict[str, str] = {}
        self.email = ""
        self.identity = IdentityKey("shell", "local", "")
        self.switch_user(email)

    # ---- input ----

    def switch_user(self, email: str) -> None:
        self.identity = identity.link_local(self.app.deps.uow_factory, email, clock=self.app.deps.clock)
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
            return
        request = CommandRequest(identity=self.identity, text=line, conversation=self.conversation,
                                 request_id=uuid.uuid4().hex)
        reply = self.app.dispatcher.handle(request)
        posted = self.app.notifier.post(self.conversation, reply)
        self.app.dispatcher.reply_posted(reply, posted)
        self.flush()

    def run(self, lines: Iterable[str]) -> int:
        """Run every line, then wait (bounded) for the jobs this session started; returns the exit code."""
        poller = threading.Thread(target=self._poll_forever, daemon=True)
        self._polling = True
        poller.start()
        try:
            for line in lines:
                self.run_line(line)
            self._wait_for_jobs()
        finally:
            self._polling = False
            self.flush()
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
        if entry.edit or reply.job_id is not None and reply.title and reply.title.startswith("job-"):
            line = f"  [{show_job(reply.job_id)}] {reply.text}" if reply.job_id else f"  (updated) {reply.title}"
            if self._last_text.get(entry.message_id) != line:
                self._last_text[entry.message_id] = line
                self._write(line)
            return
        self._write(reply.plain_text())

    def _print(self, text: str) -> None:
        with self._print_lock:
            self._write(text)

    def _write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # ---- end of input ----

    def _active_jobs(self) -> list[str]:
        with self.app.deps.uow_factory(Scope.everything()) as uow:
            active = uow.jobs.list(states=[JobState.QUEUED, JobState.RUNNING], limit=1000)
        return [j.id for j in active if j.conversation.get("channel") == self.conversation.channel]

    def _wait_for_jobs(self) -> None:
        active = self._active_jobs()
        if not active:
            return
        self._print(f"waiting up to {self.wait_seconds:.0f} s for {len(active)} job(s) to finish…")
        deadline = time.monotonic() + self.wait_seconds
        while active and time.monotonic() < deadline:
            time.sleep(0.2)
            self.flush()
            active = self._active_jobs()
        # a job settles before its last message is sent: print what arrived after the last look
        self.flush()
        if active:
            still = ", ".join(show_job(j) for j in active)
            self._print(f"still running: {still}; 'job status' will tell how they end")
