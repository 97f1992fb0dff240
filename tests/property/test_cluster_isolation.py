"""Cluster tenancy as a property: a company admin sees exactly the clusters its company uses, and no node internals.

Hypothesis draws which of two clusters each company has a pool on; for each company admin, ``cluster list``
names exactly the clusters of its company's pools, ``cluster status`` of another one answers like a cluster
that does not exist, and no answer holds a node name, a version, an address, a host key pin or an SSH state;
the provider's commands (keys, trust, node updates) are refused. A super_admin sees both clusters and their
nodes (the check itself can fail).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands import build_registry
from commands.registry import Args, CommandContext
from core.chat import ConversationRef, Reply
from core.errors import BotError
from core.ids import new_id
from core.model import PoolBinding
from core.principal import Scope
from pvesim import SimServer
from tests.e2e.shell_world import World, world, world_doc
from tests.support import principal

pytestmark = pytest.mark.slow

CLUSTERS = ("lab", "edge")
ADMINS = {"acme": "alice@acme.example", "globex": "carol@globex.example"}
PIN = "SHA256:" + "Q" * 43
# what only the provider may learn about a cluster
INTERNALS = ("pve1", "pve2", "8.4.1", "127.0.0.1", "SHA256:", "pve-manager", "ssh", "key", "updates")


def _doc(server: SimServer) -> str:
    text = world_doc(server)
    start = text.index("  - name: lab\n")
    end = text.index("companies:")
    lab = text[start:end]
    ssh = ("    ssh:\n      nodes:\n"
           f'        - {{name: pve1, host: 127.0.0.1, port: 1, host_key: "{PIN}"}}\n'
           "        - {name: pve2, host: 127.0.0.1, port: 2}\n")
    lab = lab.replace("    shared_templates: [9000]\n", "    shared_templates: [9000]\n" + ssh)
    return text[:start] + lab + lab.replace("name: lab", "name: edge") + text[end:]


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("clusters")
    with world(tmp, queue="embedded", doc=_doc) as w:
        yield w


def _bind(w: World, layout: dict[str, frozenset[str]]) -> None:
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        clusters = {c.name: c for c in uow.clusters.list()}
        companies = {c.slug: c for c in uow.companies.list()}
        for binding in uow.pool_bindings.list():
            uow.pool_bindings.remove(binding)
        for slug, on in layout.items():
            for name in on:
                uow.pool_bindings.add(PoolBinding(company_id=companies[slug].id or 0,
                                                  cluster_id=clusters[name].id or 0, pool=slug))
        uow.commit()


def _say(w: World, who: str, line: str) -> str:
    """One command through the chat (the shell), rate limit and all."""
    shell, out = w.shell(who)
    shell.run([line])
    return out.getvalue().split("\n", 1)[1]  # without the echoed command


def _answer(w: World, who: str, command: str, **values: str) -> str:
    """The registered handler's answer as plain text, or the error a chat would show.

    Hypothesis asks many times in a few seconds, more than the chat's per-user rate limit lets through;
    this is the handler every chat path calls, with the principal the dispatcher would resolve.
    """
    registry = build_registry()
    spec = registry.get(command)
    assert spec is not None
    ctx = CommandContext(principal=principal(w.app.storage, who), deps=w.app.deps,
                         conversation=ConversationRef(platform="shell", channel="prop"), request_id=new_id(),
                         registry=registry, command=command)
    try:
        reply = spec.handler(Args(dict(values)), ctx)
    except BotError as e:
        return e.user_message
    assert isinstance(reply, Reply)
    return reply.plain_text()


layouts = st.fixed_dictionaries({slug: st.frozensets(st.sampled_from(CLUSTERS)) for slug in ADMINS})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=layouts)
def test_a_company_admin_sees_its_clusters_only_and_no_node_internals(
        w: World, layout: dict[str, frozenset[str]]) -> None:
    _bind(w, layout)
    for slug, admin in ADMINS.items():
        mine = layout[slug]
        listing = _answer(w, admin, "cluster list")
        shown = {name for name in CLUSTERS if f"\n{name} " in "\n" + listing}
        assert shown == mine, (slug, layout, listing)
        answers = [listing]
        for name in CLUSTERS:
            status = _answer(w, admin, "cluster status", cluster=name)
            if name in mine:
                assert f"Cluster {name}" in status and "quorate" in status, status
            else:
                assert status == f"cluster '{name}' not found", status
            answers.append(status)
        for text in answers:
            lowered = text.lower()
            assert not [word for word in INTERNALS if word.lower() in lowered], (slug, text)


def test_the_provider_commands_refuse_a_company_admin_through_the_chat(w: World) -> None:
    _bind(w, {"acme": frozenset({"lab", "edge"}), "globex": frozenset({"lab"})})
    for line in ("cluster keys health", "cluster trust lab pve1", "node updates lab/pve1", "node upgrade lab/pve1",
                 "cluster keys push lab", "cluster keys rotate --all"):
        refused = _say(w, ADMINS["acme"], line)
        assert "cannot use" in refused, (line, refused)
    assert "no clusters" not in _say(w, ADMINS["acme"], "cluster list")
    assert _say(w, ADMINS["globex"], "cluster status edge") == _say(w, ADMINS["globex"], "cluster status ghost"
                                                                    ).replace("ghost", "edge")


def test_the_provider_sees_every_cluster_and_its_nodes(w: World) -> None:
    _bind(w, {"acme": frozenset({"lab"}), "globex": frozenset()})
    listing = _say(w, "root@host.example", "cluster list")
    assert "\nlab " in "\n" + listing and "\nedge " in "\n" + listing
    status = _say(w, "root@host.example", "cluster status edge")
    assert "pve1" in status and "pve2" in status and "8.4.1" in status
