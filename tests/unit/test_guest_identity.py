"""Which witnesses tell one guest from the next one with its VMID, read from configs as Proxmox writes them."""

from __future__ import annotations

from adapters.proxmox.mapping import identity_from_config
from core.model import GuestIdentity

QEMU = {
    "name": "db-01",
    "smbios1": "uuid=7A3C0F52-9E1B-4D7C-8F00-2B61C4E5D9A1",
    "meta": "creation-qemu=9.0.2,ctime=1764547200",
    "vmgenid": "0d1f9a8e-6c2b-4b1e-9f3a-5e7c8d9a0b1c",
    "net0": "virtio=BC:24:11:2A:3B:4C,bridge=vmbr0",
    "cores": "2",
}
LXC = {
    "hostname": "ct-01",
    "net0": "name=eth0,bridge=vmbr0,hwaddr=bc:24:11:5d:6e:7f,ip=dhcp,type=veth",
    "net1": "name=eth1,bridge=vmbr1,hwaddr=BC:24:11:01:02:03,type=veth",
}


def test_qemu_is_known_by_its_smbios_uuid_and_creation_time() -> None:
    found = identity_from_config("qemu", QEMU)
    assert found.uuid == "7a3c0f52-9e1b-4d7c-8f00-2b61c4e5d9a1"
    assert found.created == 1764547200
    assert found.strong


def test_reconfiguring_a_vm_keeps_it_the_same_vm() -> None:
    recorded = identity_from_config("qemu", QEMU)
    changed = {**QEMU, "cores": "8", "name": "db-01-renamed", "net0": "virtio=BC:24:11:FF:FF:FF,bridge=vmbr1",
               # qemu-server renews the generation id on rollback and restore: not a new VM
               "vmgenid": "11111111-2222-4333-8444-555555555555"}
    assert recorded.same_guest(identity_from_config("qemu", changed))


def test_a_new_vm_in_the_same_vmid_is_another_vm() -> None:
    recorded = identity_from_config("qemu", QEMU)
    newcomer = {**QEMU, "smbios1": "uuid=0b9d7c1e-2f3a-4b5c-8d6e-7f8091a2b3c4", "meta": "ctime=1764550000"}
    assert not recorded.same_guest(identity_from_config("qemu", newcomer))
    # either witness alone is enough to tell them apart
    assert not recorded.same_guest(identity_from_config("qemu", {**QEMU, "meta": "ctime=1764550000"}))


def test_a_witness_that_vanished_is_never_taken_for_agreement() -> None:
    recorded = identity_from_config("qemu", QEMU)
    assert not recorded.same_guest(identity_from_config("qemu", {"name": "db-01"}))


def test_containers_are_known_by_their_macs_and_survive_a_nic_change() -> None:
    recorded = identity_from_config("lxc", LXC)
    assert recorded.macs == frozenset({"BC:24:11:5D:6E:7F", "BC:24:11:01:02:03"})
    one_nic_less = {k: v for k, v in LXC.items() if k != "net1"}
    assert recorded.same_guest(identity_from_config("lxc", one_nic_less))
    clone = {"hostname": "ct-01", "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:99:88:77,type=veth"}
    assert not recorded.same_guest(identity_from_config("lxc", clone))


def test_with_no_witness_the_name_stands_in() -> None:
    bare = identity_from_config("lxc", {"hostname": "old"})
    assert not bare.strong
    assert bare.same_guest(GuestIdentity(name="old"))
    assert not bare.same_guest(GuestIdentity(name="new"))


def test_identity_travels_as_json_and_back() -> None:
    for found in (identity_from_config("qemu", QEMU), identity_from_config("lxc", LXC), GuestIdentity()):
        assert GuestIdentity.from_dict(found.to_dict()) == found
