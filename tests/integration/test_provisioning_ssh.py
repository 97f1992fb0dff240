"""A cluster's ``ssh:`` block in the provisioning file: checked with clear lines, applied, exported back.

A node the file gives no ``host_key`` keeps the pin ``cluster trust`` made; a node the file drops is removed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.yamlfile import LocatedDocument
from core.errors import ConfigurationError
from core.principal import Scope
from core.services import provisioning
from tests.support import STANDARD_DOC, TOKEN_ENV, make_storage, provision

PIN = "SHA256:" + "a" * 43
SSH = ("    ssh:\n      nodes:\n"
       f'        - {{name: pve1, host: 10.0.0.11, host_key: "{PIN}"}}\n'
       "        - {name: pve2, host: 10.0.0.12, port: 2222}\n")


def _doc(ssh: str) -> str:
    marker = "    shared_templates: [9000]\n"
    assert marker in STANDARD_DOC
    return STANDARD_DOC.replace(marker, marker + ssh, 1)


def _problems(text: str) -> str:
    located = LocatedDocument(text, source="p.yaml")
    with pytest.raises(ConfigurationError) as caught:
        provisioning.validate(located.data, locate=located.locate, env=TOKEN_ENV)
    return caught.value.user_message


def test_bad_ssh_blocks_say_where_and_why() -> None:
    said = _problems(_doc("""    ssh:
      user: "Root User"
      authorized_keys: "relative/path"
      nodes:
        - {name: pve1, host: "10.0.0.11; rm", host_key: "SHA256:short"}
        - {name: pve2, host: 10.0.0.12, port: 70000, extra: 1}
"""))
    assert "clusters[0].ssh.user" in said and "a login name like root" in said
    assert "clusters[0].ssh.authorized_keys" in said and "absolute path" in said
    assert "clusters[0].ssh.nodes[0].host" in said
    assert "clusters[0].ssh.nodes[0].host_key" in said and "ssh-keygen -lf" in said
    assert "clusters[0].ssh.nodes[1]" in said and "extra" in said
    assert "needs at least one node" in _problems(_doc("    ssh:\n      nodes: []\n"))


def test_apply_keeps_a_trusted_pin_and_exports_the_block(tmp_path: Path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'p.db'}")
    changes = provision(storage, _doc(SSH))
    assert "+ ssh node lab/pve1" in changes and "+ ssh node lab/pve2" in changes
    with storage.uow_factory(Scope.everything()) as uow:
        cluster = uow.clusters.by_name("lab")
        assert cluster is not None and cluster.id is not None
        nodes = {n.node: n for n in uow.ssh.nodes(cluster.id)}
        assert (nodes["pve1"].host_key, nodes["pve2"].host_key, nodes["pve2"].port) == (PIN, None, 2222)
        assert nodes["pve1"].keys_file == "/etc/pve/priv/authorized_keys" and nodes["pve1"].user == "root"
        nodes["pve2"].host_key = "SHA256:" + "b" * 43  # as `cluster trust` pins it
        uow.commit()
    assert provision(storage, _doc(SSH)) == []  # the file gives pve2 no key: the trusted pin stays
    with storage.uow_factory(Scope.everything()) as uow:
        exported = provisioning.export(uow)
    (lab,) = [c for c in exported["clusters"] if c["name"] == "lab"]
    assert lab["ssh"]["nodes"][1] == {"name": "pve2", "host": "10.0.0.12", "port": 2222,
                                      "host_key": "SHA256:" + "b" * 43}
    assert "- ssh node lab/pve2" in provision(storage, _doc(SSH.split("        - {name: pve2")[0]))
    assert "- ssh node lab/pve1" in provision(storage, STANDARD_DOC)
