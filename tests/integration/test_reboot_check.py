"""``node upgrade``'s reboot check, run by a real ``sh`` against a directory standing in for a node's /.

Proxmox's kernel packages leave no /run/reboot-required: a kernel to boot that is not the running one
(the pinned one, else the newest installed, in version order) is what says a reboot is due.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from core.services.node_updates import REBOOT_CHECK, reboot_reason

RUNNING = "6.8.12-9-pve"


def check(node: Path, tmp_path: Path) -> str | None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    uname = bin_dir / "uname"
    uname.write_text(f'#!/bin/sh\n[ "$1" = -r ] && echo {RUNNING}\n')
    uname.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PVEBOT_NODE_ROOT": str(node)}
    out = subprocess.run(["sh", "-c", REBOOT_CHECK], env=env, capture_output=True, text=True, check=True)
    return reboot_reason(out.stdout.splitlines())


@pytest.fixture
def node(tmp_path: Path) -> Path:
    root = tmp_path / "node"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / f"vmlinuz-{RUNNING}").write_text("")
    return root


def installed(node: Path, *releases: str) -> None:
    for release in releases:
        (node / "boot" / f"vmlinuz-{release}").write_text("")


def test_the_running_kernel_being_the_newest_needs_no_reboot(node: Path, tmp_path: Path) -> None:
    installed(node, "6.8.12-8-pve", "6.5.13-6-pve")
    assert check(node, tmp_path) is None


def test_a_newer_kernel_installed_needs_a_reboot_in_version_order(node: Path, tmp_path: Path) -> None:
    installed(node, "6.8.12-10-pve")  # after -9 by version, before it by plain sort
    assert check(node, tmp_path) == f"kernel 6.8.12-10-pve is installed, {RUNNING} runs"


def test_a_pinned_kernel_is_the_one_to_boot(node: Path, tmp_path: Path) -> None:
    installed(node, "6.8.12-10-pve", "6.5.13-6-pve")
    (node / "etc" / "kernel").mkdir(parents=True)
    pin = node / "etc" / "kernel" / "proxmox-boot-pin"
    pin.write_text(f"{RUNNING}\n")  # pinned to what runs: the newer one waits
    assert check(node, tmp_path) is None
    pin.write_text("6.5.13-6-pve\n")
    assert check(node, tmp_path) == f"kernel 6.5.13-6-pve is installed, {RUNNING} runs"


def test_debian_s_flag_file_asks_for_a_reboot_too(node: Path, tmp_path: Path) -> None:
    (node / "run").mkdir()
    (node / "run" / "reboot-required").write_text("*** System restart required ***\n")
    assert check(node, tmp_path) == "packages ask for it"


def test_a_node_without_kernels_in_boot_is_not_guessed_at(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check(empty, tmp_path) is None
