"""The RQ job that runs a pvebot job: take the dependencies this process installed, let the core work.

The process that runs workers installs them explicitly: ``pvebot worker`` for the whole process,
an embedded queue for each of its worker threads (two apps in one process keep their own). A
worker with nothing installed refuses the job loudly instead of building a second application.
"""

from __future__ import annotations

import threading

from core.services import jobs
from core.services.deps import Deps

_process_deps: Deps | None = None
_thread_deps = threading.local()


class NotInstalled(RuntimeError):
    """A worker ran a job before its process installed the dependencies to run it with."""


def install(deps: Deps, *, thread: bool = False) -> None:
    """Give this process's workers (or, ``thread=True``, only the calling thread's) the deps to run jobs with."""
    global _process_deps
    if thread:
        _thread_deps.deps = deps
    else:
        _process_deps = deps


def uninstall() -> None:
    """Forget what :func:`install` set for the process and the calling thread (tests, shutdown)."""
    global _process_deps
    _process_deps = None
    _thread_deps.__dict__.pop("deps", None)


def installed() -> Deps:
    """The deps jobs run with here: the thread's own, else the process's.

    Raises:
        NotInstalled: nothing was installed; the RQ job fails and the pvebot job is reaped later.
    """
    deps: Deps | None = getattr(_thread_deps, "deps", None) or _process_deps
    if deps is None:
        raise NotInstalled("no pvebot dependencies installed in this worker: start it with 'pvebot worker'")
    return deps


def run_job(job_id: str) -> str:
    """Run pvebot job ``job_id`` (idempotent: a second delivery does nothing).

    The core re-checks the requester's permission and scope, follows the Proxmox tasks and
    reports progress into the conversation the request came from.
    """
    return jobs.run(installed(), job_id)
