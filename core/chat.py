"""Platform-neutral chat messages: what adapters translate to and from.

No SDK object crosses into the core: a Slack payload or a Teams Activity becomes a
:class:`CommandRequest`; a command answers with a :class:`Reply` that each adapter renders
(Block Kit, Adaptive Card, plain text) on its own.
"""

from __future__ import annotations

import enum
import json
import shlex
from dataclasses import asdict, dataclass, fields
from typing import Any

from core.errors import InvalidArguments
from core.model import JobRoute


@dataclass(frozen=True)
class IdentityKey:
    """Who typed: a platform, the workspace (Slack team / Teams AAD tenant) and the platform user id."""

    platform: str
    workspace_id: str
    user_id: str


@dataclass(frozen=True)
class ConversationRef:
    """Where to answer: enough for a worker on another machine to post and edit messages.

    ``channel`` is the Slack channel / Teams conversation id / shell session; ``thread`` the
    message to thread under. ``extra`` holds platform details (Teams serviceUrl, bot id, …)
    as a sorted tuple of string pairs so the ref stays hashable and serialisable.
    """

    platform: str
    channel: str
    thread: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: str | None = None) -> str | None:
        return dict(self.extra).get(key, default)

    def with_thread(self, thread: str | None) -> ConversationRef:
        return ConversationRef(platform=self.platform, channel=self.channel, thread=thread, extra=self.extra)

    def to_dict(self) -> dict[str, Any]:
        return {"platform": self.platform, "channel": self.channel, "thread": self.thread, "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversationRef:
        return cls(
            platform=str(data["platform"]),
            channel=str(data["channel"]),
            thread=data.get("thread"),
            extra=tuple(sorted((str(k), str(v)) for k, v in (data.get("extra") or {}).items())),
        )


# the platforms whose channels can be posted into from their id alone (the bot token, the outbox)
DIRECT_PLATFORMS = frozenset({"slack", "shell"})


@dataclass(frozen=True)
class ChannelRef:
    """A channel or chat the bot can post into unprompted, with everything a notifier needs for it.

    Slack needs only the channel id (the bot token names the workspace). Teams needs what the
    Bot Framework told us when someone last wrote there: the serviceUrl (regional, and it can
    change), the AAD tenant, the bot's own id and the kind of conversation. That is why a Teams
    channel is captured from a typed command before the bot can post into it.
    """

    platform: str
    channel_id: str
    # Slack team / Teams AAD tenant; empty when the platform does not say
    workspace_id: str = ""
    service_url: str = ""
    tenant_id: str = ""
    bot_id: str = ""
    bot_name: str = ""
    # the Bot Framework channel the activity came through: msteams, or emulator
    bot_channel: str = ""
    # Teams: personal, groupChat or channel
    conversation_type: str = ""

    @property
    def name(self) -> str:
        """How provisioning writes it: ``platform:channel id``."""
        return f"{self.platform}:{self.channel_id}"

    @classmethod
    def parse(cls, text: str) -> ChannelRef:
        """A channel as provisioning names it (``slack:C0123``, ``teams:19:abc@thread.tacv2``), without details.

        Raises:
            InvalidArguments: no ``platform:`` prefix or no id after it.
        """
        platform, sep, channel_id = text.strip().partition(":")
        if not sep or not platform or not channel_id:
            raise InvalidArguments("write a channel as slack:C0123ABCD or teams:<conversation id>")
        return cls(platform=platform.lower(), channel_id=channel_id)

    def conversation(self) -> ConversationRef:
        """The conversation to post into (a new message at the channel's top level)."""
        details = {
            "service_url": self.service_url,
            "tenant_id": self.tenant_id,
            "bot_id": self.bot_id,
            "bot_name": self.bot_name,
            "channel_id": self.bot_channel,
            "conversation_type": self.conversation_type,
        }
        extra = tuple(sorted((k, v) for k, v in details.items() if v))
        return ConversationRef(platform=self.platform, channel=self.channel_id, extra=extra)

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChannelRef:
        known = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in data.items() if k in known})


