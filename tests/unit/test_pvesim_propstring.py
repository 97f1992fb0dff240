"""The simulator's own property-string parser reads and writes like pve-common's JSONSchema.pm."""

from __future__ import annotations

import pytest

from pvesim.propstring import PropertyStringError, format_property_string, parse_boolean, parse_property_string


@pytest.mark.parametrize(
    ("value", "default_key", "expected"),
    [
        ("virtio=BC:24:11:2A:3B:4C,bridge=vmbr0,firewall=1,tag=20", "model",
         {"virtio": "BC:24:11:2A:3B:4C", "bridge": "vmbr0", "firewall": "1", "tag": "20"}),
        ("local-lvm:vm-100-disk-0,size=32G", "file", {"file": "local-lvm:vm-100-disk-0", "size": "32G"}),
        ("size=32G,local-lvm:vm-100-disk-0", "file", {"size": "32G", "file": "local-lvm:vm-100-disk-0"}),
        ("file=local:iso/debian-12.iso,media=cdrom", "file", {"file": "local:iso/debian-12.iso", "media": "cdrom"}),
        ("2048", "current", {"current": "2048"}),
        # the key runs to the first '=', the value keeps the rest (base64 padding in smbios1)
        ("base64=1,serial=Zm9vYmE=,manufacturer=UHJveG1veA==", None,
         {"base64": "1", "serial": "Zm9vYmE=", "manufacturer": "UHJveG1veA=="}),
        # empty and blank parts are skipped
        (",bridge=vmbr0,,tag=20, ,", None, {"bridge": "vmbr0", "tag": "20"}),
        ("", None, {}),
        ("   ", "file", {}),
        # nothing is trimmed or unquoted: these keys and values are taken as written
        ("bridge=vmbr0, tag=20", None, {"bridge": "vmbr0", " tag": "20"}),
        ('name="web 01",ip=dhcp', None, {"name": '"web 01"', "ip": "dhcp"}),
        ("ip=10.0.0.5/24 ", None, {"ip": "10.0.0.5/24 "}),
    ],
)
def test_parses_like_pve(value: str, default_key: str | None, expected: dict[str, str]) -> None:
    parsed = parse_property_string(value, default_key=default_key)
    assert parsed == expected
    assert list(parsed) == list(expected)  # in the order written


@pytest.mark.parametrize(
    ("value", "default_key", "message"),
    [
        ("bridge=vmbr0,tag=20,tag=30", None, "duplicate key in comma-separated list property: tag"),
        ("local-lvm:vm-100-disk-0,local-lvm:vm-100-disk-1", "file",
         "duplicate key in comma-separated list property: file"),
        ("local-lvm:vm-100-disk-0,file=local-lvm:vm-100-disk-1", "file",
         "duplicate key in comma-separated list property: file"),
        ("file=local-lvm:vm-100-disk-1,local-lvm:vm-100-disk-0", "file",
         "duplicate key in comma-separated list property: file"),
        ("virtio,bridge=vmbr0", None, "value without key, but schema does not define a default key"),
        ("bridge=vmbr0,=20", None, "missing key in comma-separated list property"),
        ("bridge=vmbr0,tag=", None, "missing key in comma-separated list property"),
        ("ip=10.0.0.5/24\ngw=10.0.0.1", None, "missing key in comma-separated list property"),
    ],
)
def test_refuses_what_pve_refuses(value: str, default_key: str | None, message: str) -> None:
    with pytest.raises(PropertyStringError) as refused:
        parse_property_string(value, default_key=default_key)
    assert str(refused.value) == message


def test_writes_the_default_key_first_and_bare() -> None:
    props = {"size": "32G", "file": "local-lvm:vm-100-disk-0", "cache": "writeback"}
    written = format_property_string(props, default_key="file")
    assert written == "local-lvm:vm-100-disk-0,size=32G,cache=writeback"
    assert parse_property_string(written, default_key="file") == props
    assert format_property_string({"bridge": "vmbr0", "tag": "20"}) == "bridge=vmbr0,tag=20"


def test_a_default_value_holding_an_equals_sign_keeps_its_key() -> None:
    # bare, "a=b" would read back as key a
    written = format_property_string({"file": "odd=name", "size": "1G"}, default_key="file")
    assert written == "file=odd=name,size=1G"
    assert parse_property_string(written, default_key="file") == {"file": "odd=name", "size": "1G"}


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"description": "a,b"}, "illegal value with commas for description"),
        ({"tag": ""}, "empty value for tag"),
        ({"": "x"}, "illegal key ''"),
        ({"a=b": "x"}, "illegal key 'a=b'"),
        ({"a,b": "x"}, "illegal key 'a,b'"),
    ],
)
def test_refuses_to_write_what_it_could_not_read_back(props: dict[str, str], message: str) -> None:
    with pytest.raises(PropertyStringError) as refused:
        format_property_string(props)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("on", True), ("YES", True), ("True", True), ("0", False), ("off", False), ("No", False),
     ("FALSE", False), ("2", None), ("", None), ("yes ", None), ("enabled", None)],
)
def test_booleans_inside_property_strings(value: str, expected: bool | None) -> None:
    assert parse_boolean(value) is expected
