"""The dispatcher: every adapter's one entry into the bot.

A :class:`CommandRequest` goes through a middleware chain (resolve the principal, rate
limit, audit) to its command; whatever happens, the adapter gets an :class:`Answer` back
(the reply and its follow-ups), never an exception. The adapter then hands that answer and
its own post callback to :meth:`Dispatcher.deliver` (see :mod:`bot.delivery`), which posts
and starts what the reply announced. Services are synchronous; async adapters call the
``_async`` methods.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from adapters import outages
from bot import delivery
from commands.grammar import kept_text, parse
from commands.registry import CommandContext, CommandRegistry
from core.chat import Answer, CommandRequest, IdentityKey, MessageRef, Reply
from core.errors import BotError, PermissionDenied, RateLimited
from core.ids import new_id
from core.ports import Directory
from core.principal import Principal
from core.rbac import allows
from core.services import approval_cards, audit, channels, identity
from core.services.deps import Deps

log = logging.getLogger(__name__)


@dataclass
class Call:
    """One request on its way through the chain."""

    request: CommandRequest
    principal: Principal | None = None
    newly_linked: bool = False
    # the registered command, once parsed
    command: str | None = None


Next = Callable[[Call], Answer]
Middleware = Callable[[Call, Next], Answer]


class Limiter(Protocol):
    """Refuses (``RateLimited``) an identity past its allowance of commands."""

    def check(self, key: IdentityKey) -> None: ...


class RateLimiter:
    """At most ``limit`` commands per identity in a sliding ``window`` of seconds, in this process."""

    def __init__(self, *, limit: int = 30, window: float = 10.0) -> None:
        self.limit, self.window = limit, window
        self._seen: dict[IdentityKey, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, key: IdentityKey) -> None:
        now = time.monotonic()
        with self._lock:
            seen = self._seen[key]
            while seen and now - seen[0] > self.window:
                seen.popleft()
            if len(seen) >= self.limit:
                raise RateLimited()
            seen.append(now)


class Dispatcher:
    def __init__(
        self,
        *,
        registry: CommandRegistry,
        deps: Deps,
        directory: Directory | None = None,
        rate_limiter: Limiter | None = None,
    ) -> None:
        self.registry = registry
        self.deps = deps
        self.directory = directory
        self.rate_limiter: Limiter = rate_limiter or RateLimiter()
        self.seen_channels = channels.SeenChannels()
        # the limit comes first: an unknown sender must not cost a directory look-up per command
        self._chain: list[Middleware] = [self._rate_limit, self._resolve_principal, self._capture_channel, self._audit]

    # ---- public API for adapters ----

    def handle(self, request: CommandRequest) -> Answer:
        """Run one command; always answers, errors included (``Reply.error``, no follow-ups)."""
        return self._handle(Call(request))

    def _handle(self, call: Call) -> Answer:
        try:
            answer = self._run_chain(call, 0)
        except BotError as e:
            answer = Answer(Reply.error(e.user_message))
        except Exception as e:
            outage = outages.describe(e)
            if outage is not None:
                # known and not ours to fix: one line in the log, and the user reads what it is
                log.warning("command refused: %s (%s)", outage, type(e).__name__)
                answer = Answer(Reply.error(outage))
            else:
                ref = new_id(6)
                log.exception("command failed, ref %s", ref)
                answer = Answer(Reply.error(f"internal error, ref {ref}"))
        if call.newly_linked and call.principal is not None:
            note = f"👋 linked your account to pvebot as {call.principal.email}"
            reply = answer.reply
            answer = replace(answer, reply=replace(reply, footer=f"{note}\n{reply.footer}" if reply.footer else note))
        return answer

    async def handle_async(self, request: CommandRequest) -> Answer:
        return await asyncio.to_thread(self.handle, request)

    def deliver(self, answer: Answer, post: delivery.Post) -> MessageRef | None:
        """Post the answer's reply through the adapter's ``post``, then start what it announced."""
        return delivery.deliver(self.deps, answer, post=post)

    async def deliver_async(self, answer: Answer, post: delivery.AsyncPost) -> MessageRef | None:
        return await delivery.deliver_async(self.deps, answer, post=post)

    # ---- the chain ----

    def _run_chain(self, call: Call, index: int) -> Answer:
        if index == len(self._chain):
            return self._run_command(call)
        return self._chain[index](call, lambda c: self._run_chain(c, index + 1))

    def _resolve_principal(self, call: Call, next_: Next) -> Answer:
        resolved = identity.resolve(
            self.deps.uow_factory, call.request.identity, clock=self.deps.clock, directory=self.directory,
            cache=self.deps.directory_cache,
        )
        call.principal, call.newly_linked = resolved.principal, resolved.newly_linked
        if self.deps.directory_cache is None:
            return next_(call)
        with self.deps.directory_cache.pinned(resolved.version):
            return next_(call)

    def _rate_limit(self, call: Call, next_: Next) -> Answer:
        self.rate_limiter.check(call.request.identity)
        return next_(call)

    def _capture_channel(self, call: Call, next_: Next) -> Answer:
        """Remember where a known user wrote, so that the bot can post there later (Teams approvers channels)."""
        channel = call.request.channel
        if channel is not None:
            try:
                if channels.capture(self.deps.uow_factory, channel, clock=self.deps.clock, seen=self.seen_channels):
                    # requests made before the bot could reach this channel get their copy now
                    approval_cards.deliver_waiting(self.deps, channel)
            except Exception:
                # the command itself does not depend on it; the next message tries again
                log.exception("could not remember the channel of a command")
        return next_(call)

    def _audit(self, call: Call, next_: Next) -> Answer:
        assert call.principal is not None
        outcome = "ok"
        try:
            answer = next_(call)
            if answer.reply.severity.value == "error":
                outcome = "error"
            return answer
        except BotError as e:
            outcome = "denied" if isinstance(e, PermissionDenied) else "error"
            raise
        finally:
            self._record_command(call, outcome)

    def _record_command(self, call: Call, outcome: str) -> None:
        assert call.principal is not None
        try:
            # one row, written alone: a single round trip on a server
            with self.deps.uow_factory(call.principal.scope, autocommit=True) as uow:
                audit.record(
                    uow,
                    clock=self.deps.clock,
                    actor=call.principal.actor,
                    action="command",
                    company_id=call.principal.company_id,
                    target=kept_text(call.request.text, self.registry)[:200],  # never a mistyped password
                    outcome=outcome,
                    detail={"platform": call.request.identity.platform},
                )
                uow.commit()
        except Exception:
            log.exception("could not audit a command")

    def _run_command(self, call: Call) -> Answer:
        assert call.principal is not None
        principal = call.principal
        parsed = parse(call.request.text, self.registry, usable=lambda spec: spec.visible_to(principal))
        call.command = parsed.spec.name
        permission = parsed.spec.permission
        if permission is not None and not allows(call.principal.role, permission):
            raise PermissionDenied(f"your role ({call.principal.role.value}) cannot use '{parsed.spec.name}'")
        ctx = CommandContext(
            principal=call.principal,
            deps=self.deps,
            conversation=call.request.conversation,
            request_id=call.request.request_id,
            registry=self.registry,
            command=parsed.spec.name,
        )
        return Answer.of(parsed.spec.handler(parsed.args, ctx))
