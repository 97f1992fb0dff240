"""The notification system as PVE 8.3+ runs it: webhook targets, matchers, the test call and the sending.

Paths and parameters are the schema's (``/cluster/notifications/...``). A webhook's ``header``,
``secret`` and ``body`` values are base64 (headers and secrets as ``name=<n>,value=<base64>``
property strings); secrets are kept apart and never returned, only their names. When a vzdump task
ends, each enabled matcher is evaluated against the notification's metadata (``type``, ``hostname``
and, for scheduled runs, ``job-id``; a field the rule names that is missing does not match; a
matcher with no rules matches everything); every target matched is notified once, and a webhook is
sent once, with no retry, as ``proxmox-notify`` does. Templates are rendered with the helpers the
webhook target has (``url-encode``, ``escape``, ``json``) and no HTML escaping.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from pvesim.context import Call, SimContext, route
from pvesim.state import ApiError

_TAG = re.compile(r"\{\{\s*(?:(url-encode|escape|json)\s+)?([A-Za-z0-9_.-]+)\s*\}\}")
_FIELD_RULE = re.compile(r"^(regex|exact):([A-Za-z0-9_-]+)=(.*)$")
_PENDING: set[asyncio.Task[None]] = set()
SEND_TIMEOUT = 10.0
BUILTIN_TARGET = "mail-to-root"


def _lookup(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def render(template: str, data: dict[str, Any]) -> str:
    """A template as the webhook target renders it: a missing value is empty, nothing is HTML-escaped."""

    def one(m: re.Match[str]) -> str:
        helper, value = m.group(1), _lookup(data, m.group(2))
        if helper == "json":
            return json.dumps(value, separators=(",", ":"))
        text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
        if helper == "escape":
            return json.dumps(text)[1:-1]
        if helper == "url-encode":
            return quote(text, safe="")
        return text

    return _TAG.sub(one, template)


def _b64(value: str, *, what: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "Parameter verification failed.", errors={what: "value is not valid base64"}) from None


def _pairs(items: list[str], *, what: str, need_value: bool) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for item in items:
        parts = dict(p.split("=", 1) for p in item.split(",") if "=" in p)
        name = parts.get("name")
        if not name or (need_value and "value" not in parts):
            raise ApiError(400, "Parameter verification failed.",
                           errors={what: f"invalid format - expected 'name=<name>,value=<base64>' in '{item}'"})
        found[name] = _b64(parts["value"], what=what) if "value" in parts else None
    return found


def _taken(ctx: SimContext, name: str) -> bool:
    return name in ctx.state.webhooks or name in ctx.state.matchers or name == BUILTIN_TARGET


def _webhook_row(ctx: SimContext, name: str) -> dict[str, Any]:
    config = ctx.state.webhooks[name]
    row = {k: v for k, v in config.items() if k != "secret"}
    secrets = ctx.state.webhook_secrets.get(name, {})
    if secrets:
        row["secret"] = [f"name={n}" for n in sorted(secrets)]
    return {**row, "name": name, "origin": "user-created"}


def _apply_webhook(ctx: SimContext, name: str, call: Call, *, create: bool) -> None:
    config = {} if create else dict(ctx.state.webhooks[name])
    for key in call.values("delete"):
        if key not in ("comment", "disable", "header", "body", "secret"):
            raise ApiError(400, "Parameter verification failed.", errors={"delete": f"cannot delete '{key}'"})
        config.pop(key, None)
        if key == "secret":
            ctx.state.webhook_secrets.pop(name, None)
    for key in ("url", "method", "comment", "disable", "body"):
        if key in call.params:
            config[key] = call.params[key]
    if "body" in config:
        _b64(config["body"], what="body")
    if "header" in call.params:
        _pairs(call.values("header"), what="header", need_value=True)
        config["header"] = call.values("header")
    if "secret" in call.params:
        given = _pairs(call.values("secret"), what="secret", need_value=False)
        old = ctx.state.webhook_secrets.get(name, {})
        kept: dict[str, str] = {}
        for secret_name, value in given.items():
            if value is None and secret_name not in old:
                raise ApiError(500, f"secret '{secret_name}' has no value")
            kept[secret_name] = old[secret_name] if value is None else value
        ctx.state.webhook_secrets[name] = kept  # secrets not sent again are dropped, as webhook.rs does
    ctx.state.webhooks[name] = config


@route("GET", "/cluster/notifications/endpoints/webhook")
async def list_webhooks(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        return [_webhook_row(ctx, name) for name in sorted(ctx.state.webhooks)]


@route("POST", "/cluster/notifications/endpoints/webhook")
async def create_webhook(ctx: SimContext, call: Call) -> Any:
    name = call.params["name"]
    with ctx.state.lock:
        if _taken(ctx, name):
            raise ApiError(500, f"could not create webhook endpoint '{name}': name is already in use")
        _apply_webhook(ctx, name, call, create=True)
    return None


def _webhook(ctx: SimContext, name: str) -> None:
    if name not in ctx.state.webhooks:
        raise ApiError(404, f"endpoint '{name}' not found")


@route("GET", "/cluster/notifications/endpoints/webhook/{name}")
async def get_webhook(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        _webhook(ctx, call.path_params["name"])
        return _webhook_row(ctx, call.path_params["name"])


@route("PUT", "/cluster/notifications/endpoints/webhook/{name}")
async def update_webhook(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        _webhook(ctx, call.path_params["name"])
        _apply_webhook(ctx, call.path_params["name"], call, create=False)
    return None


@route("DELETE", "/cluster/notifications/endpoints/webhook/{name}")
async def delete_webhook(ctx: SimContext, call: Call) -> Any:
    name = call.path_params["name"]
    with ctx.state.lock:
        _webhook(ctx, name)
        del ctx.state.webhooks[name]
        ctx.state.webhook_secrets.pop(name, None)
    return None


_MATCHER_LISTS = ("target", "match-field", "match-severity", "match-calendar")


def _apply_matcher(ctx: SimContext, name: str, call: Call, *, create: bool) -> None:
    config = {} if create else dict(ctx.state.matchers[name])
    for key in call.values("delete"):
        config.pop(key, None)
    for key in ("mode", "invert-match", "disable", "comment"):
        if key in call.params:
            config[key] = call.params[key]
    for key in _MATCHER_LISTS:
        if key in call.params:
            config[key] = call.values(key)
    for rule in config.get("match-field", []):
        m = _FIELD_RULE.match(rule)
        if m is None:
            raise ApiError(400, "Parameter verification failed.",
                           errors={"match-field": f"invalid match-field statement: {rule}"})
        if m.group(1) == "regex":
            try:
                re.compile(m.group(3))
            except re.error:
                raise ApiError(400, "Parameter verification failed.",
                               errors={"match-field": f"invalid regex: {m.group(3)}"}) from None
    ctx.state.matchers[name] = config


@route("GET", "/cluster/notifications/matchers")
async def list_matchers(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        return [{**ctx.state.matchers[n], "name": n, "origin": "user-created"} for n in sorted(ctx.state.matchers)]


@route("POST", "/cluster/notifications/matchers")
async def create_matcher(ctx: SimContext, call: Call) -> Any:
    name = call.params["name"]
    with ctx.state.lock:
        if _taken(ctx, name):
            raise ApiError(500, f"could not create matcher '{name}': name is already in use")
        _apply_matcher(ctx, name, call, create=True)
    return None


def _matcher(ctx: SimContext, name: str) -> None:
    if name not in ctx.state.matchers:
        raise ApiError(404, f"matcher '{name}' not found")


@route("GET", "/cluster/notifications/matchers/{name}")
async def get_matcher(ctx: SimContext, call: Call) -> Any:
    name = call.path_params["name"]
    with ctx.state.lock:
        _matcher(ctx, name)
        return {**ctx.state.matchers[name], "name": name, "origin": "user-created"}


@route("PUT", "/cluster/notifications/matchers/{name}")
async def update_matcher(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        _matcher(ctx, call.path_params["name"])
        _apply_matcher(ctx, call.path_params["name"], call, create=False)
    return None


@route("DELETE", "/cluster/notifications/matchers/{name}")
async def delete_matcher(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        _matcher(ctx, call.path_params["name"])
        del ctx.state.matchers[call.path_params["name"]]
    return None


@route("GET", "/cluster/notifications/targets")
async def list_targets(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        rows: list[dict[str, Any]] = [{"name": BUILTIN_TARGET, "type": "sendmail", "origin": "builtin",
                 "comment": "Send mails to root@pam's email address"}]
        rows += [{"name": n, "type": "webhook", "origin": "user-created", "comment": c.get("comment", ""),
                  "disable": int(c.get("disable", "0"))} for n, c in sorted(ctx.state.webhooks.items())]
        return rows


@route("POST", "/cluster/notifications/targets/{name}/test")
async def test_target(ctx: SimContext, call: Call) -> Any:
    name = call.path_params["name"]
    with ctx.state.lock:
        if name == BUILTIN_TARGET:
            return None
        if name not in ctx.state.webhooks:
            raise ApiError(500, f"could not notify via target '{name}': target does not exist")
    error = await _send(ctx, name, _notification(
        severity="info", title="Test notification", message=f"This is a test of the notification target '{name}'.",
        fields={}))
    if error:
        raise ApiError(500, f"could not notify via target `{name}`: {error}")
    return None


# ---- sending --------------------------------------------------------------------------------


def _notification(*, severity: str, title: str, message: str, fields: dict[str, str]) -> dict[str, Any]:
    return {"title": title, "message": message, "severity": severity, "timestamp": int(time.time()),
            "fields": fields}


def _rule_matches(rule: str, fields: dict[str, str]) -> bool:
    m = _FIELD_RULE.match(rule)
    if m is None:
        return False
    kind, field, wanted = m.groups()
    if field not in fields:
        return False  # "If a matched metadata field does not exist, the notification will not be matched."
    if kind == "exact":
        return fields[field] in wanted.split(",")
    return re.search(wanted, fields[field]) is not None


def matched_targets(ctx: SimContext, *, severity: str, fields: dict[str, str]) -> list[str]:
    """The targets the enabled matchers send a notification to, each once (call with ``state.lock`` held)."""
    targets: list[str] = []
    for config in ctx.state.matchers.values():
        if config.get("disable") == "1":
            continue
        results = [_rule_matches(r, fields) for r in config.get("match-field", [])]
        severities = config.get("match-severity", [])
        if severities:
            results.append(severity in ",".join(severities).split(","))
        if not results:
            hit = True  # a matcher with no rules always matches
        elif config.get("mode", "all") == "any":
            hit = any(results)
        else:
            hit = all(results)
        if config.get("invert-match") == "1":
            hit = not hit
        if hit:
            targets += [t for t in config.get("target", []) if t not in targets]
    return targets


def notify(ctx: SimContext, *, severity: str, title: str, message: str, fields: dict[str, str]) -> None:
    """Send a notification to what matches, in the background (on the server loop, with ``state.lock`` held)."""
    notification = _notification(severity=severity, title=title, message=message, fields=fields)
    for name in matched_targets(ctx, severity=severity, fields=fields):
        if name in ctx.state.webhooks and ctx.state.webhooks[name].get("disable") != "1":
            task = asyncio.get_running_loop().create_task(_logged(ctx, name, notification))
            _PENDING.add(task)
            task.add_done_callback(_PENDING.discard)


async def _logged(ctx: SimContext, name: str, notification: dict[str, Any]) -> None:
    await _send(ctx, name, notification)


async def _send(ctx: SimContext, name: str, notification: dict[str, Any]) -> str | None:
    """One request to webhook ``name``, no retry; the error, or None when it was answered 2xx."""
    with ctx.state.lock:
        config = dict(ctx.state.webhooks[name])
        data = {**notification, "secrets": dict(ctx.state.webhook_secrets.get(name, {}))}
    url = render(config["url"], data)
    headers = {"User-Agent": "proxmox-sync-http-client/0.1"}
    for item in config.get("header", []):
        parts = dict(p.split("=", 1) for p in item.split(",") if "=" in p)
        headers[parts["name"]] = render(base64.b64decode(parts["value"]).decode(), data)
    body = render(base64.b64decode(config["body"]).decode(), data) if config.get("body") else ""
    outcome: str
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT)) as session, \
                session.request(config.get("method", "post").upper(), url, data=body.encode(),
                                headers=headers) as response:
            await response.read()
            outcome = str(response.status)
    except (aiohttp.ClientError, TimeoutError) as e:
        outcome = f"error: {type(e).__name__}"
    with ctx.state.lock:
        ctx.state.webhook_sent.append((name, url, headers, body, outcome))
    if outcome.isdigit() and 200 <= int(outcome) < 300:
        return None
    # webhook.rs masks the secrets in its errors
    return f"HTTP request failed ({outcome})"