@dataclass(frozen=True)
class MessageRef:
    """A posted message that can be edited later (Slack ts, Teams activity id, shell line id)."""

    conversation: ConversationRef
    message_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"conversation": self.conversation.to_dict(), "message_id": self.message_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MessageRef:
        return cls(conversation=ConversationRef.from_dict(data["conversation"]), message_id=str(data["message_id"]))


@dataclass(frozen=True)
class CommandRequest:
    """One command line typed (or one button pressed) by someone in some conversation.

    ``request_id`` is stable across re-deliveries of the same event (Slack retries, a
    double-clicked button): it is what makes a job run once.
    """

    identity: IdentityKey
    text: str
    conversation: ConversationRef
    request_id: str
    # a display name or email the platform told us, for automatic linking; never trusted for auth
    claimed_email: str | None = None
    # the channel typed in, as the adapter saw it, for platforms that must capture one before posting there
    channel: ChannelRef | None = None


class Severity(enum.StrEnum):
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


class ActionStyle(enum.StrEnum):
    DEFAULT = "default"
    PRIMARY = "primary"
    DANGER = "danger"


@dataclass(frozen=True)
class Field:
    label: str
    value: str


# the longest text a button's ``ask`` takes (a decision's note is at most as long)
MAX_ASK = 500
# chat clients "smarten" the quotes people type; the command grammar means the plain ones
TYPOGRAPHIC_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})


def with_answer(command: str, typed: str | None) -> str:
    """A button's command with the text its presser typed for its ``ask`` appended as one argument.

    Quoted, so that an apostrophe or a ``--word`` in a reason stays text; typographic quotes are made
    plain first, since the command grammar would read them as quotes inside the quoted text. Nothing
    typed: the command as it is.
    """
    text = " ".join((typed or "").translate(TYPOGRAPHIC_QUOTES).split())[:MAX_ASK]
    return f"{command} {shlex.quote(text)}" if text else command


@dataclass(frozen=True)
class Action:
    """A button. Pressing it runs ``command`` as if its presser had typed it.

    ``only_for`` lists pvebot user ids allowed to see the button where the platform can hide
    it (Teams ``refresh.userIds``); the service re-checks whoever presses it anyway.
    """

    label: str
    command: str
    style: ActionStyle = ActionStyle.DEFAULT
    only_for: tuple[int, ...] = ()
    # the presser may add a short text (a reason, at most MAX_ASK characters), asked with this prompt
    # and appended to the command: in the card on Teams, in a modal on Slack
    ask: str | None = None


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Section:
    """Lines under a heading: each item's label reads strong, its value quieter beside it (help's groups).

    Unlike a :class:`Table`, nothing has to line up: a long label or value wraps within its own line.
    """

    heading: str
    items: tuple[Field, ...]


