"""The dispatcher as production runs it: every command measured and its log lines tagged.

A subclass adds one middleware to the chain (after the principal is known: it tags the log
context with company and user) and times :meth:`handle` as a whole, which is what the user waits
for before the acknowledgement. The plain :class:`Dispatcher` stays what the tests build.
"""

from __future__ import annotations

import time
from typing import Any

from bot.dispatch import Call, Dispatcher, Next
from commands.grammar import parse
from core import logcontext
from core.chat import Answer, CommandRequest
from core.telemetry import NullTelemetry, Telemetry


class ObservedDispatcher(Dispatcher):
    def __init__(self, *, telemetry: Telemetry | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.telemetry: Telemetry = telemetry or NullTelemetry()
        # after the principal is known (rate limit, then principal)
        self._chain.insert(2, self._tag_logs)

    def _handle(self, call: Call) -> Answer:
        started = time.monotonic()
        with logcontext.bound(request_id=call.request.request_id):
            answer = super()._handle(call)
        outcome = "error" if answer.reply.severity.value == "error" else "ok"
        self.telemetry.command_handled(command=call.command or self._name(call.request), outcome=outcome,
                                       seconds=time.monotonic() - started)
        return answer

    def _tag_logs(self, call: Call, next_: Next) -> Answer:
        principal = call.principal
        if principal is None:
            return next_(call)
        with logcontext.bound(company=principal.company_id, user=principal.actor):
            return next_(call)

    def _name(self, request: CommandRequest) -> str:
        """The registered command's name, for a command refused before it was parsed (unlinked,
        rate-limited); a label of bounded cardinality whatever people type."""
        try:
            return parse(request.text, self.registry).spec.name
        except Exception:
            return "(invalid)"
