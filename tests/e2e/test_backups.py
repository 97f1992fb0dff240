"""Backups end to end: the shell adapter, the job runner and approvals, against the simulator over HTTPS.

Back up with progress and list it; restore in place (approval, stop, restore, start) and as a new
VM; a protected backup cannot be deleted; a schedule becomes one Proxmox backup job with the right
selection, retention and notification mode, and its scheduled run shows in history and status.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from core.principal import Scope
from pvesim import SimServer
from tests.e2e.shell_world import World, job_ids, world, world_doc
from tests.proxmox_support import TOKEN_ID, build_simulator

pytestmark = pytest.mark.slow

BOB, ALICE, CAROL, ROOT, SAM = (
    "bob@acme.example", "alice@acme.example", "carol@globex.example", "root@host.example", "sam@host.example")


def _approval_ids(text: str) -> list[str]:
    return re.findall(r"apr-([a-z0-9]+)", text)


def _policy(w: World, slug: str, policy: dict[str, object]) -> None:
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        company = uow.companies.by_slug(slug)
        assert company is not None
        company.backup_policy = policy
        uow.commit()


def _setup(w: World) -> None:
    w.sim.add_storage("backup-nfs", content="backup", shared=True)
    _policy(w, "acme", {"storages": ["backup-nfs"], "max_schedules": 2, "max_age_hours": 26,
                        "default_retention": {"keep-daily": 7, "keep-weekly": 4}})


def _backup_now(w: World, who: str, command: str) -> str:
    shell, out = w.shell(who)
    shell.run([command])
    text = out.getvalue()
    job = job_ids(text)[0]
    assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded", text
    return text


def _volids(w: World, vmid: int) -> list[str]:
    with w.sim.state.lock:
        return sorted(b.volid for b in w.sim.state.backups.values() if b.vmid == vmid)


def test_back_up_now_with_progress_then_list_it(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        _setup(w)
        text = _backup_now(w, BOB, 'backup now web-01 --note "before the upgrade"')
        assert "backed up web-01 (lab/100) to backup-nfs" in text
        assert re.search(r"backup \d+% — INFO:", text), text  # vzdump's percent lines, live
        vzdump = [r for r in w.sim.requests if r.path.endswith("/vzdump")]
        assert [r.path for r in vzdump] == ["/api2/json/nodes/pve1/vzdump"]  # the guest's own node
        bob, out = w.shell(BOB)
        bob.run(["backup list web-01"])
        listing = out.getvalue()
        assert "Backups of web-01 (lab/100) (1)" in listing and "before the upgrade" in listing
        assert "backup-nfs" in listing
        bob.run(["backup list web-01 --storage nfs-typo"])  # not "has no backups": there is no such storage
        assert "storage 'nfs-typo' holds no backups on cluster lab" in out.getvalue()
        # only the company's storages
        bob.run(["backup now web-01 --storage local"])
        assert "storage 'local' is not one your company may use for backups (allowed: backup-nfs)" in out.getvalue()
        # another company never sees it, and its answer is the one for a VM that does not exist
        carol, carol_out = w.shell(CAROL)
        carol.run(["backup list web-01", "backup list ghost-01"])
        assert carol_out.getvalue().count("not found") == 2


def test_restore_in_place_stops_restores_and_starts_after_approval(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        _setup(w)
        _backup_now(w, BOB, "backup now web-01")
        volid = _volids(w, 100)[0]
        with w.sim.state.lock:
            w.sim.state.guests[100].config["cores"] = "8"  # a change the restore takes back
        bob, out = w.shell(BOB)
        bob.run(["backup restore web-01 latest --reason \"bad upgrade\""])
        card = out.getvalue()
        assert "Restore web-01?" in card and "Current state" in card and "running" in card
        assert "Overwritten disks" in card and "scsi0" in card and "stopped, restored, started again" in card
        apr = _approval_ids(card)[0]
        alice, alice_out = w.shell(ALICE)
        alice.run([f"approve apr-{apr}"])
        job = job_ids(alice_out.getvalue())[0]
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded", alice_out.getvalue()
        posts = [r.path.rsplit("/", 2)[-2:] for r in w.sim.requests if r.method == "POST"]
        assert ["status", "stop"] in posts and ["pve1", "qemu"] in posts and ["status", "start"] in posts
        guest = w.sim.guest(100)
        assert guest.status == "running" and guest.config["cores"] == "2"
        assert volid in _volids(w, 100)


def test_restore_as_new_vm_gets_a_new_vmid_in_the_pool_with_new_macs(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        _setup(w)
        _backup_now(w, BOB, "backup now web-01")
        bob, out = w.shell(BOB)
        bob.run(["backup restore web-01 latest --as-new web-copy"])
        apr = _approval_ids(out.getvalue())[0]
        assert "new VM web-copy in pool acme" in out.getvalue()
        alice, alice_out = w.shell(ALICE)
        alice.run([f"approve apr-{apr}"])
        job = job_ids(alice_out.getvalue())[0]
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded", alice_out.getvalue()
        with w.sim.state.lock:
            new = next(g for g in w.sim.state.guests.values() if g.name == "web-copy")
            old = w.sim.state.guests[100]
            assert new.pool == "acme" and new.vmid != 100
            assert new.config["net0"].split(",")[0] != old.config["net0"].split(",")[0]
        assert w.sim.guest(100).status == "running"  # the original was not touched


def test_restore_as_new_is_refused_when_the_quota_has_no_room(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        _setup(w)
        _backup_now(w, BOB, "backup now web-01")
        bob, out = w.shell(BOB)
        # web-01, db-01 and ct-01 hold 6 cores; a copy of web-01 needs 2 more, and one more VM
        for quotas, refusal in (({"vms": 10, "cores": 7}, "quota exceeded: cores would be 8 of 7"),
                                ({"vms": 3}, "quota exceeded: vms would be 4 of 3")):
            _set_quotas(w, quotas)
            bob.run(["backup restore web-01 latest --as-new web-copy"])
            answer = out.getvalue().rsplit("backup restore", 1)[1]
            assert refusal in answer and not _approval_ids(answer), answer
        with w.sim.state.lock:
            assert not any(g.name == "web-copy" for g in w.sim.state.guests.values())

        # room when asked, none by the time it is approved (someone made a VM meanwhile): checked again as it runs
        _set_quotas(w, {"vms": 4})
        bob.run(["backup restore web-01 latest --as-new web-copy"])
        apr = _approval_ids(out.getvalue())[-1]
        _set_quotas(w, {"vms": 3})
        alice, alice_out = w.shell(ALICE)
        alice.run([f"approve apr-{apr}"])
        job = job_ids(alice_out.getvalue())[0]
        assert w.wait_state(job, {"succeeded", "failed"}) == "failed"
        assert "quota exceeded: vms would be 4 of 3" in next(j.result for j in _jobs(w) if j.id == job)
        with w.sim.state.lock:
            assert not any(g.name == "web-copy" for g in w.sim.state.guests.values())


def _set_quotas(w: World, quotas: dict[str, int]) -> None:
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        acme = uow.companies.by_slug("acme")
        assert acme is not None
        acme.quotas = quotas
        uow.commit()


def test_a_protected_backup_cannot_be_deleted(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        _setup(w)
        _backup_now(w, BOB, "backup now db-01 --protect")
        alice, out = w.shell(ALICE)
        alice.run(["backup delete db-01 latest"])
        assert "is protected; unprotect it first" in out.getvalue()
        assert not _approval_ids(out.getvalue())
        # unprotected, it can be deleted, after approval
        alice.run(["backup unprotect db-01 latest"])
        job = job_ids(out.getvalue())[-1]
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded"
        alice.run(["backup delete db-01 latest"])
        apr = _approval_ids(out.getvalue())[-1]
        root, root_out = w.shell(ROOT)
        root.run([f"approve apr-{apr}"])
        job = job_ids(root_out.getvalue())[-1]
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded"
        assert _volids(w, 101) == []


def test_a_schedule_is_one_proxmox_job_and_its_runs_show_in_history_and_status(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        _setup(w)
        alice, out = w.shell(ALICE)
        alice.run(['backup schedule create nightly --when "daily 02:00" --vms web-01,db-01 --keep-last 3'])
        reply = out.getvalue()
        assert "schedule nightly created" in reply and "pvebot-acme-nightly" in reply
        assert "When             02:00 (Proxmox calendar event)" in reply and "✅ ✅" not in reply
        # the next three runs, as Proxmox's schedule-analyze gives them: three nights in a row at 02:00
        nights = re.search(r"Next runs \(UTC\)  (\S+) 02:00, (\S+) 02:00, (\S+) 02:00\n", reply)
        assert nights is not None, reply
        days = [date.fromisoformat(d) for d in nights.groups()]
        assert days[1] - days[0] == days[2] - days[1] == timedelta(days=1)
        with w.sim.state.lock:
            job = dict(w.sim.state.backup_jobs["pvebot-acme-nightly"])
        assert job["vmid"] == "100,101" and job["schedule"] == "02:00" and job["storage"] == "backup-nfs"
        assert job["prune-backups"] == "keep-last=3" and job["notification-mode"] == "notification-system"

        alice.run(['backup schedule create weekly --when "every full moon" --all'])
        assert "--when 'every full moon' is not a schedule Proxmox understands" in out.getvalue()
        alice.run(['backup schedule create pool --when "weekly sun 03:00" --all'])
        with w.sim.state.lock:
            pool_job = dict(w.sim.state.backup_jobs["pvebot-acme-pool"])
        assert pool_job["pool"] == "acme" and pool_job["schedule"] == "sun 03:00"
        assert pool_job["prune-backups"] == "keep-daily=7,keep-weekly=4"  # the company's default retention
        alice.run(['backup schedule create third --when "02:00" --all'])
        assert "the most it may have (2)" in out.getvalue()

        # globex neither sees nor changes acme's jobs; an operator's own job is nobody's
        with w.sim.state.lock:
            w.sim.state.backup_jobs["backup-operator"] = {"schedule": "sat 04:00", "all": "1", "storage": "local"}
        carol, carol_out = w.shell(CAROL)
        carol.run(["backup schedule list", "backup schedule run nightly", "backup schedule delete nightly"])
        answer = carol_out.getvalue()
        assert "no backup schedules yet" in answer and answer.count("schedule 'nightly' not found") == 2
        root, root_out = w.shell(ROOT)
        root.run(["backup schedule list"])
        assert "backup-operator" in root_out.getvalue() and "(not pvebot's)" in root_out.getvalue()

        # pvescheduler runs it: a root@pam task, one per node, multi-guest with an empty id
        w.sim.backup_outcome(101, ("error", "unable to read disk"))
        upids = w.sim.run_backup_job("pvebot-acme-nightly")
        assert len(upids) == 1 and upids[0].split(":")[6] == "" and upids[0].split(":")[7] == "root@pam"
        _wait_tasks(w, upids)
        bob, bob_out = w.shell(BOB)
        bob.run(["backup history", "backup status"])
        text = bob_out.getvalue()
        assert re.search(r"web-01\s+✅ ok\s+—\s+scheduled", text), text
        assert re.search(r"db-01\s+❌ failed\s+unable to read disk\s+scheduled", text), text
        assert "Backup status (3 VMs, 2 flagged)" in text  # db-01 failed, ct-01 never backed up
        assert "never backed up" in text

        # run now: vzdump with the job's options on each node, followed as one job
        before = len(_volids(w, 100))
        alice.run(["backup schedule run nightly"])
        run_job = job_ids(out.getvalue())[-1]
        assert w.wait_state(run_job, {"succeeded", "failed"}) == "failed"
        assert len(_volids(w, 100)) == before + 1  # db-01 still fails, so the run reports job errors
        assert "job errors" in next(j.result for j in _jobs(w) if j.id == run_job)

        alice.run(["backup schedule edit nightly --when \"weekdays 22:30\""])
        edited = out.getvalue().rsplit("backup schedule edit", 1)[1]
        runs = re.search(r"Next runs \(UTC\)  (\S+) 22:30, (\S+) 22:30, (\S+) 22:30\n", edited)
        assert runs is not None and "mon..fri 22:30 (Proxmox calendar event)" in edited, edited
        assert all(date.fromisoformat(d).weekday() < 5 for d in runs.groups())
        with w.sim.state.lock:
            assert w.sim.state.backup_jobs["pvebot-acme-nightly"]["schedule"] == "mon..fri 22:30"
        alice.run(["backup schedule delete nightly"])
        apr = _approval_ids(out.getvalue())[-1]
        root.run([f"approve apr-{apr}"])
        job_id = job_ids(root_out.getvalue())[-1]
        assert w.wait_state(job_id, {"succeeded", "failed"}) == "succeeded"
        with w.sim.state.lock:
            assert "pvebot-acme-nightly" not in w.sim.state.backup_jobs


def test_history_tells_warnings_from_failures_in_single_guest_runs(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        _setup(w)
        w.sim.backup_outcome(100, ("warning", "EFI vars are not backed up"))
        w.sim.backup_outcome(101, ("error", "no space left on device"))
        bob, out = w.shell(BOB)
        bob.run(["backup now web-01", "backup now db-01"])
        states = [w.wait_state(job, {"succeeded", "failed"}) for job in job_ids(out.getvalue())]
        assert states == ["succeeded", "failed"], out.getvalue()  # WARNINGS: 1 is a success, with warnings
        results = {j.id: j.result for j in _jobs(w)}
        web_job, db_job = job_ids(out.getvalue())
        assert results[web_job] == "backed up web-01 (lab/100) to backup-nfs, with warnings (backup: WARNINGS: 1)"
        assert results[db_job] == "Proxmox task backup failed: job errors"
        bob.run(["backup history", "backup status"])
        text = out.getvalue()
        # Proxmox knows only pvebot's token; the job that started each run says who asked for it
        assert re.search(r"web-01\s+⚠️ ok with warnings\s+EFI vars are not backed up\s+Bob User", text), text
        assert re.search(r"db-01\s+❌ failed\s+no space left on device\s+Bob User", text), text
        assert re.search(r"db-01\s+lab\s+—\s+never\s+—\s+⚠️ never backed up", text), text


def test_history_names_who_asked_in_chat_and_proxmox_s_user_for_other_runs(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        _setup(w)
        _backup_now(w, BOB, "backup now web-01")
        # someone in the web UI, and a run under pvebot's token that no job of pvebot's started
        _wait_tasks(w, [w.sim.backup_as("ops@pve", 101, storage="backup-nfs"),
                        w.sim.backup_as("pvebot@pve!bot", 200, storage="backup-nfs")])
        bob, out = w.shell(BOB)
        bob.run(["backup history"])
        text = out.getvalue()
        assert re.search(r"web-01\s+✅ ok\s+—\s+Bob User\n", text), text
        assert re.search(r"db-01\s+✅ ok\s+—\s+ops@pve\n", text), text
        assert re.search(r"ct-01\s+✅ ok\s+—\s+pvebot@pve!bot\n", text), text

        # web-01 moves to globex's pool: globex sees its run, but never who at acme asked for it
        with w.sim.state.lock:
            w.sim.state.guests[100].pool = "globex"
        carol, carol_out = w.shell(CAROL)
        carol.run(["vm list --refresh", "backup history"])  # past the inventory cache
        answer = carol_out.getvalue()
        assert re.search(r"web-01\s+✅ ok\s+—\s+pvebot@pve!bot\n", answer), answer
        assert "Bob User" not in answer
        root, root_out = w.shell(ROOT)
        root.run(["backup history"])
        assert re.search(r"web-01\s+✅ ok\s+—\s+Bob User\n", root_out.getvalue()), root_out.getvalue()


def test_an_all_schedule_follows_the_company_s_pool_as_it_grows(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        _setup(w)
        alice, out = w.shell(ALICE)
        alice.run(['backup schedule create everything --when "daily 03:00" --all'])
        assert "all VMs of pool acme" in out.getvalue(), out.getvalue()
        w.sim.add_guest(vmid=150, name="web-02", node="pve2", pool="acme")  # added after the schedule was made
        _wait_tasks(w, w.sim.run_backup_job("pvebot-acme-everything"))
        with w.sim.state.lock:
            backed_up = {b.vmid for b in w.sim.state.backups.values()}
            acme = {g.vmid for g in w.sim.state.guests.values() if g.pool == "acme"}
        assert 150 in backed_up and backed_up == acme  # the newcomer too, and nothing of globex's


def test_history_names_who_ran_a_schedule_on_every_node_it_ran_on(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        _setup(w)
        w.sim.add_guest(vmid=150, name="web-02", node="pve2", pool="acme")
        alice, out = w.shell(ALICE)
        alice.run(['backup schedule create everything --when "daily 03:00" --all', "vm list --refresh",
                   "backup schedule run everything"])
        job = job_ids(out.getvalue())[-1]
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded", out.getvalue()
        with w.sim.state.lock:
            nodes = {u.split(":")[1] for u in w.sim.tasks.tasks if ":vzdump:" in u}
        assert nodes == {"pve1", "pve2"}  # one vzdump task per node, one job
        bob, bob_out = w.shell(BOB)
        bob.run(["backup history"])
        text = bob_out.getvalue()
        # each node's task of the run was started by the one job Alice asked for, not only the last
        for vm in ("web-01", "db-01", "ct-01", "web-02"):
            assert re.search(rf"{vm}\s+✅ ok\s+—\s+Alice Admin\n", text), text


def test_running_a_schedule_backs_up_none_of_another_companys_guests(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        _setup(w)
        alice, out = w.shell(ALICE)
        alice.run(['backup schedule create nightly --when "daily 02:00" --vms web-01,db-01 --mode stop'])
        # the provider gives db-01 to globex: the Proxmox job still names VMID 101
        with w.sim.state.lock:
            w.sim.state.guests[101].pool = "globex"
        alice.run(["vm list --refresh", "backup schedule run nightly"])
        job = job_ids(out.getvalue())[-1]
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded", out.getvalue()
        assert len(_volids(w, 100)) == 1 and _volids(w, 101) == []  # globex's guest untouched
        calls = len([r for r in w.sim.requests if r.path.endswith("/vzdump")])
        # none of the job's guests left in the company: nothing runs, and the answer says why
        with w.sim.state.lock:
            w.sim.state.guests[100].pool = "globex"
        alice.run(["vm list --refresh", "backup schedule run nightly"])
        assert "none of the VMs of schedule nightly is your company's now" in out.getvalue(), out.getvalue()
        assert len([r for r in w.sim.requests if r.path.endswith("/vzdump")]) == calls


def _two_pools_doc(server: SimServer) -> str:
    return world_doc(server).replace("pools: [{cluster: lab, pool: acme}]",
                                     "pools: [{cluster: lab, pool: acme}, {cluster: lab, pool: acme-db}]")


def test_an_all_schedule_of_a_company_with_two_pools_names_the_pool_it_backs_up(tmp_path: Path) -> None:
    # a Proxmox backup job selects one pool: taking the first would leave the other's VMs unprotected
    with world(tmp_path, queue="embedded", doc=_two_pools_doc) as w:
        _setup(w)
        w.sim.add_pool("acme-db")
        w.sim.add_guest(vmid=160, name="pg-01", node="pve1", pool="acme-db")
        alice, out = w.shell(ALICE)
        alice.run(['backup schedule create all --when "daily 03:00" --all'])
        assert ("--all backs up one pool, and your company has 2 on lab (acme, acme-db): say which with --pool"
                in out.getvalue()), out.getvalue()
        alice.run(['backup schedule create all --when "daily 03:00" --all --pool globex',
                   'backup schedule create all --when "daily 03:00" --vms pg-01 --pool acme-db'])
        assert "'globex' is not one of your company's pools on lab (they are: acme, acme-db)" in out.getvalue()
        assert "--pool goes with --all" in out.getvalue()
        with w.sim.state.lock:
            assert w.sim.state.backup_jobs == {}  # nothing was made of the refused ones
        alice.run(['backup schedule create db --when "daily 03:00" --all --pool acme-db'])
        assert "all VMs of pool acme-db" in out.getvalue(), out.getvalue()
        with w.sim.state.lock:
            assert w.sim.state.backup_jobs["pvebot-acme-db"]["pool"] == "acme-db"


def test_a_company_on_two_clusters_names_the_cluster_of_a_schedule_and_finds_it_there(tmp_path: Path) -> None:
    edge = build_simulator()
    edge_server = edge.start()
    try:
        def doc(server: SimServer) -> str:
            return world_doc(server).replace("companies:", f"""\
  - name: edge
    api_urls: ["{edge_server.url}"]
    token_id: "{TOKEN_ID}"
    token_secret_env: PVE_LAB_TOKEN
    tls: {{fingerprint: "{edge_server.fingerprint}"}}
