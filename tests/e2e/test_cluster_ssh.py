"""Clusters over SSH end to end: real sshd per node, the shell adapter, the job runner, approvals, the outbox.

pvebot's key pushed with a password read once from the environment, rotated without a gap and checked; a node
whose host key changed is refused before anything is sent, with a security line and an audit event; a wrong or
missing password says so; ``node upgrade`` waits for a second super_admin, streams apt's output (the stand-in
apt-get waits at a gate until the test has seen its first line in chat), reports the reboot, refuses a second
upgrade meanwhile, and ends with an ``updates`` event delivered to a subscribed channel.
"""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.crypto import FernetCipher
from adapters.shell.session import ShellSession
from adapters.ssh.keys import Ed25519KeyMaker
from bot.bootstrap import build_maintenance
from bot.processes import shell_session
from bot.yamlfile import dump
from core.model import SshKey, SshKeyState
from core.principal import Scope
from core.services import outbox, provisioning
from pvesim import SimServer
from tests.e2e.shell_world import ROOT as ROOT_DIR
from tests.e2e.shell_world import World, job_ids, world, world_doc
from tests.ssh_support import USER, SshCluster, ssh_cluster

pytestmark = pytest.mark.slow

ROOT, OPS, ALICE = "root@host.example", "ops@host.example", "alice@acme.example"
PASSWORD_ENV, WRONG_ENV = "LAB_NODE_PASSWORD", "LAB_WRONG_PASSWORD"


def _doc(ssh: SshCluster, *, pin: bool = True) -> Callable[[SimServer], str]:
    def doc(server: SimServer) -> str:
        text = world_doc(server).replace("    shared_templates: [9000]\n",
                                         "    shared_templates: [9000]\n" + ssh.yaml(pin=pin), 1)
        root = "  - {email: root@host.example, name: Root, role: super_admin}\n"
        assert root in text
        return text.replace(root, root + "  - {email: ops@host.example, name: Ops, role: super_admin}\n", 1)
    return doc


def _env(ssh: SshCluster) -> dict[str, str]:
    return {PASSWORD_ENV: ssh.password, WRONG_ENV: "not-" + ssh.password}


def _run(w: World, who: str, *lines: str) -> str:
    """The transcript once every job it started has settled and its last edit arrived."""
    shell, out = w.shell(who)
    shell.run(list(lines))
    for job in job_ids(out.getvalue()):
        w.wait_state(job, {"succeeded", "failed", "cancelled", "unknown"}, timeout=60)
        _shown(shell, out, re.compile(rf"\[job-{job}\] (✅ |❌ failed|⛔ cancelled|❓ outcome)"))
    return out.getvalue()


def _job(w: World, text: str) -> tuple[str, str]:
    job = job_ids(text)[-1]
    state = w.wait_state(job, {"succeeded", "failed", "cancelled", "unknown"}, timeout=60)
    return job, state


