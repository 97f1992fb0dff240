"""Request validation driven by the official PVE 8.4 schema (the subset shipped in ``pvesim/apidata``).

It answers like ``PVE::JSONSchema``: an unknown path is 501, every parameter problem is a 400
``Parameter verification failed.`` with ``{"errors": {name: message}}``, booleans are only
``0``/``1``, and privileges come from each endpoint's ``permissions.check``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pvesim.apidata import load_subset
from pvesim.propstring import PropertyStringError, parse_boolean, parse_property_string
from pvesim.state import ApiError

# Formats the shipped formats.json does not carry. Our own approximations of pve-common's checks,
# kept loose on purpose: they only need to refuse what is clearly malformed.
EXTRA_FORMATS: dict[str, str] = {
    "pve-poolid": r"^[A-Za-z0-9.\-_]+(?:/[A-Za-z0-9.\-_]+)*$",
    "dns-name": r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?$",
    "pve-bridge-id": r"^(?i:[a-z][a-z0-9\-_.]*[a-z0-9])$",
}

# Endpoints whose schema leaves the check to code ("permissions": null or a description only).
CODE_CHECKED: dict[tuple[str, str], tuple[str, ...]] = {
    ("POST", "/nodes/{node}/qemu"): ("VM.Allocate", "VM.Backup"),
    ("POST", "/nodes/{node}/lxc"): ("VM.Allocate", "VM.Backup"),
    ("POST", "/nodes/{node}/vzdump"): ("VM.Backup",),
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    spec: dict[str, Any]
    regex: re.Pattern[str]

    def param_spec(self, name: str) -> dict[str, Any] | None:
        for p in self.spec["params"]:
            if p["name"] == name:
                return p
            if p["name"].endswith("[n]") and re.fullmatch(re.escape(p["name"][:-3]) + r"\d+", name):
                return p
        return None


class SchemaIndex:
    """Finds the endpoint of a request and checks its parameters and privileges."""

    def __init__(self) -> None:
        subset = load_subset()
        self.formats: dict[str, str] = {**EXTRA_FORMATS, **subset["formats"]}
        self.formats["pve-bridge-id"] = subset["formats"].get("pve-bridge-id/parse_id (generic id)", "")
        self.endpoints: list[Endpoint] = []
        for spec in subset["endpoints"]:
            pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(spec["path"]))
            self.endpoints.append(Endpoint(spec["method"], spec["path"], spec, re.compile(f"^{pattern}$")))

    def match(self, method: str, path: str) -> tuple[Endpoint, dict[str, str]]:
        for endpoint in self.endpoints:
            if endpoint.method == method:
                m = endpoint.regex.match(path)
                if m:
                    return endpoint, m.groupdict()
        raise ApiError(501, f"Method '{method} {path}' not implemented")

    @staticmethod
    def is_array(endpoint: Endpoint, name: str) -> bool:
        spec = endpoint.param_spec(name)
        return spec is not None and spec.get("type") == "array"

    def validate(self, endpoint: Endpoint, params: dict[str, str], *, lists: dict[str, list[str]] | None = None
                 ) -> None:
        errors: dict[str, str] = {}
        for name, value in params.items():
            spec = endpoint.param_spec(name)
            if spec is None:
                errors[name] = "property is not defined in schema and the schema does not allow additional properties"
                continue
            if spec.get("type") == "array":
                item = spec.get("items", {"type": "string"})
                problems = [p for p in (self._check(item, v) for v in (lists or {}).get(name, [value])) if p]
                if problems:
                    errors[name] = problems[0]
                continue
            problem = self._check(spec, value)
            if problem:
                errors[name] = problem
        for name in endpoint.spec["required_params"]:
            if name not in params:
                errors[name] = "property is missing and it is not optional"
        if errors:
            raise ApiError(400, "Parameter verification failed.", errors=errors)

    def _check(self, spec: dict[str, Any], value: str) -> str | None:
        kind = spec.get("type", "string")
        if kind == "boolean":
            # PVE takes exactly 0 or 1 here; "true" and Python's "True" are refused
            return None if value in ("0", "1") else f"type check ('boolean') failed - got '{value}'"
        if kind == "integer":
            if not re.fullmatch(r"[+-]?\d+", value):
                return f"type check ('integer') failed - got '{value}'"
            return self._range(spec, int(value))
        if kind == "number":
            try:
                return self._range(spec, float(value))
            except ValueError:
                return f"type check ('number') failed - got '{value}'"
        if "maxLength" in spec and len(value) > int(spec["maxLength"]):
            return f"value may only be {spec['maxLength']} characters long"
        if "enum" in spec and value not in spec["enum"]:
            return f"value '{value}' does not have a value in the enumeration '{', '.join(spec['enum'])}'"
        if "pattern" in spec and not re.fullmatch(_perl_regex(spec["pattern"]), value):
            return "value does not match the regex pattern"
        return self._format(spec, value)

    def _range(self, spec: dict[str, Any], number: float) -> str | None:
        if "minimum" in spec and number < float(spec["minimum"]):
            return f"value must have a minimum value of {spec['minimum']}"
        if "maximum" in spec and number > float(spec["maximum"]):
            return f"value must have a maximum value of {spec['maximum']}"
        return None

    def _format(self, spec: dict[str, Any], value: str) -> str | None:
        fmt = spec.get("format")
        if not isinstance(fmt, str):
            return None
        if fmt == "property-string" and "format_keys" in spec:
            return self._property_string(spec["format_keys"], value)
        if fmt.endswith("-list") and fmt[:-5] in self.formats:
            items = [v for v in re.split(r"[,;\s]+", value) if v]
            bad = [v for v in items if not re.fullmatch(self.formats[fmt[:-5]], v)]
            return f"invalid format - value '{bad[0]}' does not match format '{fmt[:-5]}'" if bad else None
        regex = self.formats.get(fmt)
        if regex and not re.fullmatch(regex, value):
            return f"invalid format - value does not match format '{fmt}'"
        return None

    def _property_string(self, keys: dict[str, Any], value: str) -> str | None:
        default_key = next((k for k, v in keys.items() if v.get("default_key")), None)
        try:
            props = parse_property_string(value, default_key=default_key)
        except PropertyStringError as e:
            return f"invalid format - {e}"
        seen: set[str] = set()
        for key, val in props.items():
            spec = keys.get(key)
            if spec is None:
                return f"invalid format - property '{key}' is not defined"
            # an alias (``virtio=MAC`` for ``macaddr=MAC``) stores its value under the other key
            name = spec.get("alias", key)
            if name in seen:
                return f"invalid format - duplicate key in comma-separated list property: {name}"
            seen.add(name)
            spec = keys.get(name, {})
            if spec.get("type") == "boolean":
                # inside a property string PVE reads 1|on|yes|true and 0|off|no|false
                problem = None if parse_boolean(val) is not None else f"type check ('boolean') failed - got '{val}'"
            else:
                problem = self._check(spec, val) if spec.get("type") else None
            if problem:
                return f"invalid format - {key}: {problem}"
        return None

    def check_privileges(
        self, endpoint: Endpoint, *, path_params: dict[str, str], params: dict[str, str],
        privileges: frozenset[str] | None,
    ) -> None:
        """Raise 403 like ``PVE::RPCEnvironment::check`` when the token lacks a privilege."""
        if privileges is None:
            return
        values = {**params, **path_params}
        check = endpoint.spec.get("permissions", {}).get("check")
        if check is None:
            needed = CODE_CHECKED.get((endpoint.method, endpoint.path))
            if needed and not privileges & set(needed):
                raise ApiError(403, f"Permission check failed (/vms/{values.get('vmid', '')}, {needed[0]})")
            return
        ok, failure = _evaluate(check, values, privileges)
        if not ok:
            raise ApiError(403, f"Permission check failed ({failure})")


def _evaluate(check: list[Any], values: dict[str, str], privileges: frozenset[str]) -> tuple[bool, str]:
    op = check[0]
    if op in ("and", "or"):
        results = [_evaluate(sub, values, privileges) for sub in check[1:]]
        passed = all(r[0] for r in results) if op == "and" else any(r[0] for r in results)
        failure = next((r[1] for r in results if not r[0]), "")
        return passed, failure
    if op == "perm":
        path_template, privs = check[1], check[2]
        options = dict(zip(check[3::2], check[4::2], strict=False))
        if "require_param" in options and options["require_param"] not in values:
            return False, f"{path_template}, {privs[0]}"
        path = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), ""), path_template)
        if options.get("any"):
            return bool(privileges & set(privs)), f"{path}, {'|'.join(privs)}"
        missing = [p for p in privs if p not in privileges]
        return not missing, f"{path}, {missing[0] if missing else ''}"
    return True, ""


def _perl_regex(pattern: str) -> str:
    # Perl's stringified qr// ("(?^:...)") is not Python syntax
    return pattern.replace("(?^:", "(?:")
