"""The privilege-to-feature table and the report's scoring, without any I/O."""

from __future__ import annotations

from core.services.doctor import FEATURES, Check, Status, assess_privileges, exit_code, privilege_paths, render_text

EVERYTHING = frozenset(p for f in FEATURES for p, _ in f.needs)


def _granted(pools: list[str], *, without: dict[str, set[str]] | None = None) -> dict[str, frozenset[str]]:
    without = without or {}
    return {path: EVERYTHING - without.get(path, set()) for path in privilege_paths(pools)}


def test_every_path_the_table_needs_is_asked_for() -> None:
    assert privilege_paths(["b", "a", "a"]) == ["/", "/storage", "/vms", "/pool/a", "/pool/b"]


def test_a_privilege_missing_on_one_pool_names_that_pool_only() -> None:
    checks = assess_privileges(cluster="lab", pools=["acme", "globex"],
                               granted=_granted(["acme", "globex"], without={"/pool/globex": {"VM.PowerMgmt"}}))
    assert [c.detail for c in checks] == [
        "this token cannot run power actions (start, shutdown, stop, reboot, reset, suspend, resume): "
        "it lacks VM.PowerMgmt on /pool/globex"
    ]
    assert checks[0].status is Status.WARN and exit_code(checks) == 0


def test_clones_need_both_privileges_and_listing_is_essential() -> None:
    checks = assess_privileges(cluster="lab", pools=["acme"],
                               granted=_granted(["acme"], without={"/vms": {"VM.Clone"}, "/pool/acme": {"VM.Audit"}}))
    by_detail = {c.detail.split(":")[0]: c for c in checks}
    assert by_detail["this token cannot see the companies' guests (vm list, vm status)"].status is Status.FAIL
    assert "VM.Clone on /vms" in by_detail["this token cannot clone templates into the companies' pools (vm create)"
                                           ].detail
    assert exit_code(checks) == 1


def test_the_text_report_shows_fixes_only_for_problems() -> None:
    text = render_text([Check("a", Status.OK, "fine", "never shown"), Check("b", Status.FAIL, "broken", "do this")])
    assert text == "✅ a: fine\n❌ b: broken\n   fix: do this"
