"""The ports a service needs, bundled so that commands and jobs pass one object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.ports import (
    Clock,
    DirectMessages,
    Hypervisors,
    JobQueue,
    KeyMaker,
    Notifier,
    RemoteShell,
    SecretCipher,
    UnitOfWorkFactory,
)
from core.services.directory_cache import DirectoryCache
from core.telemetry import NullTelemetry, Telemetry


@dataclass(frozen=True)
class SshDeps:
    """What SSH work needs: the shell, a key maker, the cipher for keys at rest, and where passwords are read."""

    shell: RemoteShell
    keys: KeyMaker
    cipher: SecretCipher
    # the process environment ``--password-env VAR`` names a variable of (read when the job runs, never kept)
    environ: Mapping[str, str]
    # how many clusters the ``--all`` forms and the periodic checks work on at once
    parallel: int = 4
    # how long one command on a node may take (an upgrade: long; a login test: seconds)
    command_timeout: float = 30.0
    upgrade_timeout: float = 1800.0


@dataclass(frozen=True)
class Deps:
    uow_factory: UnitOfWorkFactory
    hypervisors: Hypervisors
    queue: JobQueue
    notifier: Notifier
    clock: Clock
    job_timeout: int = 1800
    # at most one edit of a progress message per this many seconds
    progress_interval: float = 1.0
    # how often a running job looks at its Proxmox task
    poll_interval: float = 0.5
    # how long a job keeps asking after its task when Proxmox (or pvebot's database) does not answer,
    # before it says the outcome is unknown: the task goes on in Proxmox whatever our connection does
    follow_grace: float = 60.0
    telemetry: Telemetry = field(default_factory=NullTelemetry)
    # principals and pool ownership kept between commands while the directory version stays
    directory_cache: DirectoryCache | None = None
    ssh: SshDeps | None = None
    # opens direct messages, where approval cards go when a company names no approvers channel
    direct: DirectMessages | None = None
