"""The simulator accepts only what the official PVE 8.4 schema allows, and refuses the rest like PVE.

The shipped subset must match ``../shared/pve-api`` entry for entry (when that checkout is beside
the repository, as in CI), and every route the simulator serves must be in it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from pvesim import PveSimulator, SimServer
from pvesim.apidata import load_subset
from pvesim.context import ROUTES
from pvesim.schema import SchemaIndex
from tests import proxmox_support
from tests.proxmox_support import TOKEN_ID, TOKEN_SECRET

# fixtures from the support module (tests/conftest.py may import them too)
pve_sim = proxmox_support.pve_sim
pve_cipher = proxmox_support.pve_cipher
pve_hypervisors = proxmox_support.pve_hypervisors

SHARED = Path(__file__).resolve().parents[3] / "shared" / "pve-api"
AUTH = {"Authorization": f"PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}"}

Sim = tuple[PveSimulator, SimServer]


def official(name: str) -> Any:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} is not checked out beside the repository")
    return json.loads(path.read_text(encoding="utf-8"))


def test_shipped_subset_is_an_unchanged_copy_of_the_official_schema() -> None:
    index = {(e["method"], e["path"]): e for e in official("endpoints-pve8.4.json")}
    subset = load_subset()
    for entry in subset["endpoints"]:
        assert index[(entry["method"], entry["path"])] == entry
    formats = official("formats.json")
    assert all(formats[k] == v for k, v in subset["formats"].items())


def test_every_route_and_parameter_the_simulator_accepts_is_in_the_schema() -> None:
    index = {(e["method"], e["path"]): e for e in official("endpoints-pve8.4.json")}
    shipped = {(e["method"], e["path"]) for e in load_subset()["endpoints"]}
    assert set(ROUTES) == shipped  # one handler per shipped endpoint, nothing more
    schema = SchemaIndex()
    for endpoint in schema.endpoints:
        official_names = {p["name"] for p in index[(endpoint.method, endpoint.path)]["params"]}
        accepted = {p["name"] for p in endpoint.spec["params"]}
        assert accepted <= official_names, endpoint.path
        assert index[(endpoint.method, endpoint.path)]["additionalProperties"] == 0


@pytest.fixture
def api(pve_sim: Sim) -> Iterator[tuple[requests.Session, str]]:
    _, server = pve_sim
    with requests.Session() as session:
        session.verify = server.ca_file
        session.trust_env = False  # REQUESTS_CA_BUNDLE must not replace our CA file
        session.headers.update(AUTH)
        yield session, f"{server.url}/api2/json"


def test_unknown_path_is_501(api: tuple[requests.Session, str]) -> None:
    session, base = api
    answer = session.get(f"{base}/nodes/pve1/qemu/100/teleport")
    assert answer.status_code == 501 and answer.reason == "Method 'GET /nodes/pve1/qemu/100/teleport' not implemented"
    assert session.post(f"{base}/cluster/resources").status_code == 501  # known path, wrong method
    assert session.get(f"{base}/access/users").status_code == 501  # in PVE, but not simulated


@pytest.mark.parametrize(
    ("method", "path", "params", "field", "message"),
    [
        ("POST", "/nodes/pve1/qemu/100/status/start", {"full": "1"}, "full",
         "property is not defined in schema and the schema does not allow additional properties"),
        ("POST", "/nodes/pve1/qemu/9000/clone", {"newid": "150", "full": "true"}, "full",
         "type check ('boolean') failed - got 'true'"),
        ("POST", "/nodes/pve1/qemu/9000/clone", {"newid": "150", "full": "True"}, "full",
         "type check ('boolean') failed - got 'True'"),
        ("POST", "/nodes/pve1/qemu/9000/clone", {}, "newid", "property is missing and it is not optional"),
        ("POST", "/nodes/pve1/qemu/9000/clone", {"newid": "99"}, "newid", "value must have a minimum value of 100"),
        ("GET", "/nodes/pve1/qemu/abc/status/current", {}, "vmid", "type check ('integer') failed - got 'abc'"),
        ("GET", "/nodes/-pve1/qemu/100/status/current", {}, "node", "invalid format"),
        ("POST", "/nodes/pve1/qemu/100/snapshot", {"snapname": "1st"}, "snapname", "invalid format"),
        ("POST", "/nodes/pve1/qemu/100/snapshot", {"snapname": "s" * 41}, "snapname",
         "value may only be 40 characters long"),
        ("GET", "/nodes/pve1/storage/9bad/content", {}, "storage", "invalid format"),
        ("GET", "/cluster/resources", {"type": "vms"}, "type", "does not have a value in the enumeration"),
        ("POST", "/nodes/pve1/vzdump", {"vmid": "100", "mode": "fast"}, "mode", "enumeration"),
        ("PUT", "/nodes/pve1/qemu/100/resize", {"disk": "scsi0", "size": "ten"}, "size",
         "value does not match the regex pattern"),
        ("POST", "/nodes/pve1/qemu/100/config", {"net0": "virtio,bridge=vmbr0,colour=blue"}, "net0",
         "property 'colour' is not defined"),
        ("POST", "/nodes/pve1/qemu/100/config", {"net0": "virtio,tag=ten"}, "net0", "type check ('integer')"),
        ("POST", "/nodes/pve1/qemu/100/config", {"net0": "virtio,bridge=vmbr0,tag=2,tag=3"}, "net0",
         "duplicate key in comma-separated list property: tag"),
        ("POST", "/nodes/pve1/qemu/100/config", {"net0": "virtio=BC:24:11:00:00:01,macaddr=BC:24:11:00:00:02"},
         "net0", "duplicate key in comma-separated list property: macaddr"),  # virtio= is an alias of macaddr
        ("POST", "/nodes/pve1/qemu/100/config", {"net0": "virtio,bridge="}, "net0", "missing key"),
        ("POST", "/nodes/pve1/qemu/100/config", {"agent": "enabled=maybe"}, "agent", "type check ('boolean')"),
        ("PUT", "/nodes/pve1/lxc/200/config", {"ipconfig0": "ip=dhcp"}, "ipconfig0", "not defined in schema"),
        ("POST", "/nodes/pve1/lxc/200/status/reset", {}, None, None),
        # the backup endpoints
        ("PUT", "/nodes/pve1/storage/local/content/local%3Abackup%2Fx.vma.zst", {"protected": "yes"}, "protected",
         "type check ('boolean') failed - got 'yes'"),
        ("POST", "/cluster/backup", {"schedule": "02:00", "all": "1", "mode": "fast"}, "mode", "enumeration"),
        ("POST", "/cluster/backup", {"schedule": "02:00", "all": "1", "colour": "blue"}, "colour",
         "not defined in schema"),
        ("PUT", "/cluster/backup/pvebot-acme-nightly", {"enabled": "true"}, "enabled", "type check ('boolean')"),
        ("GET", "/cluster/jobs/schedule-analyze", {}, "schedule", "property is missing and it is not optional"),
        ("GET", "/cluster/jobs/schedule-analyze", {"schedule": "02:00", "iterations": "0"}, "iterations",
         "minimum value of 1"),
        ("GET", "/cluster/jobs/schedule-analyze", {"schedule": "every full moon"}, "schedule",
         "invalid calendar event 'every full moon' - unable to parse calendar event at 'every full moon' - "
         'Context("weekday")'),
        ("GET", "/nodes/pve1/tasks", {"source": "attic"}, "source", "enumeration"),
        ("GET", "/cluster/backup/pvebot-acme-nightly", {"verbose": "1"}, "verbose", "not defined in schema"),
    ],
)
def test_parameters_the_schema_rejects_are_400(
    api: tuple[requests.Session, str], method: str, path: str, params: dict[str, str], field: str | None,
    message: str | None,
) -> None:
    session, base = api
    answer = session.request(method, f"{base}{path}", **({"params": params} if method == "GET" else {"data": params}))
    if field is None:  # containers have no reset endpoint at all
        assert answer.status_code == 501
        return
    assert answer.status_code == 400, answer.reason
    assert answer.reason == "Parameter verification failed."
    body = answer.json()
    assert body["data"] is None and message in body["errors"][field]


def test_booleans_inside_property_strings_take_pve_words(api: tuple[requests.Session, str]) -> None:
    # top-level booleans are only 0/1, but inside a property string PVE reads yes/on/true too
    session, base = api
    answer = session.post(f"{base}/nodes/pve1/qemu/100/config", data={"agent": "enabled=yes,fstrim_cloned_disks=on"})
    assert answer.status_code == 200, answer.reason


def test_bad_or_missing_token_is_401_with_empty_body(pve_sim: Sim) -> None:
    _, server = pve_sim
    with requests.Session() as session:
        session.trust_env = False
        bad = session.get(f"{server.url}/api2/json/version", verify=server.ca_file,
                          headers={"Authorization": f"PVEAPIToken={TOKEN_ID}=wrong"})
        missing = session.get(f"{server.url}/api2/json/version", verify=server.ca_file)
    assert (bad.status_code, bad.text) == (401, "")
    assert missing.status_code == 401


def test_privileges_are_403(pve_sim: Sim) -> None:
    sim, server = pve_sim
    sim.add_token("ops@pve!power", "pw", privileges={"VM.PowerMgmt"})
    with requests.Session() as session:
        session.trust_env = False
        session.headers["Authorization"] = "PVEAPIToken=ops@pve!power=pw"
        denied = session.get(f"{server.url}/api2/json/nodes/pve1/qemu/100/config", verify=server.ca_file)
        allowed = session.post(f"{server.url}/api2/json/nodes/pve1/qemu/100/status/stop", verify=server.ca_file)
    assert denied.status_code == 403 and denied.reason == "Permission check failed (/vms/100, VM.Audit)"
    assert allowed.status_code == 200


def test_async_answers_are_real_upids(api: tuple[requests.Session, str]) -> None:
    session, base = api
    upid = session.post(f"{base}/nodes/pve1/qemu/100/status/reboot").json()["data"]
    fmt = load_subset()["formats"]["UPID"]
    m = re.match(fmt, upid)
    assert m and m.group(1) == "pve1" and m.group(6) == "qmreboot" and m.group(7) == "100"
    assert m.group(8) == TOKEN_ID
    status = session.get(f"{base}/nodes/pve1/tasks/{upid}/status").json()["data"]
    assert status["status"] == "running" and status["upid"] == upid and "exitstatus" not in status
    log = session.get(f"{base}/nodes/pve1/tasks/{upid}/log", params={"start": 0, "limit": 10}).json()
    assert "total" in log and isinstance(log["data"], list)


def test_delete_running_and_next_id(api: tuple[requests.Session, str]) -> None:
    session, base = api
    running = session.delete(f"{base}/nodes/pve1/qemu/100", params={"purge": 1})
    assert running.status_code == 500 and running.reason == "VM 100 is running - destroy failed"
    assert session.get(f"{base}/cluster/nextid").json() == {"data": "103"}
    taken = session.get(f"{base}/cluster/nextid", params={"vmid": 100})
    assert taken.status_code == 400 and "already exists" in taken.json()["errors"]["vmid"]


def test_vzdump_for_a_guest_on_another_node_answers_ok(api: tuple[requests.Session, str]) -> None:
    session, base = api
    assert session.post(f"{base}/nodes/pve2/vzdump", data={"vmid": "100", "storage": "local"}).json() == {
        "data": "OK"
    }
