"""Neutral replies as Block Kit: header, sections, fields, tables as code blocks, buttons, context.

Pure functions, no I/O. Everything is cut to Slack's documented limits (50 blocks a
message, 3,000 characters a section, 150 a header, …); when a cut drops content the
result says so (``truncated``) and carries a visible notice, and the caller may send the
full plain text as a file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adapters.slack.translate import ACTION_PREFIX, ASK_CALLBACK, ASK_PREFIX, NOTE_ACTION, NOTE_BLOCK
from core.chat import MAX_ASK, Action, ActionStyle, Field, Reply, Section, Severity, Table, render_table

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FIELD_TEXT = 2000
MAX_FIELDS_PER_SECTION = 10
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
# a modal's title, submit and close texts; an input's label
MAX_VIEW_TEXT = 24
MAX_LABEL_TEXT = 2000
MAX_BUTTONS_PER_BLOCK = 25
MAX_CONTEXT_TEXT = 2000
MAX_FALLBACK_TEXT = 3000
# a long table is cut well before 50 sections of 3,000 characters: nobody scrolls through that
MAX_TABLE_CHARS = 12000

BLOCK_TEXT, BLOCK_ACTIONS, BLOCK_FOOTER = "pvebot-text", "pvebot-actions", "pvebot-footer"

_MARK = {Severity.INFO: "", Severity.SUCCESS: "✅ ", Severity.WARNING: "⚠️ ", Severity.ERROR: "❌ "}
_FENCE = "```"


@dataclass(frozen=True)
class Rendered:
    """A message ready for chat.postMessage: blocks, the notification/fallback text, and whether it was cut."""

    blocks: list[dict[str, Any]]
    text: str
    truncated: bool = False


def escape(text: str) -> str:
    """Slack's three control characters; keeps user text from becoming mentions or links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _cut(text, limit) or " ", "emoji": True}


def _mrkdwn(text: str, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _cut(text, limit) or " "}


def _chunks(text: str, limit: int) -> list[str]:
    """Split at line ends where possible, so a section never exceeds ``limit``."""
    out: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                out.append(current)
                current = ""
            out.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            out.append(current)
            current = line
        else:
            current = candidate
    if current:
        out.append(current)
    return out


def _field(field: Field) -> dict[str, Any]:
    label = escape(field.label)
    return _mrkdwn(f"*{label}*\n{escape(field.value)}", MAX_FIELD_TEXT)


def _table_sections(table: Table, *, budget: int) -> tuple[list[dict[str, Any]], bool]:
    """The table as monospace code blocks, one per section; cut at ``budget`` characters with a notice."""
    lines = escape(render_table(table)).split("\n")
    inner_limit = MAX_SECTION_TEXT - 2 * len(_FENCE) - 2
    kept: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > budget:
            break
        kept.append(line[:inner_limit])
        used += len(line) + 1
    truncated = len(kept) < len(lines)
    sections = [{"type": "section", "text": _mrkdwn(f"{_FENCE}\n{chunk}\n{_FENCE}")}
                for chunk in _chunks("\n".join(kept), inner_limit)]
    if truncated:
        shown = max(0, len(kept) - 1)  # minus the header line
        notice = f"_… {len(table.rows) - shown} more row(s) not shown (Slack's message limits)_"
        sections.append({"type": "context", "elements": [_mrkdwn(notice, MAX_CONTEXT_TEXT)]})
    return sections, truncated


def _section_blocks(section: Section) -> list[dict[str, Any]]:
    """A heading in bold, then a line per item: the label as code (it is what one types), the value after it."""
    lines = [f"*{escape(section.heading)}*"] if section.heading else []
    lines += [f"`{escape(f.label)}`  {escape(f.value)}" for f in section.items]
    return [{"type": "section", "text": _mrkdwn(chunk)} for chunk in _chunks("\n".join(lines), MAX_SECTION_TEXT)]


def _value(action: Action) -> str:
    # a button that asks first carries its prompt too: the press opens the modal from the value alone
    if action.ask:
        return json.dumps({"command": action.command, "ask": action.ask}, ensure_ascii=False, separators=(",", ":"))
    return action.command


def _button(action: Action, index: int) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": f"{ASK_PREFIX if action.ask else ACTION_PREFIX}{index}",
        "text": _plain(action.label, MAX_BUTTON_TEXT),
        "value": _value(action),
    }
    if action.style is ActionStyle.PRIMARY:
        button["style"] = "primary"
    elif action.style is ActionStyle.DANGER:
        button["style"] = "danger"
    return button


