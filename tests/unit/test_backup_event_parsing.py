"""A backup run's log as vzdump writes it, read into per-guest outcomes."""

from __future__ import annotations

from core.model import TaskInfo
from core.services import backup_events

TASK = TaskInfo(upid="UPID:pve1:0001:vzdump", node="pve1", type="vzdump", id="", user="root@pam",
                starttime=1_700_000_000, endtime=1_700_000_100, status="unexpected status")


def test_a_guest_whose_backup_started_and_never_finished_is_not_reported_ok() -> None:
    lines = ["INFO: Starting Backup of VM 101 (qemu)", "INFO: archive file size: 1.2GB",
             "INFO: Finished Backup of VM 101 (00:01:02)", "INFO: Starting Backup of VM 102 (qemu)"]
    owners = {101: backup_events.Owner("web-01", 1), 102: backup_events.Owner("db-01", 1)}
    event = backup_events.run_event(cluster="lab", task=TASK, lines=lines, owners=owners)
    by_vmid = {i.vmid: i for i in event.items}
    assert (by_vmid[101].status, by_vmid[101].failed) == ("ok", False)
    assert (by_vmid[102].status, by_vmid[102].failed) == ("failed", True)
    assert by_vmid[102].detail == "did not finish (unexpected status)"
