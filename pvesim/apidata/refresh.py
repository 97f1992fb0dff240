"""Regenerate the shipped schema subset from the official dump in ``../shared/pve-api``.

Usage: ``python -m pvesim.apidata.refresh [../shared/pve-api]``. Entries are copied
unchanged so that a test can compare them with the source.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Every (method, path) the gateway calls, and therefore every one the simulator serves.
USED_ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("GET", "/cluster/resources"),
    ("GET", "/cluster/nextid"),
    ("GET", "/version"),
    ("GET", "/access/permissions"),
    *(
        (method, path.format(kind=kind))
        for kind in ("qemu", "lxc")
        for method, path in (
            ("GET", "/nodes/{{node}}/{kind}/{{vmid}}/status/current"),
            ("POST", "/nodes/{{node}}/{kind}/{{vmid}}/status/start"),
            ("POST", "/nodes/{{node}}/{kind}/{{vmid}}/status/shutdown"),
            ("POST", "/nodes/{{node}}/{kind}/{{vmid}}/status/stop"),
            ("POST", "/nodes/{{node}}/{kind}/{{vmid}}/status/reboot"),
            ("POST", "/nodes/{{node}}/{kind}/{{vmid}}/status/suspend"),
            ("POST", "/nodes/{{node}}/{kind}/{{vmid}}/status/resume"),
            ("GET", "/nodes/{{node}}/{kind}/{{vmid}}/config"),
            ("PUT", "/nodes/{{node}}/{kind}/{{vmid}}/config"),
            ("GET", "/nodes/{{node}}/{kind}/{{vmid}}/pending"),
            ("POST", "/nodes/{{node}}/{kind}/{{vmid}}/clone"),
            ("PUT", "/nodes/{{node}}/{kind}/{{vmid}}/resize"),
            ("DELETE", "/nodes/{{node}}/{kind}/{{vmid}}"),
            ("GET", "/nodes/{{node}}/{kind}/{{vmid}}/snapshot"),
            ("POST", "/nodes/{{node}}/{kind}/{{vmid}}/snapshot"),
            ("POST", "/nodes/{{node}}/{kind}/{{vmid}}/snapshot/{{snapname}}/rollback"),
            ("DELETE", "/nodes/{{node}}/{kind}/{{vmid}}/snapshot/{{snapname}}"),
            ("POST", "/nodes/{{node}}/{kind}"),
        )
    ),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/reset"),
    ("POST", "/nodes/{node}/qemu/{vmid}/config"),
    ("GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces"),
    ("GET", "/nodes/{node}/lxc/{vmid}/interfaces"),
    ("PUT", "/nodes/{node}/qemu/{vmid}/cloudinit"),
    ("GET", "/nodes/{node}/network"),
    ("POST", "/nodes/{node}/vzdump"),
    ("GET", "/nodes/{node}/storage/{storage}/content"),
    ("PUT", "/nodes/{node}/storage/{storage}/content/{volume}"),
    ("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}"),
    ("GET", "/cluster/backup"),
    ("POST", "/cluster/backup"),
    ("GET", "/cluster/backup/{id}"),
    ("PUT", "/cluster/backup/{id}"),
    ("DELETE", "/cluster/backup/{id}"),
    ("GET", "/cluster/jobs/schedule-analyze"),
    ("GET", "/nodes/{node}/tasks"),
    ("GET", "/nodes/{node}/tasks/{upid}/status"),
    ("GET", "/nodes/{node}/tasks/{upid}/log"),
    ("DELETE", "/nodes/{node}/tasks/{upid}"),
    ("GET", "/cluster/status"),
    ("GET", "/nodes/{node}/apt/update"),
    ("POST", "/nodes/{node}/apt/update"),
    ("GET", "/nodes/{node}/apt/versions"),
    # notification targets and matchers (pvebot admin events install/status/uninstall)
    ("GET", "/cluster/notifications/endpoints/webhook"),
    ("POST", "/cluster/notifications/endpoints/webhook"),
    ("GET", "/cluster/notifications/endpoints/webhook/{name}"),
    ("PUT", "/cluster/notifications/endpoints/webhook/{name}"),
    ("DELETE", "/cluster/notifications/endpoints/webhook/{name}"),
    ("GET", "/cluster/notifications/matchers"),
    ("POST", "/cluster/notifications/matchers"),
    ("GET", "/cluster/notifications/matchers/{name}"),
    ("PUT", "/cluster/notifications/matchers/{name}"),
    ("DELETE", "/cluster/notifications/matchers/{name}"),
    ("GET", "/cluster/notifications/targets"),
    ("POST", "/cluster/notifications/targets/{name}/test"),
)

SOURCE_NOTE = (
    "Subset of ../shared/pve-api/endpoints-pve8.4.json (PVE API viewer apidata.js, proxmox/pve-docs 8.4.2, "
    "stable-bookworm, commit ae1bf37ed06b2fab39c9fa28a0e6c18e6435b7de), entries copied unchanged; formats from "
    "../shared/pve-api/formats.json (proxmox/pve-common stable-bookworm commit "
    "91962804ffce2cdb70261f03b2df5c0b7a0a2c4d). Regenerate with: python -m pvesim.apidata.refresh"
)


def build(source_dir: Path) -> dict[str, object]:
    endpoints = json.loads((source_dir / "endpoints-pve8.4.json").read_text(encoding="utf-8"))
    formats = json.loads((source_dir / "formats.json").read_text(encoding="utf-8"))
    index = {(e["method"], e["path"]): e for e in endpoints}
    missing = [key for key in USED_ENDPOINTS if key not in index]
    if missing:
        raise SystemExit(f"not in the PVE 8.4 schema: {missing}")
    return {
        "_source": SOURCE_NOTE,
        "formats": {k: v for k, v in formats.items() if not k.startswith("_") and isinstance(v, str)},
        "endpoints": [index[key] for key in USED_ENDPOINTS],
    }


def main(argv: list[str]) -> None:
    source = Path(argv[0] if argv else "../shared/pve-api")
    target = Path(__file__).with_name("endpoints-pve8.4-subset.json")
    target.write_text(json.dumps(build(source), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