def _action_blocks(actions: Sequence[Action]) -> list[dict[str, Any]]:
    # a command longer than a button value would run cut short: leave that button out. A button for
    # some people only (``only_for``) is left out too: Slack shows a message's buttons to everyone in
    # the channel, the requester of an approval included; those people get their own copy
    usable = [a for a in actions if len(_value(a)) <= MAX_BUTTON_VALUE and not a.only_for]
    blocks = []
    for start in range(0, len(usable), MAX_BUTTONS_PER_BLOCK):
        part = usable[start : start + MAX_BUTTONS_PER_BLOCK]
        block_id = BLOCK_ACTIONS if start == 0 else f"{BLOCK_ACTIONS}-{start}"
        blocks.append({"type": "actions", "block_id": block_id,
                       "elements": [_button(a, start + i) for i, a in enumerate(part)]})
    return blocks


def render(reply: Reply, *, caption: str | None = None) -> Rendered:
    """Block Kit for ``reply``.

    Args:
        reply: the neutral reply.
        caption: a context line saying who asked what (already mrkdwn, e.g. "<@U1> `/pve vm list`").

    Returns:
        Blocks within Slack's limits, a plain-text fallback, and whether content was cut.
    """
    mark = _MARK[reply.severity]
    head: list[dict[str, Any]] = []
    if reply.title:
        head.append({"type": "header", "text": _plain(mark + reply.title, MAX_HEADER_TEXT)})
    text = reply.text if reply.title else (mark + reply.text if reply.text else "")
    body: list[dict[str, Any]] = []
    for i, chunk in enumerate(_chunks(escape(text), MAX_SECTION_TEXT) if text else []):
        body.append({"type": "section", "block_id": BLOCK_TEXT if i == 0 else f"{BLOCK_TEXT}-{i}",
                     "text": _mrkdwn(chunk)})
    for start in range(0, len(reply.fields), MAX_FIELDS_PER_SECTION):
        part = reply.fields[start : start + MAX_FIELDS_PER_SECTION]
        body.append({"type": "section", "fields": [_field(f) for f in part]})
    if reply.highlight:
        body.append({"type": "section", "text": _mrkdwn(f"> *{escape(reply.highlight)}*")})
    details_cut = False
    if reply.details:
        lines = "\n".join(f"*{escape(f.label)}:* {escape(f.value)}" for f in reply.details)
        chunks = _chunks(lines, MAX_CONTEXT_TEXT)
        # a context block holds ten elements: beyond them the details are cut, and the result says so
        details_cut = len(chunks) > 10
        body.append({"type": "context", "elements": [_mrkdwn(chunk, MAX_CONTEXT_TEXT) for chunk in chunks[:10]]})
    for section in reply.sections:
        body.extend(_section_blocks(section))
    tail = _action_blocks(reply.actions)
    footer_lines = [escape(reply.footer)] if reply.footer else []
    if caption:
        footer_lines.append(caption)
    if footer_lines:
        tail.append({"type": "context", "block_id": BLOCK_FOOTER,
                     "elements": [_mrkdwn(line, MAX_CONTEXT_TEXT) for line in footer_lines]})
    truncated = details_cut
    if reply.table is not None:
        room = MAX_BLOCKS - len(head) - len(body) - len(tail) - 1  # one for the notice
        budget = min(MAX_TABLE_CHARS, max(0, room) * (MAX_SECTION_TEXT - 10))
        sections, table_cut = _table_sections(reply.table, budget=budget)
        truncated = truncated or table_cut
        body.extend(sections)
    blocks = head + body + tail
    if len(blocks) > MAX_BLOCKS:
        # only pathological replies (thousands of fields) get here: keep the start and say so
        blocks = blocks[: MAX_BLOCKS - 1] + [
            {"type": "context", "elements": [_mrkdwn("_… cut to fit Slack's limit of 50 blocks_")]}]
        truncated = True
    if not blocks:
        blocks = [{"type": "section", "block_id": BLOCK_TEXT, "text": _mrkdwn(mark + "(no output)")}]
    return Rendered(blocks=blocks, text=_cut(reply.plain_text() or "(no output)", MAX_FALLBACK_TEXT),
                    truncated=truncated)


def ask_modal(*, label: str, ask: str, metadata: str) -> dict[str, Any]:
    """The modal a button with ``ask`` opens: one optional text box, submitted under the button's label.

    Args:
        label: the button's label: the modal's title and its submit button.
        ask: the prompt, the text box's label.
        metadata: ``translate.ask_metadata`` of the press, handed back on submit.
    """
    return {
        "type": "modal",
        "callback_id": ASK_CALLBACK,
        "title": _plain(label, MAX_VIEW_TEXT),
        "submit": _plain(label, MAX_VIEW_TEXT),
        "close": _plain("Cancel", MAX_VIEW_TEXT),
        "private_metadata": metadata,
        "blocks": [{
            "type": "input", "block_id": NOTE_BLOCK, "optional": True, "label": _plain(ask, MAX_LABEL_TEXT),
            "element": {"type": "plain_text_input", "action_id": NOTE_ACTION, "multiline": True,
                        "max_length": MAX_ASK},
        }],
    }
