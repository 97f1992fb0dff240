"""The privilege-to-feature table and the report's scoring, without any I/O."""

from __future__ import annotations

from core.services.doctor import FEATURES, Check, Status, assess_privileges, exit_code, privilege_paths, render_text

EVERYTHING = frozenset(p for f in FEATURES for p, _ in (*f.needs, *f.instead))


def _granted(pools: list[str], *, without: dict[str, set[str]] | None = None) -> dict[str, frozenset[str]]:
    without = without or {}
    return {path: EVERYTHING - without.get(path, set()) for path in privilege_paths(pools)}


def test_every_path_the_table_needs_is_asked_for() -> None:
    assert privilege_paths(["b", "a", "a"]) == ["/", "/storage", "/vms", "/mapping/notifications", "/pool/a",
                                                "/pool/b"]


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


def _blocked(without: dict[str, set[str]]) -> list[str]:
    checks = assess_privileges(cluster="lab", pools=["acme"], granted=_granted(["acme"], without=without))
    return [c.detail for c in checks if c.status is not Status.OK]


def test_backup_schedules_need_sys_modify_and_the_event_hook_takes_either_of_its_two_ways() -> None:
    # the webhook target's check: Mapping.Modify on /mapping/notifications and (Sys.Audit + Sys.Modify on /
    # or Sys.AccessNetwork on /)
    assert _blocked({"/": {"Sys.Modify"}}) == ["this token cannot create backup schedules: it lacks Sys.Modify on /"]
    assert _blocked({"/": {"Sys.AccessNetwork"}}) == []
    (hook,) = [d for d in _blocked({"/": {"Sys.Modify", "Sys.AccessNetwork"}}) if "event hook" in d]
    assert hook == ("this token cannot set up the Proxmox event hook (notification webhook): it lacks Sys.Modify "
                    "on / (or, instead, Mapping.Modify on /mapping/notifications and Sys.AccessNetwork on /)")
    (hook,) = _blocked({"/mapping/notifications": {"Mapping.Modify"}})
    assert hook.startswith("this token cannot set up the Proxmox event hook") and "Mapping.Modify on /mapping" in hook


def test_backups_need_vm_backup_on_the_pools_and_space_on_the_storage() -> None:
    assert _blocked({"/storage": {"Datastore.AllocateSpace"}}) == [
        "this token cannot back up guests: it lacks Datastore.AllocateSpace on /storage"]
    assert _blocked({"/pool/acme": {"VM.Backup"}}) == ["this token cannot back up guests: it lacks VM.Backup on "
                                                       "/pool/acme"]


def test_the_text_report_shows_fixes_only_for_problems() -> None:
    text = render_text([Check("a", Status.OK, "fine", "never shown"), Check("b", Status.FAIL, "broken", "do this")])
    assert text == "✅ a: fine\n❌ b: broken\n   fix: do this"