def _delivered(w: World, shell: ShellSession, out: io.StringIO, text: str) -> None:
    """Run the outbox sender (paced: one message a second per channel) until ``text`` reached the channel."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        outbox.deliver_due(w.app.deps)
        shell.flush()
        if text in out.getvalue():
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never delivered: {out.getvalue()}")


def _shown(shell: ShellSession, out: io.StringIO, text: str | re.Pattern[str]) -> str:
    """The transcript once ``text`` is in it (a job's last edit is written just after the job settles)."""
    def seen() -> bool:
        return bool(text.search(out.getvalue())) if isinstance(text, re.Pattern) else text in out.getvalue()

    deadline = time.monotonic() + 15
    while not seen() and time.monotonic() < deadline:
        time.sleep(0.1)
        shell.flush()
    return out.getvalue()


def _pvebot_lines(ssh: SshCluster) -> list[str]:
    return [line for line in ssh.keys_file.read_text().splitlines() if "pvebot:lab:" in line]


def _push(w: World) -> str:
    text = _run(w, ROOT, f"cluster keys push lab --password-env {PASSWORD_ENV}")
    assert _job(w, text)[1] == "succeeded", text
    return text


def test_push_rotate_and_health_end_to_end(tmp_path: Path) -> None:
    with ssh_cluster() as ssh, world(tmp_path, queue="embedded", doc=_doc(ssh), extra_env=_env(ssh)) as w:
        # no key yet, nothing checked: the provider's list says so, not "ok"
        assert re.search(r"^lab .* no key$", _run(w, ROOT, "cluster list"), re.M)
        # the first push needs a password, named, set, and right; each says so in one clear line
        said = _run(w, ROOT, "cluster keys push lab", "cluster keys push lab --password-env NOT_SET_ANYWHERE")
        assert "give --password-env VAR" in said
        # a name is not repeated either: a password typed by mistake can look like one
        assert "the environment variable that --password-env names is not set" in said
        assert said.count("NOT_SET_ANYWHERE") == 1, said  # the echo of the typed line, nothing more
        # the password itself given by mistake: refused, and not repeated back into the channel
        typed = _run(w, ROOT, "cluster keys push lab --password-env hunter2!pw").split("\n", 1)[1]
        assert "--password-env takes the name of an environment variable" in typed and "hunter2" not in typed, typed
        # nor kept in the audit trail, which keeps the typed line with that value masked
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            trail = [e.target for e in uow.audit.query(limit=50)]
        assert "cluster keys push lab --password-env ***" in trail, trail
        assert not [t for t in trail if "hunter2" in t or "NOT_SET_ANYWHERE" in t], trail
        wrong = _run(w, ROOT, f"cluster keys push lab --password-env {WRONG_ENV}")
        assert _job(w, wrong)[1] == "failed"
        assert f"lab/pve1 refused the password for {USER}" in wrong, wrong
        assert _pvebot_lines(ssh) == []

        text = _push(w)
        assert "✅ pve1: pvebot's key works" in text and "✅ pve2: pvebot's key works" in text, text
        (line,) = _pvebot_lines(ssh)
        assert line.startswith("no-agent-forwarding,no-port-forwarding,no-X11-forwarding ssh-ed25519 ")
        assert re.search(r" pvebot:lab:\d{8}$", line), line
        # the password login happened once, on the node the line was appended through
        for name, node in ssh.nodes.items():
            assert ("Accepted password" in node.log_text()) == (name == "pve1")
            assert "Accepted publickey" in node.log_text()
        # a second push with the key in place needs no password and adds nothing
        again = _run(w, ROOT, "cluster keys push lab")
        assert _job(w, again)[1] == "succeeded", again
        assert _pvebot_lines(ssh) == [line]

        assert re.search(r"^lab .* not checked \(key 0 d\)$", _run(w, ROOT, "cluster list"), re.M)
        health = _run(w, ROOT, "cluster keys health")
        assert _job(w, health)[1] == "succeeded", health
        assert "✅ lab/pve1: ok (key 0 d old)" in health and "✅ lab/pve2: ok" in health, health
        assert re.search(r"^lab .* ok \(key 0 d\)$", _run(w, ROOT, "cluster list"), re.M)

        rotated = _run(w, ROOT, "cluster keys rotate lab")
        assert _job(w, rotated)[1] == "succeeded", rotated
        (new_line,) = _pvebot_lines(ssh)
        assert new_line.split()[2] != line.split()[2]
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            cluster = uow.clusters.by_name("lab")
            assert cluster is not None and cluster.id is not None
            keys = uow.ssh.keys(cluster.id)
            assert [k.state for k in keys] == [SshKeyState.ACTIVE]
            assert keys[0].public_key.split()[1] == new_line.split()[2]

        # the line removed behind pvebot's back: health says so and the provider's channel hears it
        ssh.keys_file.write_text("")
        shell, out = w.shell(ROOT)
        shell.run(["notify subscribe updates", "cluster keys health"])
        assert "❌ lab/pve1: login refused" in out.getvalue(), out.getvalue()
        _delivered(w, shell, out, "🔑 SSH to lab/pve1")

        status = _run(w, ROOT, "cluster status lab", "cluster list")
        assert "pve1" in status and "8.4.1" in status and "quorate" in status, status
        assert re.search(r"^lab .* ❌ 2 node\(s\) \(key 0 d\)$", status, re.M), status


def test_a_changed_host_key_is_refused_with_nothing_sent_and_audited(tmp_path: Path) -> None:
    with ssh_cluster() as ssh, world(tmp_path, queue="embedded", doc=_doc(ssh), extra_env=_env(ssh)) as w:
        _push(w)
        keys_before = ssh.keys_file.read_text()
        seen = ssh.new_host_key("pve2")
        listener, heard = w.shell(OPS)
        listener.run(["notify subscribe updates"])
        health = _run(w, ROOT, "cluster keys health")
        _job(w, health)
        # a security event on the provider's updates channel
        _delivered(w, listener, heard, "🔒 security: lab/pve2 shows a different SSH host key")
        assert "❌ lab/pve2: 🔒 host key changed, refused (nothing sent)" in health, health
        assert "✅ lab/pve1: ok" in health
        # pve2's sshd (restarted with the new key) saw connections and not one authentication or session
        log = ssh.nodes["pve2"].log_text().split("Server listening")[-1]
        assert "Connection from 127.0.0.1" in log
        assert not re.search(r"Accepted|Failed|Starting session|Postponed", log), log
        assert ssh.keys_file.read_text() == keys_before
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            refused = [e for e in uow.audit.query(limit=100) if e.action == "ssh.host_key_refused"]
        assert refused and refused[0].target == "lab/pve2" and refused[0].detail["seen"] == seen

        # an upgrade of that node is refused the same way, and sends nothing either
        shown = _run(w, ROOT, "cluster trust lab pve2")
        assert f"lab/pve2 shows host key {seen}" in shown and "pinned: SHA256:" in shown, shown
        wrong = _run(w, ROOT, "cluster trust lab pve2 SHA256:" + "A" * 43, "cluster trust lab pve2 nonsense")
        assert "nothing was pinned" in wrong and "looks like SHA256:" in wrong, wrong
        pinned = _run(w, ROOT, f"cluster trust lab pve2 {seen}")
        assert f"🔒 pinned lab/pve2 to {seen}" in pinned, pinned
        health = _run(w, ROOT, "cluster keys health")
        _job(w, health)
        assert "✅ lab/pve2: ok" in health, health
        # a company admin cannot even name the provider's commands' targets
        denied = _run(w, ALICE, "cluster trust lab pve2", "cluster keys health", "node upgrade lab/pve1")
        assert denied.count("cannot use") == 3 or denied.count("not allow") == 3, denied


def _wait_progress(w: World, job: str, text: str, *, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            found = uow.jobs.get(job)
            if found is not None and text in found.progress:
                return found.progress
        time.sleep(0.05)
    raise AssertionError(f"job-{job} never showed {text!r}")


def _approve_upgrade_held_at_the_gate(w: World, ssh: SshCluster, apr: str,
                                      at_the_gate: Callable[[], None]) -> tuple[str, str]:
    """OPS approves an upgrade that apt holds at the gate; once its first package shows, ``at_the_gate``
    runs, then apt goes on. The job and its final state."""
    ops, ops_out = w.shell(OPS)

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (ids := job_ids(ops_out.getvalue())):
            time.sleep(0.05)
        _wait_progress(w, ids[0], "Unpacking pve-manager")
        at_the_gate()
        ssh.open_gate()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ops.run([f"approve apr-{apr}"])
    watcher.join(timeout=60)
    return _job(w, ops_out.getvalue())


def test_node_upgrade_with_approval_streams_apt_and_announces_the_outcome(tmp_path: Path) -> None:
    with ssh_cluster() as ssh, world(tmp_path, queue="embedded", doc=_doc(ssh), extra_env=_env(ssh)) as w:
        _push(w)
        w.sim.offer_update("pve1", "libc6", "2.36-9+deb12u10", old_version="2.36-9+deb12u9")
        w.sim.offer_update("pve1", "pve-manager", "8.4.2", old_version="8.4.1", origin="Proxmox")
        root, root_out = w.shell(ROOT)
        root.run(["notify subscribe updates", "node updates lab/pve1", "node upgrade lab/pve1 --reason monthly"])
        said = root_out.getvalue()
        listing = said.split("node updates lab/pve1", 1)[1]
        assert listing.index("pve-manager") < listing.index("libc6"), said  # Proxmox packages first
        assert "Pending · expires in" in said and "Packages" in said and "pve-manager 8.4.2" in said, said
        assert "web-01 (100)" in said and "app-02" not in said  # the guests running on pve1 only
        (apr,) = set(re.findall(r"apr-([a-z0-9]+)", said))
        assert "cannot decide your own request" in _run(w, ROOT, f"approve apr-{apr}")  # four eyes
        # a company admin decides its company's requests, not the provider's: it cannot even see this one
        nosy = _run(w, ALICE, f"approve apr-{apr}", f"deny apr-{apr}", "approval list --all")
        assert nosy.count(f"apr-{apr} not found") == 2 and "web-01 (100)" not in nosy and "pve1" not in nosy, nosy

        second: list[str] = []

        def at_the_gate() -> None:
            again, again_out = w.shell(ROOT)  # not _run: its answer names the running job, which waits here
            again.run(["node upgrade lab/pve1"])
            second.append(again_out.getvalue())

        job, state = _approve_upgrade_held_at_the_gate(w, ssh, apr, at_the_gate)
        # the job reports in the requester's thread; its last edit is written just after it settles
        text = _shown(root, root_out, "upgraded lab/pve1")
        assert state == "succeeded", text
        # apt's lines arrived as progress while it ran (the gate held it until the first was seen)
        assert "apt-get dist-upgrade — Unpacking pve-manager (8.4.2) over (8.4.1)" in text, text
        # the new kernel is not the running one (Proxmox's kernels leave no /run/reboot-required)
        assert ("upgraded lab/pve1; ⚠️ a reboot is required (kernel 6.8.12-10-pve is installed, 6.8.12-9-pve "
                "runs)") in text, text
        assert second and "lab/pve1 is already being upgraded" in second[0], second
        apt = ssh.apt_log.read_text().splitlines()
        assert apt[0] == "apt-get update"
        assert "-y" in apt[1] and "dist-upgrade" in apt[1] and "--force-confold" in apt[1]

        _delivered(w, root, root_out, "⬆️ lab/pve1 upgraded; ⚠️ reboot required")
        # the maintenance loop's check announces a set of updates once (and finds every key healthy)
        maintenance = build_maintenance(w.app)
        assert maintenance.check_clusters() == 1
        assert maintenance.check_clusters() == 0
        w.sim.offer_update("pve1", "pve-manager", "8.4.3", old_version="8.4.1", origin="Proxmox")
        # however many processes run the loop, one checks a cluster: the one holding its lease
        other = build_maintenance(w.app)
        other.owner = "another-host:4242"
        assert other.check_clusters() == 0
        assert maintenance.check_clusters() == 1  # a new version is a new set
        title = "📦 2 updates on lab/pve1 (1 Proxmox)"
        _delivered(w, root, root_out, title)
        # both sets reach the channel (a burst arrives as one digest of their titles), each once
        deadline = time.monotonic() + 15
        while root_out.getvalue().count(title) < 2 and time.monotonic() < deadline:
            outbox.deliver_due(w.app.deps)
            root.flush()
            time.sleep(0.2)
        assert root_out.getvalue().count(title) == 2, root_out.getvalue()


def _corpus(w: World, *texts: str) -> str:
    """Everything pvebot showed or kept outside the encrypted column: replies, jobs, audit, the export."""
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        jobs = [f"{j.summary} {j.progress} {j.result} {j.params} {j.target}" for j in uow.jobs.list(limit=500)]
        events = [f"{e.action} {e.target} {e.outcome} {e.detail}" for e in uow.audit.query(limit=1000)]
        cluster = uow.clusters.by_name("lab")
        assert cluster is not None and cluster.id is not None
        keys = [repr(k) for k in uow.ssh.keys(cluster.id)]
        exported = dump(provisioning.export(uow))
    return "\n".join([*texts, *jobs, *events, *keys, exported])


def test_an_upgrade_whose_ssh_session_drops_goes_on_on_the_node(tmp_path: Path) -> None:
    """dpkg must not die half-way with the session: the job says so, and the upgrade ends by itself."""
    import pwd

    with ssh_cluster() as ssh, world(tmp_path, queue="embedded", doc=_doc(ssh), extra_env=_env(ssh)) as w:
        _push(w)
        w.sim.offer_update("pve1", "pve-manager", "8.4.2", old_version="8.4.1", origin="Proxmox")
        said = _run(w, ROOT, "node upgrade lab/pve1 --reason monthly")
        (apr,) = set(re.findall(r"apr-([a-z0-9]+)", said))
        log = Path(pwd.getpwnam(USER).pw_dir) / ".pvebot-upgrade.log"

        def cut_the_session() -> None:
            # the node's side of every session of pvebot's user goes, as when the network drops
            subprocess.run(["pkill", "-KILL", "-f", f"sshd: {USER}"], check=False)

        job, state = _approve_upgrade_held_at_the_gate(w, ssh, apr, cut_the_session)
        assert state == "failed"
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            stored = uow.jobs.get(job)
        assert stored is not None and "the upgrade goes on on lab/pve1 by itself" in stored.result, stored
        deadline = time.monotonic() + 30
        while "Setting up proxmox-kernel" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "Setting up proxmox-kernel" in log.read_text()  # apt ran to its end without the session


def test_the_private_key_and_the_password_never_leave(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # paramiko's transport log included
    with ssh_cluster() as ssh, world(tmp_path, queue="embedded", doc=_doc(ssh), extra_env=_env(ssh)) as w:
        texts = [
            _run(w, ROOT, f"cluster keys push lab --password-env {WRONG_ENV}"),
            _push(w),
            _run(w, ROOT, "cluster keys rotate lab", "cluster keys health", "cluster status lab", "cluster list"),
        ]
        ssh.new_host_key("pve1")
        texts.append(_run(w, ROOT, "cluster keys health", "node upgrade lab/pve1"))
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            cluster = uow.clusters.by_name("lab")
            assert cluster is not None and cluster.id is not None
            (key,) = uow.ssh.keys(cluster.id)
            sealed = key.private_key_encrypted
        private = w.app.storage.cipher.decrypt(sealed)
        assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        # `pvebot admin rotate-key` re-encrypts the SSH key too, and says nothing of it
        cli = subprocess.run([sys.executable, "-m", "bot.cli", "admin", "rotate-key"], env={**os.environ, **w.env,
                             "PYTHONPATH": str(ROOT_DIR)}, cwd=ROOT_DIR, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        new_key = cli.stdout.strip().splitlines()[-1]
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            (rotated,) = uow.ssh.keys(cluster.id)
            assert rotated.private_key_encrypted != sealed
            assert FernetCipher([new_key]).decrypt(rotated.private_key_encrypted) == private
        corpus = _corpus(w, *texts, cli.stdout, cli.stderr, caplog.text, ssh.apt_log.read_text()
                         if ssh.apt_log.exists() else "")
    body = [line for line in private.splitlines() if "PRIVATE KEY" not in line]
    assert len(body) >= 3
    for line in body:
        assert line not in corpus
    assert sealed not in corpus
    assert ssh.password not in corpus and ssh.password not in caplog.text
    # the corpus is real: it does hold what pvebot said and logged
    assert "lab/pve1 refused the password" in corpus and "ssh.host_key_refused" in corpus
    assert "refused lab/pve1: host key" in caplog.text


def test_rotation_needs_quorum_and_a_failure_keeps_the_old_key(tmp_path: Path) -> None:
    with ssh_cluster() as ssh, world(tmp_path, queue="embedded", doc=_doc(ssh), extra_env=_env(ssh)) as w:
        _push(w)
        (before,) = _pvebot_lines(ssh)
        with w.sim.state.lock:
            w.sim.state.quorate = False
        refused = _run(w, ROOT, "cluster keys rotate lab")
        assert "cluster lab has no quorum" in refused and "the current key keeps working" in refused, refused
        assert _pvebot_lines(ssh) == [before]
        with w.sim.state.lock:
            w.sim.state.quorate = True
        # pve2 down: the new key cannot be tested there, so it is taken out again
        server = ssh.nodes["pve2"]
        assert server.process is not None
        server.process.terminate()
        server.process.wait(timeout=10)
        failed = _run(w, ROOT, "cluster keys rotate lab")
        assert "❌ failed: rotation stopped: the new key does not work on pve2" in failed, failed
        assert "the new key was taken out again; the old key still works" in failed
        assert _pvebot_lines(ssh) == [before]
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            cluster = uow.clusters.by_name("lab")
            assert cluster is not None and cluster.id is not None
            assert [k.public_key.split()[1] for k in uow.ssh.keys(cluster.id)] == [before.split()[2]]
        ssh.restart("pve2")
        health = _run(w, ROOT, "cluster keys health")
        assert "✅ lab/pve1: ok" in health and "✅ lab/pve2: ok" in health, health


def test_a_node_without_a_pin_is_not_logged_in_to_until_trusted(tmp_path: Path) -> None:
    with ssh_cluster() as ssh, world(tmp_path, queue="embedded", doc=_doc(ssh, pin=False), extra_env=_env(ssh)) as w:
        text = _run(w, ROOT, f"cluster keys push lab --password-env {PASSWORD_ENV}")
        assert "no host key is pinned for lab/pve1" in text and ssh.nodes["pve1"].host_key in text, text
        assert "Accepted" not in ssh.nodes["pve1"].log_text() and _pvebot_lines(ssh) == []
        for name, node in ssh.nodes.items():
            shown = _run(w, ROOT, f"cluster trust lab {name}")
            assert f"lab/{name} shows host key {node.host_key} (nothing pinned yet)" in shown, shown
            assert "pinned" in _run(w, ROOT, f"cluster trust lab {name} {node.host_key}")
        assert "✅ pve2: pvebot's key works" in _push(w)


def test_all_clusters_at_once_and_an_unreachable_one_answers_for_itself(tmp_path: Path) -> None:
    def doc(server: SimServer) -> str:
        text = _doc(ssh)(server)
        start, end = text.index("  - name: lab\n"), text.index("companies:")
        edge = text[start:end].replace("name: lab", "name: edge")
        edge = re.sub(r"port: \d+", "port: 1", edge)  # nothing listens there
        return text[:end] + edge + text[end:]

    with ssh_cluster() as ssh, world(tmp_path, queue="embedded", doc=doc, extra_env=_env(ssh)) as w:
        text = _run(w, ROOT, f"cluster keys push --all --password-env {PASSWORD_ENV}")
        assert "push pvebot's SSH key to cluster lab" in text and "cluster edge" in text, text
        queued = dict(re.findall(r"queued job-([a-z0-9]+): push pvebot's SSH key to cluster (\w+)", text))
        states = {cluster: w.job_state(job) for job, cluster in queued.items()}
        assert states == {"lab": "succeeded", "edge": "failed"}, text
        assert "edge/pve1 could not be reached over SSH" in text, text
        assert "name one cluster or give --all" in _run(w, ROOT, "cluster keys push lab --all")
        health = _run(w, ROOT, "cluster keys health")
        assert "✅ lab/pve1: ok" in health and "❌ edge/pve1:" in health, health


def test_a_first_push_that_failed_half_way_is_finished_by_the_next_one(tmp_path: Path) -> None:
    with ssh_cluster() as ssh, world(tmp_path, queue="embedded", doc=_doc(ssh), extra_env=_env(ssh)) as w:
        server = ssh.nodes["pve2"]
        assert server.process is not None
        server.process.terminate()
        server.process.wait(timeout=10)
        failed = _run(w, ROOT, f"cluster keys push lab --password-env {PASSWORD_ENV}")
        assert "❌ failed: pvebot's key does not work on pve2" in failed, failed
        (line,) = _pvebot_lines(ssh)  # appended through pve1 before pve2 was tried
        ssh.restart("pve2")
        _push(w)
        assert _pvebot_lines(ssh) == [line]  # the same key, not a second line beside an orphan


def test_doctor_logs_in_to_every_node_and_gives_each_its_line_and_fix(tmp_path: Path) -> None:
    from bot import doctor
    from bot.config import Settings
    from core.services.doctor import Status, render_json, render_text

    def ssh_lines() -> list[doctor.Check]:
        return [c for c in doctor.run(Settings.from_mapping(w.env)) if c.name.startswith("cluster lab: SSH")]

    with ssh_cluster() as ssh, world(tmp_path, queue="embedded", doc=_doc(ssh), extra_env=_env(ssh)) as w:
        before = ssh_lines()
        assert [(c.name, c.status) for c in before] == [("cluster lab: SSH pve1", Status.FAIL),
                                                       ("cluster lab: SSH pve2", Status.FAIL)]
        assert "pvebot has no key on this cluster" in before[0].detail
        assert before[0].fix == "'cluster keys push lab --password-env VAR' in chat"
        _push(w)
        assert [(c.status, c.detail) for c in ssh_lines()] == [
            (Status.OK, "pvebot's key logs in and is listed (key 0 d old)")] * 2
        seen = ssh.new_host_key("pve2")
        ssh.keys_file.write_text("")
        pve1, pve2 = ssh_lines()
        assert pve1.status is Status.FAIL and pve1.detail == "login refused" and "cluster keys push lab" in pve1.fix
        assert pve2.status is Status.FAIL and "host key changed" in pve2.detail
        assert pve2.fix.endswith("'cluster trust lab pve2 <fingerprint>' in chat")
        report = render_text([pve1, pve2]) + render_json([pve1, pve2])
        assert ssh.password not in report and seen not in report
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            cluster = uow.clusters.by_name("lab")
            assert cluster is not None and cluster.id is not None
            (key,) = uow.ssh.keys(cluster.id)
            health = {n.node: n.health for n in uow.ssh.nodes(cluster.id)}
        private = FernetCipher(list(Settings.from_mapping(w.env).secret_keys)).decrypt(key.private_key_encrypted)
        assert private.strip().splitlines()[1] not in report
        # what doctor found is what `cluster keys health` and `cluster status` show next
        assert health == {"pve1": "login refused", "pve2": "🔒 host key changed, refused (nothing sent)"}


def test_all_clusters_at_once_where_one_refuses_still_starts_the_others(tmp_path: Path) -> None:
    """A cluster that refuses the request (no key to rotate yet) answers for itself; the others' jobs still run."""
    def doc(server: SimServer) -> str:
        text = _doc(ssh)(server)
        start, end = text.index("  - name: lab\n"), text.index("companies:")
        edge = text[start:end].replace("name: lab", "name: edge")
        return text[:end] + edge + text[end:]

    with ssh_cluster() as ssh, world(tmp_path, queue="embedded", doc=doc, extra_env=_env(ssh)) as w:
        _push(w)  # lab only: edge (the same nodes under another name) has no key of pvebot's
        (before,) = _pvebot_lines(ssh)
        text = _run(w, ROOT, "cluster keys rotate --all")
        assert "pvebot has no working key on cluster edge to rotate" in text, text
        queued = dict(re.findall(r"queued job-([a-z0-9]+): rotate pvebot's SSH key on cluster (\w+)", text))
        assert list(queued.values()) == ["lab"], text
        assert {cluster: w.job_state(job) for job, cluster in queued.items()} == {"lab": "succeeded"}, text
        (after,) = _pvebot_lines(ssh)
        assert after.split()[2] != before.split()[2]  # lab's key was rotated


class _Silent:
    """A port that takes TCP connections and never says a word, until :meth:`release` hangs them all up
    (and refuses any later one)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.lock = threading.Lock()
        self.held: list[socket.socket] = []
        self.released = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn = self.server.accept()[0]
            except OSError:
                return
            with self.lock:
                if self.released:
                    conn.close()
                else:
                    self.held.append(conn)

    def release(self) -> None:
        with self.lock:
            self.released, held = True, list(self.held)
        for conn in held:
            conn.close()
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in its thread
        except OSError:
            pass
        self.server.close()


def test_a_slow_cluster_holds_up_only_its_own_answer(tmp_path: Path) -> None:
    """edge's nodes take the TCP connection and never say a word (until the test lets go): lab's push
    finishes meanwhile, and `cluster keys health` shows lab's nodes while edge still keeps it waiting."""
    silent = _Silent()

    def doc(server: SimServer) -> str:
        text = _doc(ssh)(server)
        start, end = text.index("  - name: lab\n"), text.index("companies:")
        edge = re.sub(r"port: \d+", f"port: {silent.port}", text[start:end].replace("name: lab", "name: edge"))
        return text[:end] + edge + text[end:]

    with ssh_cluster() as ssh, world(tmp_path, queue="embedded", doc=doc,
                                     extra_env={**_env(ssh), "PVEBOT_SSH_TIMEOUT": "60"}) as w:
        # edge has a key of pvebot's already (pushed before it went quiet): every command logs in to it
        private, public, fingerprint = Ed25519KeyMaker().generate()
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            edge = uow.clusters.by_name("edge")
            assert edge is not None and edge.id is not None
            uow.ssh.add_key(SshKey(cluster_id=edge.id, private_key_encrypted=w.app.storage.cipher.encrypt(private),
                                   public_key=public, fingerprint=fingerprint, created_at=w.app.deps.clock.now(),
                                   state=SshKeyState.ACTIVE, comment="pvebot:edge:20261201"))
            uow.commit()
        try:
            # a shell that does not sit waiting for edge's job to settle before it takes the next line
            out = io.StringIO()
            root = shell_session(w.app, email=ROOT, out=out, echo=True, wait_seconds=0.5)
            root.run([f"cluster keys push --all --password-env {PASSWORD_ENV}"])
            queued = {cluster: job for job, cluster in
                      re.findall(r"queued job-([a-z0-9]+): push pvebot's SSH key to cluster (\w+)", out.getvalue())}
            assert w.wait_state(queued["lab"], {"succeeded", "failed"}, timeout=60) == "succeeded", out.getvalue()
            # edge's job is taken by a worker of its own, and stays running while edge says nothing (on a
            # busy machine it may still be queued when lab's is done: waiting for "running" is no timing)
            assert w.wait_state(queued["edge"], {"running", "succeeded", "failed"}, timeout=60) == "running"
            root.run(["cluster keys health"])
            health = job_ids(out.getvalue())[-1]
            # lab's last node, shown while edge's first still waits for its banner
            _wait_progress(w, health, "✅ lab/pve2: ok")
            assert w.job_state(health) == "running" and w.job_state(queued["edge"]) == "running"
        finally:
            silent.release()  # edge's connections end: its jobs end at once
        assert w.wait_state(queued["edge"], {"succeeded", "failed"}, timeout=60) == "failed"
        w.wait_state(health, {"succeeded", "failed"}, timeout=60)
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            stored = uow.jobs.get(health)
        assert stored is not None and stored.state.value == "succeeded", stored.result
        assert "✅ lab/pve1: ok" in stored.result and "❌ edge/pve1:" in stored.result
        assert stored.result.index("edge/pve1") < stored.result.index("lab/pve1")  # in cluster order, as before



def test_node_updates_lists_any_node_the_api_knows_without_ssh(tmp_path: Path) -> None:
    """The list is the API's: a cluster with no ssh block still shows it (the periodic check announces it too)."""
    with world(tmp_path, queue="embedded") as w:
        w.sim.offer_update("pve2", "pve-manager", "8.4.2", old_version="8.4.1", origin="Proxmox")
        said = _run(w, ROOT, "node updates lab/pve2", "node updates lab/pve9", "node updates edge/pve1")
        assert "Updates on lab/pve2 (1, 1 Proxmox)" in said and "8.4.2" in said, said
        assert "❌ node lab/pve9 not found" in said and "❌ cluster 'edge' not found" in said, said
        # installing still needs SSH: said so plainly
        assert "not in the cluster's ssh nodes" in _run(w, ROOT, "node upgrade lab/pve2")
