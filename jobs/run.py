"""The RQ job that runs a pvebot job: rebuild dependencies, then let the core do the work."""

from __future__ import annotations

from bot.bootstrap import worker_deps
from core.services import jobs


def run_job(job_id: str) -> str:
    """Run pvebot job ``job_id`` (idempotent: a second delivery does nothing).

    The core re-checks the requester's permission and scope, follows the Proxmox tasks and
    reports progress into the conversation the request came from.
    """
    return jobs.run(worker_deps(), job_id)
