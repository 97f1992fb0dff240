"""The telemetry port: what the core reports about its own work, for whoever measures it.

The core does not know Prometheus; ``adapters/metrics.py`` implements this port with
``prometheus-client`` and the composition root hands it in through ``Deps``. Every method must
be cheap and must not raise: measuring never fails the work measured.
"""

from __future__ import annotations

from typing import Protocol


class Telemetry(Protocol):
    def command_handled(self, *, command: str, outcome: str, seconds: float) -> None:
        """A chat command was answered (``outcome``: ok, error, denied)."""

    def job_finished(self, *, action: str, state: str, seconds: float) -> None:
        """A job reached a final ``state`` after running ``seconds``."""

    def proxmox_call(self, *, cluster: str, outcome: str, seconds: float) -> None:
        """One API call to a cluster (``outcome``: ok, or the kind of failure)."""

    def chat_post(self, *, platform: str, outcome: str) -> None:
        """One post or edit towards a chat platform (``outcome``: ok, rate_limited, error)."""

    def chat_rate_limited(self, *, platform: str) -> None:
        """The platform answered one call with HTTP 429, whether the call was then tried again or not."""


class NullTelemetry:
    """Measures nothing: the default for tests and the CLI."""

    def command_handled(self, *, command: str, outcome: str, seconds: float) -> None:
        pass

    def job_finished(self, *, action: str, state: str, seconds: float) -> None:
        pass

    def proxmox_call(self, *, cluster: str, outcome: str, seconds: float) -> None:
        pass

    def chat_post(self, *, platform: str, outcome: str) -> None:
        pass

    def chat_rate_limited(self, *, platform: str) -> None:
        pass
