"""Package updates and quorum through the gateway, against the simulator over HTTPS, and the simulator like PVE.

``GET apt/update`` reads the cache of the last ``apt-get update`` (a new version offered is not listed before
``POST apt/update`` ran), ``notify=1`` marks what it announced in ``NotifyStatus``, a boolean given as
``true`` is refused as PVE refuses it, ``apt/versions`` gives the running pve-manager, ``/cluster/status`` the
quorum; a token without ``Sys.Modify`` gets 403.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.crypto import FernetCipher
from adapters.proxmox import ProxmoxHypervisor, ProxmoxHypervisors
from core.chat import ConversationRef, MessageRef, Reply
from core.errors import PermissionDenied
from pvesim import PveSimulator, SimServer
from tests import proxmox_support
from tests.proxmox_support import TOKEN_ID, TOKEN_SECRET, make_cluster, wait_task

pve_sim = proxmox_support.pve_sim
pve_cipher = proxmox_support.pve_cipher
pve_hypervisors = proxmox_support.pve_hypervisors
Sim = tuple[PveSimulator, SimServer]


@pytest.fixture
def hv(pve_sim: Sim, pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher) -> ProxmoxHypervisor:
    return pve_hypervisors.for_cluster(make_cluster(pve_sim[1], cipher=pve_cipher))


def _raw(server: SimServer, method: str, path: str, **data: Any) -> Any:
    session = requests.Session()
    session.trust_env = False
    return session.request(method, f"{server.url}/api2/json{path}", data=data or None,
                           headers={"Authorization": f"PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}"},
                           verify=server.ca_file)


def test_updates_come_from_the_cache_of_the_last_apt_update(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    sim, server = pve_sim
    sim.offer_update("pve1", "libc6", "2.36-9+deb12u10", old_version="2.36-9+deb12u9")
    sim.offer_update("pve1", "pve-manager", "8.4.2", old_version="8.4.1", origin="Proxmox", cached=False)
    assert [u.package for u in hv.apt_updates("pve1")] == ["libc6"]
    status = wait_task(hv, hv.refresh_updates("pve1"))
    assert status.ok
    found = {u.package: u for u in hv.apt_updates("pve1")}
    assert set(found) == {"libc6", "pve-manager"}
    assert found["pve-manager"].proxmox and not found["libc6"].proxmox
    assert (found["pve-manager"].old_version, found["pve-manager"].version) == ("8.4.1", "8.4.2")
    assert hv.apt_updates("pve2") == []
    # notify=1 marks each version as announced; the gateway never asks Proxmox to notify
    rows = _raw(server, "GET", "/nodes/pve1/apt/update").json()["data"]
    assert all("NotifyStatus" not in row for row in rows)
    upid = _raw(server, "POST", "/nodes/pve1/apt/update", notify=1).json()["data"]
    assert upid.startswith("UPID:pve1:") and ":aptupdate:" in upid
    wait_task(hv, hv.refresh_updates("pve1"))  # a later run without notify keeps what was announced
    rows = _raw(server, "GET", "/nodes/pve1/apt/update").json()["data"]
    assert {row["Package"]: row["NotifyStatus"] for row in rows} == {"libc6": "2.36-9+deb12u10",
                                                                     "pve-manager": "8.4.2"}
    refused = _raw(server, "POST", "/nodes/pve1/apt/update", notify="true")
    assert refused.status_code == 400


def test_versions_and_quorum(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    sim, _ = pve_sim
    assert hv.proxmox_version("pve1") == "8.4.1"
    state = hv.cluster_state()
    assert state.quorate and [(n.name, n.online) for n in state.nodes] == [("pve1", True), ("pve2", True)]
    with sim.state.lock:
        sim.state.quorate = False
        sim.state.nodes["pve2"].online = False
    state = hv.cluster_state()
    assert not state.quorate and [n.online for n in state.nodes] == [True, False]


def test_updates_need_sys_modify(pve_sim: Sim, pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher) -> None:
    sim, server = pve_sim
    sim.add_token("audit@pve!ro", "ro-secret", privileges=["Sys.Audit", "VM.Audit"])
    cluster = make_cluster(server, cipher=pve_cipher, token_id="audit@pve!ro", secret="ro-secret")
    ro = pve_hypervisors.for_cluster(cluster)
    assert ro.proxmox_version("pve1") == "8.4.1"
    with pytest.raises(PermissionDenied):
        ro.apt_updates("pve1")


def test_a_node_running_a_new_proxmox_version_is_announced_once(tmp_path: Path) -> None:
    from core.model import Topic
    from core.principal import Scope
    from core.services import node_updates, notifications, outbox
    from tests.e2e.shell_world import world
    from tests.support import principal

    with world(tmp_path, queue="embedded") as w:
        sent: list[tuple[str, str]] = []

        class Recorder:
            def post(self, conversation: ConversationRef, reply: Reply) -> MessageRef:
                sent.append((conversation.channel, reply.plain_text()))
                return MessageRef(conversation=conversation, message_id=str(len(sent)))

            def update(self, message: MessageRef, reply: Reply) -> None:
                raise AssertionError("notifications are never edited")

        w.app.notifier.add("slack", Recorder())
        notifications.subscribe(w.app.deps, principal(w.app.storage, "root@host.example"), topic=Topic.UPDATES,
                                channel="slack:C0HOST")
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            (cluster,) = uow.clusters.list()

        def announced() -> list[str]:
            node_updates.check_cluster(w.app.deps, cluster)
            outbox.deliver_due(w.app.deps, policy=outbox.Policy())
            return [text for _, text in sent if "Proxmox VE" in text]

        assert announced() == []  # what each node runs when first seen is no news
        with w.sim.state.lock:
            manager = next(r for r in w.sim.state.nodes["pve1"].versions if r["Package"] == "pve-manager")
            manager["Version"] = manager["ManagerVersion"] = "8.4.2"
        (text,) = announced()
        assert "lab/pve1 now runs Proxmox VE 8.4.2 (was 8.4.1)" in text, text
        assert len(announced()) == 1  # once
