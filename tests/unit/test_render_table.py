"""Plain-text tables wrapped to a width: aligned columns, continuation lines, nothing cut."""

from __future__ import annotations

from core.chat import Field, Reply, Section, Table, render_section, render_table

TABLE = Table(
    columns=("vmid", "name", "description"),
    rows=(
        ("101", "web-01", "the public web server of the shop, behind the load balancer"),
        ("102", "db-01", "short"),
    ),
)


def test_without_a_width_nothing_wraps() -> None:
    assert render_table(TABLE).splitlines()[1] == (
        "101   web-01  the public web server of the shop, behind the load balancer")


def test_the_widest_column_wraps_onto_aligned_continuation_lines() -> None:
    text = render_table(TABLE, width=40)
    assert text.splitlines() == [
        "vmid  name    description",
        "101   web-01  the public web server of",
        "              the shop, behind the load",
        "              balancer",
        "102   db-01   short",
    ]
    assert all(len(line) <= 40 for line in text.splitlines())


def test_a_word_longer_than_the_column_is_split_not_cut() -> None:
    url = "https://example.com/" + "x" * 40
    table = Table(columns=("name", "url"), rows=(("a", url),))
    lines = render_table(table, width=30).splitlines()
    assert all(len(line) <= 30 for line in lines)
    assert "".join(line[6:] for line in lines[1:]) == url  # every character, in order, in the url column
    assert lines[1].startswith("a     https://")


def test_a_table_that_fits_is_unchanged_and_several_columns_shrink_when_needed() -> None:
    assert render_table(TABLE, width=200) == render_table(TABLE)
    wide = Table(columns=("a", "b"), rows=(("alpha beta gamma delta", "one two three four five"),))
    lines = render_table(wide, width=24).splitlines()
    assert all(len(line) <= 24 for line in lines)
    words = " ".join(lines[1:]).split()
    assert sorted(words) == sorted("alpha beta gamma delta one two three four five".split())


def test_too_many_columns_keep_a_minimum_width_and_lose_nothing() -> None:
    table = Table(columns=tuple(f"column{i}" for i in range(6)), rows=(tuple("value-" + "z" * 10 for _ in range(6)),))
    text = render_table(table, width=20)
    assert text.replace("\n", "").replace(" ", "").count("z") == 60


def test_a_reply_passes_the_width_to_its_table() -> None:
    reply = Reply(title="VMs", table=TABLE)
    assert reply.plain_text(width=40).splitlines()[1:] == render_table(TABLE, width=40).splitlines()


LONG_USAGE = "backup schedule create <name> --when WHEN [--vms VMS | --all] [--cluster C] [--storage S] [--keep-last N]"
SECTION = Section("backup", (Field("backup list <vm>", "a VM's backups"), Field(LONG_USAGE, "create a schedule"),
                             Field("backup status", "each VM's last backup")))


def test_a_long_label_stands_alone_and_leaves_the_other_items_aligned_as_if_it_were_not_there() -> None:
    assert render_section(SECTION).splitlines() == [
        "backup",
        "  backup list <vm>  a VM's backups",
        f"  {LONG_USAGE}",
        "                    create a schedule",
        "  backup status     each VM's last backup",
    ]


def test_a_long_label_and_its_value_wrap_to_the_width_and_lose_nothing() -> None:
    lines = render_section(SECTION, width=60).splitlines()
    assert all(len(line) <= 60 for line in lines), lines
    assert " ".join(" ".join(lines).split()).count("create a schedule") == 1
    joined = "".join(line.strip() + " " for line in lines)
    assert " ".join(LONG_USAGE.split()) in " ".join(joined.split())
    assert lines[1] == "  backup list <vm>  a VM's backups"
