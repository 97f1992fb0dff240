"""The command language: quoting, ``--flag value`` and ``--flag=value``, suggestions, and usage on mistakes."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from commands import build_registry
from commands.grammar import UnknownCommand, kept_text, parse, tokenize
from commands.registry import CommandRegistry, CommandSpec, Param
from core.chat import Reply
from core.errors import InvalidArguments, NotFound


@pytest.fixture(scope="module")
def registry() -> CommandRegistry:
    return build_registry()


def _error(text: str, registry: CommandRegistry) -> str:
    with pytest.raises((InvalidArguments, NotFound)) as caught:
        parse(text, registry)
    return caught.value.user_message


def test_quotes_group_words_like_a_shell(registry: CommandRegistry) -> None:
    assert tokenize("vm create \"web 01\" --template 'ubuntu 24'") == ["vm", "create", "web 01", "--template",
                                                                        "ubuntu 24"]
    parsed = parse('vm create "web 01" --template tpl', registry)
    assert parsed.spec.name == "vm create"
    assert parsed.args.values == {"name": "web 01", "template": "tpl"}


def test_typographic_quotes_from_chat_clients_count_as_plain_ones(registry: CommandRegistry) -> None:
    assert parse("vm create “web 01” --template ‘ubuntu lts’", registry).args.values == {
        "name": "web 01", "template": "ubuntu lts"}


def test_unbalanced_quotes_are_an_argument_error(registry: CommandRegistry) -> None:
    assert _error('vm create "web 01 --template t', registry) == "unbalanced quotes in the command"


@pytest.mark.parametrize(
    "text",
    [
        "vm create web01 --template tpl --cores 4 --memory 8G",
        "vm create web01 --template=tpl --cores=4 --memory=8G",
        "vm create --cores 4 web01 --memory=8G --template tpl",
    ],
)
def test_flags_take_their_value_after_a_space_or_an_equals_sign(text: str, registry: CommandRegistry) -> None:
    assert parse(text, registry).args.values == {"name": "web01", "template": "tpl", "cores": 4, "memory": "8G"}


def test_an_equals_value_may_be_empty_or_contain_equals(registry: CommandRegistry) -> None:
    assert parse("vm list --search=a=b", registry).args["search"] == "a=b"
    assert parse("vm list --search=", registry).args["search"] == ""


def test_switches_take_no_value(registry: CommandRegistry) -> None:
    parsed = parse("vm list --refresh --page 2", registry)
    assert parsed.args.values == {"refresh": True, "page": 2}
    assert parse("job list", registry).args["active"] is None


def test_int_flags_are_converted_or_refused(registry: CommandRegistry) -> None:
    assert _error("vm list --page two", registry) == "page must be a whole number, got 'two'"


def test_a_flag_without_its_value_shows_the_usage(registry: CommandRegistry) -> None:
    message = _error("vm create web01 --template", registry)
    assert message == ("--template needs a value. Usage: vm create <name> --template T [--cores N] [--memory 4G] "
                       "[--disk +10G] [--cluster C] [--net RANGE]")


def test_an_unknown_flag_lists_the_known_ones(registry: CommandRegistry) -> None:
    assert _error("vm stop 101 --force", registry) == (
        "unknown option --force (options: --reason). Usage: vm stop <vm> [--reason REASON]")
    assert _error("vm start 101 --force", registry) == "unknown option --force (options: none). Usage: vm start <vm>"


def test_missing_arguments_show_the_usage(registry: CommandRegistry) -> None:
    assert _error("vm start", registry) == "missing vm. Usage: vm start <vm>"
    assert _error("snapshot rollback web01", registry) == (
        "missing name. Usage: snapshot rollback <vm> <name> [--reason REASON]")


def test_surplus_arguments_show_the_usage(registry: CommandRegistry) -> None:
    assert _error("vm start 101 102", registry) == "too many arguments. Usage: vm start <vm>"


def test_a_rest_argument_takes_the_rest_of_the_line(registry: CommandRegistry) -> None:
    assert parse("deny apr-k3m9x2 it is   the production   database", registry).args.values == {
        "request": "apr-k3m9x2", "reason": "it is the production database"}
    assert parse("deny apr-k3m9x2", registry).args.values == {"request": "apr-k3m9x2"}


def test_command_names_ignore_case_and_arguments_keep_it(registry: CommandRegistry) -> None:
    parsed = parse("VM Start Web01", registry)
    assert (parsed.spec.name, parsed.args["vm"]) == ("vm start", "Web01")


def test_two_word_commands_win_over_one_word_ones(registry: CommandRegistry) -> None:
    assert parse("job list --active", registry).spec.name == "job list"
    assert parse("help vm", registry).args["group"] == "vm"


def test_empty_text_is_help(registry: CommandRegistry) -> None:
    assert parse("   ", registry).spec.name == "help"


@pytest.mark.parametrize(
    ("text", "suggested"),
    [
        ("vm strat 101", "vm start"),
        ("vm lsit", "vm list"),
        ("snapshot craete web01", "snapshot create"),
        ("hlep", "help"),
        ("jobs list", "job list"),
        ("ip alocate web-01", "ip assign"),
    ],
)
def test_an_unknown_command_suggests_the_closest(text: str, suggested: str, registry: CommandRegistry) -> None:
    with pytest.raises(UnknownCommand) as caught:
        parse(text, registry)
    message = caught.value.user_message
    assert message.startswith("unknown command '") and "Did you mean: " in message
    assert suggested in message.split("Did you mean: ", 1)[1]


def test_a_known_group_suggests_only_its_own_commands(registry: CommandRegistry) -> None:
    for text in ("ip alocate web-01", "vm strat 101", "backup schedule lst", "net shwo"):
        group = text.split()[0]
        suggested = _error(text, registry).split("Did you mean: ", 1)[1].rstrip("?").split(", ")
        assert suggested and all(name.split()[0] == group for name in suggested), text


def test_only_commands_the_caller_may_use_are_suggested(registry: CommandRegistry) -> None:
    def read_only(spec: CommandSpec) -> bool:
        return not spec.name.startswith(("vm start", "vm stop", "vm create"))

    with pytest.raises(UnknownCommand) as caught:
        parse("vm strat web-01", registry, usable=read_only)
    suggested = caught.value.user_message.split("Did you mean: ", 1)[1].rstrip("?").split(", ")
    assert suggested and not {"vm start", "vm stop", "vm create"} & set(suggested), suggested
    assert "vm status" in suggested
    assert parse("vm start web-01", registry, usable=read_only).spec.name == "vm start"  # refused later, by role


def test_a_bare_group_suggests_its_commands(registry: CommandRegistry) -> None:
    message = _error("snapshot", registry)
    assert message.startswith("unknown command 'snapshot'. Did you mean: ")
    suggested = message.split("Did you mean: ", 1)[1].rstrip("?").split(", ")
    assert suggested and all(name.startswith("snapshot ") for name in suggested)
    assert _error("vm", registry).startswith("unknown command 'vm'. Did you mean: vm ")


def test_nonsense_points_to_help(registry: CommandRegistry) -> None:
    assert _error("xyzzy plugh", registry) == "unknown command 'xyzzy plugh'. Type 'help' for the list."


def test_unknown_command_answers_like_not_found_and_is_bounded(registry: CommandRegistry) -> None:
    with pytest.raises(NotFound) as caught:
        parse("q" * 500, registry)
    assert len(caught.value.user_message) < 120


def test_a_registry_refuses_duplicates_and_commands_without_help() -> None:
    registry = CommandRegistry()

    @registry.command("ping", permission=None, args=(Param("count", int, required=False),))
    def ping(args: object, ctx: object) -> Reply:
        """Answer pong."""
        return Reply(text="pong")

    assert parse("ping 3", registry).args["count"] == 3
    with pytest.raises(ValueError, match="registered twice"):
        registry.command("ping", permission=None)(ping)
    with pytest.raises(ValueError, match="no help text"):
        registry.command("silent", permission=None)(lambda args, ctx: Reply(text=""))


def test_a_switch_takes_an_explicit_yes_or_no() -> None:
    from commands import build_registry
    from commands.grammar import parse

    registry = build_registry()
    assert parse("vm list --refresh=no", registry).args["refresh"] is False
    assert parse("vm list --refresh=yes", registry).args["refresh"] is True
    assert parse("vm list --refresh", registry).args["refresh"] is True
    with pytest.raises(InvalidArguments, match="is a switch"):
        parse("vm list --refresh=maybe", registry)


# -- the typed line the audit trail keeps --------------------------------------------------------

# a password as someone might type it: no blanks, no quotes (those come from the forms below)
_PASSWORD = st.text(st.characters(categories=("L", "N", "P", "S"), exclude_characters="\"'\u201c\u201d*"),
                    min_size=4, max_size=30)
_FORMS = ("{flag} {v}", "{flag}={v}", '{flag} "{v} {v}"', "{flag}='{v} {v}'", "{flag} \u201c{v} {v}\u201d",
          '{flag} "{v} {v}', "{flag} {v} --all")


@given(password=_PASSWORD, form=st.sampled_from(_FORMS), flag=st.sampled_from(["--password-env", "--PASSWORD-ENV"]),
       command=st.sampled_from(["cluster keys push lab", "clutser keys psuh", "cluster keys push --all"]))
def test_a_secret_prone_value_never_reaches_the_kept_text(password: str, form: str, flag: str, command: str) -> None:
    # the line need not parse: a typo in the command's name is masked too
    typed = f"{command} " + form.format(flag=flag, v=password)
    assume(password not in f"{command} {flag}")
    kept = kept_text(typed, build_registry())
    assert password not in kept, kept
    assert kept.startswith(f"{command} {flag}") and "***" in kept


def test_the_rest_of_the_line_is_kept_as_typed(registry: CommandRegistry) -> None:
    assert kept_text("cluster keys push lab --password-env ROOT_PW --all", registry) == \
        "cluster keys push lab --password-env *** --all"
    unbalanced = 'cluster keys push lab --password-env "hunter 2'
    assert kept_text(unbalanced, registry) == "cluster keys push lab --password-env ***"
    assert kept_text("vm start web-01 --password-envy x", registry) == "vm start web-01 --password-envy x"
    assert kept_text("vm create web --template tpl", registry) == "vm create web --template tpl"
