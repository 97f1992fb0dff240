"""The shell wraps tables to the terminal's width, and leaves output to a file or pipe unwrapped."""

from __future__ import annotations

import io

import pytest

from bot.bootstrap import App, Storage
from bot.processes import shell_session
from tests.fakes import FakeClock, FakeHypervisors, FakeQueue
from tests.support import provision, test_app

BOB = "bob@acme.example"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def app(sqlite_url: str, clock: FakeClock) -> App:
    from tests.support import make_storage

    storage: Storage = make_storage(sqlite_url, clock=clock)
    provision(storage)
    return test_app(storage, hypervisors=FakeHypervisors(), queue=FakeQueue())


def _help_lines(app: App, out: io.StringIO, *, width: int | None = None) -> list[str]:
    session = shell_session(app, email=BOB, out=out, width=width)
    session.run(["help"])
    return out.getvalue().splitlines()


def test_a_fixed_width_wraps_the_help_table(app: App) -> None:
    lines = _help_lines(app, io.StringIO(), width=60)
    assert max(len(line) for line in lines) <= 60
    unwrapped = _help_lines(app, io.StringIO())
    assert max(len(line) for line in unwrapped) > 60  # there was something to wrap
    # only where lines break differs: every character is still there
    assert sorted("".join(lines).replace(" ", "")) == sorted("".join(unwrapped).replace(" ", ""))


def test_a_terminal_wraps_to_its_own_width(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "72")  # what shutil.get_terminal_size reads first
    lines = _help_lines(app, FakeTerminal())
    assert max(len(line) for line in lines) <= 72
    assert any(line.startswith(" ") and line.strip() for line in lines)  # continuation lines, aligned


def test_a_pipe_is_not_wrapped(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    lines = _help_lines(app, io.StringIO())
    assert any(len(line) > 40 for line in lines)
