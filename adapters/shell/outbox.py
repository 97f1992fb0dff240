"""Messages for terminal sessions, through the database.

A worker on any machine posts and edits a shell conversation's messages by appending rows;
the shell that owns the conversation reads them in order. An edit is a new row for the same
message id, so the reader sees every state a message went through, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, insert, select

from adapters.sql.tables import shell_outbox
from core.chat import ConversationRef, MessageRef, Reply
from core.clock import SystemClock
from core.ids import new_id


class OutboxNotifier:
    """:class:`core.ports.Notifier` for the ``shell`` platform."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._clock = SystemClock()

    def _append(self, conversation: ConversationRef, message_id: str, reply: Reply) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(shell_outbox).values(
                    conversation=conversation.channel, message_id=message_id, body=reply.to_dict(),
                    at=self._clock.now(),
                )
            )

    def post(self, conversation: ConversationRef, reply: Reply) -> MessageRef:
        message_id = new_id(8)
        self._append(conversation, message_id, reply)
        return MessageRef(conversation=conversation, message_id=message_id)

    def update(self, message: MessageRef, reply: Reply) -> None:
        self._append(message.conversation, message.message_id, reply)


@dataclass(frozen=True)
class OutboxEntry:
    message_id: str
    reply: Reply
    edit: bool


class OutboxReader:
    """Reads a conversation's new outbox rows, oldest first."""

    def __init__(self, engine: Engine, conversation: str) -> None:
        self._engine = engine
        self._conversation = conversation
        self._last = 0
        self._seen: set[str] = set()

    def poll(self) -> list[OutboxEntry]:
        c = shell_outbox.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(c.id, c.message_id, c.body)
                .where(c.conversation == self._conversation, c.id > self._last)
                .order_by(c.id)
            ).all()
        out = []
        for row_id, message_id, body in rows:
            self._last = row_id
            out.append(OutboxEntry(message_id, Reply.from_dict(body), edit=message_id in self._seen))
            self._seen.add(message_id)
        return out