@dataclass(frozen=True)
class Reply:
    """What a command answers, before any platform renders it."""

    text: str = ""
    title: str | None = None
    severity: Severity = Severity.INFO
    fields: tuple[Field, ...] = ()
    table: Table | None = None
    actions: tuple[Action, ...] = ()
    footer: str | None = None
    # grouped lines after the fields and before the table (help)
    sections: tuple[Section, ...] = ()
    # one line that must not be missed, shown in a highlighted box (what an approval destroys)
    highlight: str | None = None
    # facts for whoever wants them, folded away where the platform can fold (Teams)
    details: tuple[Field, ...] = ()
    # only the caller should see it (Slack ephemeral); errors are
    private: bool = False
    # this message is the live progress of that job (the shell prints it as "[job-…] …"); it
    # describes the message and asks for nothing: what to start travels beside it, in an Answer
    progress_of: str | None = None

    @classmethod
    def error(cls, message: str) -> Reply:
        return cls(text=message, severity=Severity.ERROR, private=True)

    @classmethod
    def ok(cls, message: str, **kwargs: Any) -> Reply:
        return cls(text=message, severity=Severity.SUCCESS, **kwargs)

    def plain_text(self, *, width: int | None = None) -> str:
        """The reply as plain text: the shell's output and every platform's fallback.

        ``width`` wraps a table to that many characters a line (see :func:`render_table`).
        """
        return render_plain(self, width=width)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "title": self.title,
            "severity": self.severity.value,
            "fields": [[f.label, f.value] for f in self.fields],
            "table": None if self.table is None else {"columns": list(self.table.columns),
                                                      "rows": [list(r) for r in self.table.rows]},
            "actions": [[a.label, a.command, a.style.value, list(a.only_for)] + ([a.ask] if a.ask else [])
                        for a in self.actions],
            "footer": self.footer,
            "private": self.private,
            "progress_of": self.progress_of,
            "sections": [[s.heading, [[f.label, f.value] for f in s.items]] for s in self.sections],
            "highlight": self.highlight,
            "details": [[f.label, f.value] for f in self.details],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        table = data.get("table")
        return cls(
            text=data.get("text", ""),
            title=data.get("title"),
            severity=Severity(data.get("severity", "info")),
            fields=tuple(Field(label, value) for label, value in data.get("fields", [])),
            table=None if not table else Table(tuple(table["columns"]), tuple(tuple(r) for r in table["rows"])),
            actions=tuple(
                Action(a[0], a[1], ActionStyle(a[2]), tuple(a[3]), a[4] if len(a) > 4 else None)
                for a in data.get("actions", [])
            ),
            footer=data.get("footer"),
            private=bool(data.get("private", False)),
            # outbox rows written before progress_of existed say job_id
            progress_of=data.get("progress_of", data.get("job_id")),
            sections=tuple(Section(heading, tuple(Field(label, value) for label, value in items))
                           for heading, items in data.get("sections", [])),
            highlight=data.get("highlight"),
            details=tuple(Field(label, value) for label, value in data.get("details", [])),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class StartJob:
    """Follow-up: queue this recorded job once the reply announcing it is posted (it threads under it)."""

    job_id: str
    # where the job's record says it reports, as it was just recorded: the hand-over need not read it
    # back (nothing else writes it while the job is queued, and a job no longer queued is left alone)
    recorded: JobRoute | None = None


@dataclass(frozen=True)
class TrackApproval:
    """Follow-up: remember where this approval's card was posted, so the decision can edit it."""

    approval_id: str


@dataclass(frozen=True)
class AnnounceApproval:
    """Follow-up: once the requester's card is posted, post the approvers' copy (their channel or messages).

    Nobody is asked to decide what its requester never saw: when the post fails, the request is withdrawn.
    """

    approval_id: str


FollowUp = StartJob | TrackApproval | AnnounceApproval


@dataclass(frozen=True)
class Answer:
    """What the dispatcher gives an adapter: the reply to post, and the work that waits for the post.

    The reply stays a description of a message; the follow-ups say what to do once it is posted
    (or that posting failed), and only the one delivery path in ``bot/`` acts on them.
    """

    reply: Reply
    followups: tuple[FollowUp, ...] = ()

    @classmethod
    def of(cls, result: Reply | Answer) -> Answer:
        """A handler may answer with a bare :class:`Reply` (no follow-ups) or a full Answer."""
        return result if isinstance(result, Answer) else cls(result)

    @property
    def job_ids(self) -> tuple[str, ...]:
        return tuple(f.job_id for f in self.followups if isinstance(f, StartJob))


_SEVERITY_MARK = {Severity.INFO: "", Severity.SUCCESS: "✅ ", Severity.WARNING: "⚠️ ", Severity.ERROR: "❌ "}


GAP = "  "
MIN_WRAPPED = 8
LONG_LABEL = 60  # a section's label wider than this gets a line of its own (see render_section)


def render_table(table: Table, *, width: int | None = None) -> str:
    """Columns padded to their widest cell, as monospace text.

    Args:
        table: what to render.
        width: the most characters a line may take (a terminal's width). A wider table has its
            widest column wrapped onto continuation lines, down to the next widest and then both
            while needed, so that columns stay aligned; no character of a cell is ever dropped. A table that
            cannot fit even so (too many columns) keeps its columns at :data:`MIN_WRAPPED`.

    Returns:
        The lines of the table, the header first; no trailing spaces.
    """
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    if width is not None:
        widths = _fit(widths, width)

    def lines(cells: tuple[str, ...]) -> list[str]:
        wrapped = [_wrap(cell, widths[i]) for i, cell in enumerate(cells)]
        height = max((len(w) for w in wrapped), default=1)
        return [
            GAP.join((w[k] if k < len(w) else "").ljust(widths[i]) for i, w in enumerate(wrapped)).rstrip()
            for k in range(height)
        ]

    return "\n".join([*lines(table.columns), *(line for r in table.rows for line in lines(r))])


def _fit(widths: list[int], width: int) -> list[int]:
    # one character at a time off the widest column: the widest wraps first, and a very wide
    # column never shrinks below the next widest, so the table stays balanced
    widths = list(widths)
    over = sum(widths) + len(GAP) * (len(widths) - 1) - width
    while over > 0:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= MIN_WRAPPED:
            break
        widths[widest] -= 1
        over -= 1
    return widths


def _wrap(cell: str, width: int) -> list[str]:
    if len(cell) <= width:
        return [cell]
    # break at spaces where there are some, else inside the word; keep every character
    out: list[str] = []
    rest = cell
    while len(rest) > width:
        cut = rest.rfind(" ", 1, width + 1)
        if cut <= 0:
            out.append(rest[:width])
            rest = rest[width:]
        else:
            out.append(rest[:cut])
            rest = rest[cut + 1:]
    out.append(rest)
    return out


def render_section(section: Section, *, width: int | None = None) -> str:
    """A section as plain text: its heading, then its items as two aligned columns wrapped to ``width``.

    A label longer than :data:`LONG_LABEL` (a long usage line) stands on a line of its own with its value
    below it, under the other values, instead of widening the label column of every other item.
    """
    if not section.items:
        return section.heading
    indent = "  " if section.heading else ""
    inner = None if width is None else max(MIN_WRAPPED, width - len(indent))
    label_width = max((len(f.label) for f in section.items if len(f.label) <= LONG_LABEL), default=0)
    lines: list[str] = []
    aligned: list[tuple[str, str]] = []

    def flush() -> None:
        if aligned:
            rows = tuple((label.ljust(label_width), value) for label, value in aligned)
            # render_table's first line is the header; a section's heading stands alone above its items
            lines.extend(render_table(Table(columns=("", ""), rows=rows), width=inner).split("\n")[1:])
            aligned.clear()

    for item in section.items:
        if len(item.label) <= LONG_LABEL:
            aligned.append((item.label, item.value))
            continue
        flush()
        lines.extend(_wrap(item.label, inner) if inner is not None else [item.label])
        pad = " " * (label_width + len(GAP))
        room = None if inner is None else max(MIN_WRAPPED, inner - len(pad))
        lines.extend(pad + part for part in (_wrap(item.value, room) if room is not None else [item.value]))
    flush()
    lines = [(indent + line).rstrip() for line in lines]
    return "\n".join([section.heading, *lines]) if section.heading else "\n".join(lines)


def render_plain(reply: Reply, *, width: int | None = None) -> str:
    parts: list[str] = []
    mark = _SEVERITY_MARK[reply.severity]
    if mark and reply.text.startswith(mark.strip()):
        mark = ""  # the text already opens with it (a job's "✅ done")
    if reply.title:
        parts.append(mark + reply.title)
        if reply.text:
            parts.append(reply.text)
    elif reply.text:
        parts.append(mark + reply.text)
    if reply.highlight:
        parts.append(reply.highlight)
    facts = reply.fields + reply.details
    if facts:
        label_width = max(len(f.label) for f in facts)
        parts.append("\n".join(f"{f.label.ljust(label_width)}  {f.value}" for f in facts))
    for section in reply.sections:
        parts.append(render_section(section, width=width))
    if reply.table is not None:
        parts.append(render_table(reply.table, width=width))
    if reply.actions:
        parts.append("  ".join(f"[{a.label}: {a.command}]" for a in reply.actions))
    if reply.footer:
        parts.append(reply.footer)
    return "\n".join(parts)
