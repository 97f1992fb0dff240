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

from adapters.teams.translate import COMMAND_KEY, REFRESH_VERB, VIEW_KEY
from core.chat import Action, ActionStyle, Reply, Severity, Table, render_table

CARD_VERSION = "1.5"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_REFRESH_USERS = 60  # Teams' limit for refresh.userIds

_COLOUR = {Severity.INFO: "Default", Severity.SUCCESS: "Good", Severity.WARNING: "Warning",
           Severity.ERROR: "Attention"}
_MARK = {Severity.INFO: "", Severity.SUCCESS: "✅ ", Severity.WARNING: "⚠️ ", Severity.ERROR: "❌ "}
_STYLE = {ActionStyle.PRIMARY: "positive", ActionStyle.DANGER: "destructive"}
# a ColumnSet reads well for narrow tables; wider ones keep their columns aligned in monospace
_MAX_GRID_COLUMNS = 4


def _text(text: str, **props: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **props}


def _table(table: Table) -> dict[str, Any]:
    if len(table.columns) > _MAX_GRID_COLUMNS:
        return _text(render_table(table), fontType="Monospace", size="Small")
    columns = []
    for i, name in enumerate(table.columns):
        cells = [_text(name, weight="Bolder")] + [_text(row[i] or " ", spacing="Small") for row in table.rows]
        columns.append({"type": "Column", "width": "auto" if i < len(table.columns) - 1 else "stretch",
                        "items": cells})
    return {"type": "ColumnSet", "columns": columns}


def _button(action: Action) -> dict[str, Any]:
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
    colour = _COLOUR[reply.severity]
    if reply.title:
        body.append(_text(_MARK[reply.severity] + reply.title, size="Medium", weight="Bolder", color=colour))
        if reply.text:
            body.append(_text(reply.text))
    elif reply.text:
        body.append(_text(_MARK[reply.severity] + reply.text, color=colour))
    if reply.fields:
        body.append({"type": "FactSet", "facts": [{"title": f.label, "value": f.value or " "} for f in reply.fields]})
    if reply.table is not None:
        body.append(_table(reply.table))
    if reply.footer:
        body.append(_text(reply.footer, isSubtle=True, size="Small"))
    if not body:
        body.append(_text(" "))
    restricted = any(a.only_for for a in reply.actions)
    users = list(dict.fromkeys(audience))[:MAX_REFRESH_USERS]
    # nobody to restrict to (no approver uses Teams): show every button; the service re-checks the presser
    hide = restricted and bool(users) and not for_audience
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