companies:""", 1).replace("pools: [{cluster: lab, pool: acme}]", "pools: [{cluster: lab, pool: acme}, "
                                                                   "{cluster: edge, pool: acme}]")

        with world(tmp_path, queue="embedded", doc=doc) as w:
            _setup(w)
            edge.add_storage("backup-nfs", content="backup", shared=True)
            alice, out = w.shell(ALICE)
            alice.run(['backup schedule create nightly --when "daily 02:00" --all'])
            assert "your company has VMs on clusters edge, lab: say which with --cluster" in out.getvalue()
            alice.run(['backup schedule create nightly --when "daily 02:00" --all --cluster mars'])
            assert "your company has no pool on a cluster 'mars' (it has: edge, lab)" in out.getvalue()
            alice.run(['backup schedule create nightly --when "daily 02:00" --all --cluster edge'])
            with w.sim.state.lock, edge.state.lock:
                assert w.sim.state.backup_jobs == {} and edge.state.backup_jobs["pvebot-acme-nightly"]["pool"] == "acme"
            # the same name on the other cluster would be a second schedule answering to one name
            alice.run(['backup schedule create nightly --when "daily 04:00" --all --cluster lab'])
            assert "your company has a schedule 'nightly' already (on edge)" in out.getvalue()
            # edit, run and delete find it on the cluster it is on
            alice.run(["backup schedule edit nightly --keep-last 2", "backup schedule run nightly"])
            with edge.state.lock:
                assert edge.state.backup_jobs["pvebot-acme-nightly"]["prune-backups"] == "keep-last=2"
            job = job_ids(out.getvalue())[-1]
            assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded", out.getvalue()
            assert [r for r in edge.requests if r.path.endswith("/vzdump")]
            assert not [r for r in w.sim.requests if r.path.endswith("/vzdump")]
            alice.run(["backup schedule edit nightly --cluster lab --keep-last 1"])
            assert "schedule nightly is on edge: a schedule does not move between clusters" in out.getvalue()
            # another company hears of none of it
            carol, carol_out = w.shell(CAROL)
            carol.run(["backup schedule run nightly"])
            assert "schedule 'nightly' not found" in carol_out.getvalue()
    finally:
        edge.stop()


def test_schedules_need_sys_modify_and_say_so(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        _setup(w)
        with w.sim.state.lock:
            secret, _ = next(iter(w.sim.state.tokens.values()))
            token = next(iter(w.sim.state.tokens))
            w.sim.state.tokens[token] = (secret, frozenset({"Sys.Audit", "VM.Audit", "VM.Backup"}))
        alice, out = w.shell(ALICE)
        alice.run(['backup schedule create nightly --when "daily 02:00" --all'])
        assert "the API token lacks the Proxmox privilege Sys.Modify on /" in out.getvalue()


def _jobs(w: World) -> list:  # type: ignore[type-arg]
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        return uow.jobs.list(limit=100)


def _wait_tasks(w: World, upids: list[str]) -> None:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with w.sim.state.lock:
            if all(not w.sim.tasks.tasks[u].running for u in upids):
                return
        time.sleep(0.05)
    raise AssertionError("scheduled run did not finish")
