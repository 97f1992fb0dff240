"""Neutral :class:`Reply` → Adaptive Card 1.5 (and the Bot Framework message that carries it). Pure.

Buttons are Universal Actions (``Action.Execute``, verb + ``data.command``) with an ``Action.Submit``
fallback for clients without them. Buttons meant for some people only (``Action.only_for``,
e.g. Approve/Deny) are left out of the card everyone sees; the card carries a ``refresh`` whose
``userIds`` are those people's AAD object ids, and Teams fetches *their* view, with the buttons,
through a refresh invoke. The refresh data holds the reply itself, so any bot instance can answer it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.teams.translate import COMMAND_KEY, MAX_NOTE, NOTE_KEY, REFRESH_VERB, VIEW_KEY
from core.chat import Action, ActionStyle, Reply, Section, Severity, Table

CARD_VERSION = "1.5"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_REFRESH_USERS = 60  # Teams' limit for refresh.userIds

# severity is an icon and a tinted container, never a coloured title: Teams' Good and Warning text
# colours on white are 2.1:1 and 1.5:1, far under the 4.5:1 that reads
_CONTAINER = {Severity.SUCCESS: "good", Severity.WARNING: "warning", Severity.ERROR: "attention"}
_MARK = {Severity.INFO: "", Severity.SUCCESS: "✅ ", Severity.WARNING: "⚠️ ", Severity.ERROR: "❌ "}
_STYLE = {ActionStyle.PRIMARY: "positive", ActionStyle.DANGER: "destructive"}
# a column's weight follows its longest cell (up to a bound, so one long value cannot starve the rest),
# and is never less than its longest word needs, so that "succeeded" is not broken inside the word
_MIN_WEIGHT, _MAX_WEIGHT = 4, 30
_WORD_ROOM = 1.2
# from this many columns on, the cells use the small type so that they fit 460 px
_SMALL_FROM_COLUMNS = 5


def _text(text: str, **props: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **props}


def _table(table: Table) -> dict[str, Any]:
    """An Adaptive Cards 1.5 ``Table``: a row is laid out together, so a wrapped cell keeps its row in step."""
    small = {"size": "Small"} if len(table.columns) >= _SMALL_FROM_COLUMNS else {}
    longest = [len(name) for name in table.columns]
    words = [max(len(w) for w in (name.split() or [""])) for name in table.columns]
    for row in table.rows:
        for i, cell in enumerate(row):
            longest[i] = max(longest[i], len(cell))
            words[i] = max([words[i], *(len(w) for w in cell.split())])
    weights = [max(_MIN_WEIGHT, min(_MAX_WEIGHT, n), round(w * _WORD_ROOM) + 2) for n, w in zip(longest, words,
                                                                                             strict=True)]

    def row(cells: tuple[str, ...], *, header: bool = False) -> dict[str, Any]:
        bold = {"weight": "Bolder"} if header else {}
        return {"type": "TableRow", "cells": [
            {"type": "TableCell", "items": [_text(cell or " ", **small, **bold)]} for cell in cells]}

    return {
        "type": "Table",
        "columns": [{"width": w} for w in weights],
        "rows": [row(table.columns, header=True), *(row(r) for r in table.rows)],
        "firstRowAsHeader": True,
        "showGridLines": False,
        "spacing": "Medium",
    }


def _section(section: Section) -> dict[str, Any]:
    """A heading, then one line per item: the label bold, the value subtle, wrapping within the line."""
    items: list[dict[str, Any]] = []
    if section.heading:
        items.append(_text(section.heading, weight="Bolder", spacing="Medium"))
    for item in section.items:
        items.append({"type": "RichTextBlock", "spacing": "Small", "inlines": [
            {"type": "TextRun", "text": item.label, "weight": "Bolder"},
            {"type": "TextRun", "text": "  " + item.value if item.value else " ", "isSubtle": True},
        ]})
    return {"type": "Container", "items": items or [_text(" ")]}


DETAILS_ID = "pvebot-details"


def _details(reply: Reply) -> list[dict[str, Any]]:
    """The details folded away: a "Details" toggle and the facts it shows."""
    facts = [{"title": f.label, "value": f.value or " "} for f in reply.details]
    return [
        {"type": "ActionSet", "actions": [{"type": "Action.ToggleVisibility", "title": "Details",
                                           "targetElements": [DETAILS_ID]}]},
        {"type": "Container", "id": DETAILS_ID, "isVisible": False, "spacing": "None",
         "items": [{"type": "FactSet", "facts": facts}]},
    ]


def _asking(action: Action) -> dict[str, Any]:
    """A button that first opens a text box (optional), then runs its command with the text appended."""
    data = {COMMAND_KEY: action.command}
    run: dict[str, Any] = {"type": "Action.Execute", "title": action.label, "verb": action.command.split()[0],
                           "data": data, "fallback": {"type": "Action.Submit", "title": action.label, "data": data}}
    style = _STYLE.get(action.style)
    if style:
        run["style"] = run["fallback"]["style"] = style
    return {"type": "Action.ShowCard", "title": action.label, "card": {
        "type": "AdaptiveCard",
        "body": [{"type": "Input.Text", "id": NOTE_KEY, "placeholder": action.ask or "", "maxLength": MAX_NOTE,
                  "label": action.ask or "Comment", "isRequired": False}],
        "actions": [run],
    }}


def _button(action: Action) -> dict[str, Any]:
    if action.ask:
        return _asking(action)
    data = {COMMAND_KEY: action.command}
    button: dict[str, Any] = {"type": "Action.Execute", "title": action.label, "verb": action.command.split()[0],
                              "data": data}
    submit: dict[str, Any] = {"type": "Action.Submit", "title": action.label, "data": data}
    style = _STYLE.get(action.style)
    if style:
        button["style"] = submit["style"] = style
    button["fallback"] = submit
    return button


def card(reply: Reply, *, audience: Sequence[str] = (), for_audience: bool = False) -> dict[str, Any]:
    """The Adaptive Card for ``reply``.

    Args:
        reply: what the command answered.
        audience: AAD object ids of the people who may see the restricted buttons (``only_for``).
        for_audience: render their view (with those buttons), as a refresh answers it.
    """
    body: list[dict[str, Any]] = []
    head: list[dict[str, Any]] = []
    mark = _MARK[reply.severity]
    if reply.title:
        head.append(_text(mark + reply.title, size="Large", weight="Bolder"))
        if reply.text:
            head.append(_text(reply.text, spacing="Small"))
    elif reply.text:
        head.append(_text(mark + reply.text))
    style = _CONTAINER.get(reply.severity)
    if head and style:
        body.append({"type": "Container", "style": style, "bleed": True, "items": head})
    else:
        body.extend(head)
    if reply.fields:
        body.append({"type": "FactSet", "facts": [{"title": f.label, "value": f.value or " "} for f in reply.fields]})
    if reply.highlight:
        body.append({"type": "Container", "style": "emphasis", "spacing": "Medium",
                     "items": [_text(reply.highlight, weight="Bolder")]})
    if reply.details:
        body.extend(_details(reply))
    body.extend(_section(s) for s in reply.sections)
    if reply.table is not None:
        body.append(_table(reply.table))
    if reply.footer:
        body.append(_text(reply.footer, isSubtle=True, size="Small"))
    if not body:
        body.append(_text(" "))
    restricted = any(a.only_for for a in reply.actions)
    users = list(dict.fromkeys(audience))[:MAX_REFRESH_USERS]
    # restricted buttons only ever show in their audience's own view: with nobody to show them to
    # (no approver linked on Teams) nobody sees them, and the card's text says who must decide and how
    hide = restricted and not for_audience
    buttons = [_button(a) for a in reply.actions if not (hide and a.only_for)]
    result: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": body,
        "fallbackText": reply.plain_text(),
        "msteams": {"width": "Full"},
    }
    if buttons:
        result["actions"] = buttons
    if restricted and users:
        view = {"reply": reply.to_dict(), "userIds": users}
        result["refresh"] = {
            "action": {"type": "Action.Execute", "verb": REFRESH_VERB, "title": "Refresh", "data": {VIEW_KEY: view}},
            "userIds": users,
        }
        if hide:
            body.append(_text("Approvers see the buttons here; anyone may type the commands shown in the text.",
                              isSubtle=True, size="Small"))
    return result


def view_card(view: dict[str, Any], *, user_id: str) -> dict[str, Any]:
    """Answer a refresh: the restricted view for the people listed in it, the common view for anyone else."""
    reply = Reply.from_dict(view.get("reply") or {})
    users = [str(u) for u in view.get("userIds") or []]
    return card(reply, audience=users, for_audience=user_id in users)


def message(reply: Reply, *, audience: Sequence[str] = ()) -> dict[str, Any]:
    """The Bot Framework message activity (JSON) carrying the card; ``summary`` feeds notifications."""
    summary = (reply.title or reply.text or "pvebot").splitlines()[0][:200]
    return {
        "type": "message",
        "summary": summary,
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": card(reply, audience=audience)}],
    }


def invoke_answer(card_json: dict[str, Any]) -> dict[str, Any]:
    """The body of an ``adaptiveCard/action`` invoke response that replaces the card."""
    return {"statusCode": 200, "type": CARD_CONTENT_TYPE, "value": card_json}


def invoke_message(text: str) -> dict[str, Any]:
    """An invoke response that shows a short message instead of replacing the card."""
    return {"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": text[:500]}
