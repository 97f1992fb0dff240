"""Provisioning state: bring the database to a specification, and write the current state back.

``apply`` works inside the caller's transaction and returns what it changed (nothing on a
second run); ``export`` writes the same shape without secrets. Entities missing from the
document are left alone; lists inside an entity (a company's pools, a user's identities,
its directory groups) are authoritative.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from core.errors import ConfigurationError
from core.model import ChatIdentity, Cluster, Company, IpRange, PoolBinding, SshNode, TlsMode, User
from core.ports import Clock, SecretCipher, UnitOfWork
from core.services import addresses, audit
from core.services.provisioning import subscriptions as declared
from core.services.provisioning.document import (
    IDENTITY_KEYS,
    ClusterSpec,
    CompanySpec,
    Locate,
    PathT,
    Spec,
    UserSpec,
)


def apply(
    uow: UnitOfWork,
    spec: Spec,
    *,
    cipher: SecretCipher,
    env: Mapping[str, str],
    clock: Clock,
    actor: str,
    locate: Locate,
) -> list[str]:
    """Bring the database to ``spec`` inside ``uow`` (unscoped); the caller commits or rolls back.

    Returns:
        One line per change (``+`` created, ``~`` changed, ``-`` removed); empty when nothing changed.

    Raises:
        ConfigurationError: a reference that does not resolve (unknown cluster or company, a pool
            or identity owned by someone else); nothing must then be committed.
    """
    changes: list[str] = []
    for cs in spec.clusters:
        _apply_cluster(uow, cs, cipher=cipher, secret=env[cs.token_secret_env], changes=changes)
    _check_groups_are_free(uow, spec, locate=locate)
    _check_networks_are_free(uow, spec, locate=locate)
    for co in spec.companies:
        _apply_company(uow, co, changes=changes, locate=locate)
        _apply_networks(uow, co, changes=changes, locate=locate)
    for us in spec.users:
        _apply_user(uow, us, changes=changes, locate=locate)
    declared.apply(uow, spec, clock=clock, changes=changes)
    for line in changes:
        audit.record(uow, clock=clock, actor=actor, action="provisioning.change", target=line[:300])
    return changes


def _set(obj: Any, attr: str, value: Any, *, label: str, changes: list[str], show: bool = True) -> None:
    old = getattr(obj, attr)
    if old != value:
        setattr(obj, attr, value)
        changes.append(f"~ {label}: {attr} {old!r} -> {value!r}" if show else f"~ {label}: {attr} changed")


def _apply_cluster(uow: UnitOfWork, cs: ClusterSpec, *, cipher: SecretCipher, secret: str, changes: list[str]) -> None:
    cluster = uow.clusters.by_name(cs.name)
    if cluster is None:
        uow.clusters.add(
            Cluster(
                name=cs.name,
                api_urls=list(cs.api_urls),
                token_id=cs.token_id,
                token_secret_encrypted=cipher.encrypt(secret),
                tls_mode=cs.tls_mode,
                tls_value=cs.tls_value,
                token_secret_env=cs.token_secret_env,
                shared_templates=list(cs.shared_templates),
            )
        )
        changes.append(f"+ cluster {cs.name}")
        added = uow.clusters.by_name(cs.name)
        assert added is not None
        _apply_ssh(uow, added, cs, changes=changes)
        return
    label = f"cluster {cs.name}"
    _set(cluster, "api_urls", list(cs.api_urls), label=label, changes=changes)
    _set(cluster, "token_id", cs.token_id, label=label, changes=changes)
    _set(cluster, "tls_mode", cs.tls_mode, label=label, changes=changes)
    _set(cluster, "tls_value", cs.tls_value, label=label, changes=changes)
    _set(cluster, "token_secret_env", cs.token_secret_env, label=label, changes=changes)
    _set(cluster, "shared_templates", list(cs.shared_templates), label=label, changes=changes)
    if cipher.decrypt(cluster.token_secret_encrypted) != secret:
        cluster.token_secret_encrypted = cipher.encrypt(secret)
        changes.append(f"~ {label}: token secret changed")
    _apply_ssh(uow, cluster, cs, changes=changes)


def _apply_ssh(uow: UnitOfWork, cluster: Cluster, cs: ClusterSpec, *, changes: list[str]) -> None:
    """The file's SSH nodes; a node the file gives no host key keeps the pin ``cluster trust`` made."""
    assert cluster.id is not None
    existing = {n.node: n for n in uow.ssh.nodes(cluster.id)}
    wanted = {n.name: n for n in cs.ssh.nodes} if cs.ssh is not None else {}
    for name, node in existing.items():
        if name not in wanted:
            uow.ssh.remove_node(node)
            changes.append(f"- ssh node {cs.name}/{name}")
    if cs.ssh is None:
        return
    for name, spec in wanted.items():
        found = existing.get(name)
        if found is None:
            uow.ssh.add_node(SshNode(cluster_id=cluster.id, node=name, host=spec.host, port=spec.port,
                                     user=cs.ssh.user, host_key=spec.host_key, keys_file=cs.ssh.authorized_keys))
            changes.append(f"+ ssh node {cs.name}/{name}")
            continue
        label = f"ssh node {cs.name}/{name}"
        _set(found, "host", spec.host, label=label, changes=changes)
        _set(found, "port", spec.port, label=label, changes=changes)
        _set(found, "user", cs.ssh.user, label=label, changes=changes)
        _set(found, "keys_file", cs.ssh.authorized_keys, label=label, changes=changes)
        if spec.host_key is not None:
            _set(found, "host_key", spec.host_key, label=label, changes=changes)


def _apply_company(uow: UnitOfWork, co: CompanySpec, *, changes: list[str], locate: Locate) -> None:
    company = uow.companies.by_slug(co.slug)
    if company is None:
        company = Company(slug=co.slug, name=co.name, email_domains=list(co.email_domains), quotas=dict(co.quotas),
                          approval_policy=dict(co.approval), directory_groups=co.directory_groups,
                          backup_policy=dict(co.backup))
        uow.companies.add(company)
        changes.append(f"+ company {co.slug}")
    else:
        label = f"company {co.slug}"
        _set(company, "name", co.name, label=label, changes=changes)
        _set(company, "email_domains", list(co.email_domains), label=label, changes=changes)
        _set(company, "quotas", dict(co.quotas), label=label, changes=changes)
        _set(company, "approval_policy", dict(co.approval), label=label, changes=changes)
        _set(company, "directory_groups", co.directory_groups, label=label, changes=changes)
        _set(company, "backup_policy", dict(co.backup), label=label, changes=changes)
    clusters = {c.id: c for c in uow.clusters.list()}
    by_name = {c.name: c for c in clusters.values()}
    existing = {(clusters[b.cluster_id].name, b.pool): b for b in uow.pool_bindings.list() if b.cluster_id in clusters}
    for i, (cluster_name, pool) in enumerate(co.pools):
        where = f"{locate((*co.path, 'pools', i))}: companies[{co.path[1]}].pools[{i}]"
        cluster = by_name.get(cluster_name)
        if cluster is None:
            raise ConfigurationError(f"{where}: unknown cluster '{cluster_name}'")
        binding = existing.get((cluster_name, pool))
        if binding is None:
            uow.pool_bindings.add(PoolBinding(company_id=company.id or 0, cluster_id=cluster.id or 0, pool=pool))
            changes.append(f"+ pool {cluster_name}/{pool} -> {co.slug}")
        elif binding.company_id != company.id:
            raise ConfigurationError(f"{where}: pool {cluster_name}/{pool} already belongs to another company")
    for (cluster_name, pool), binding in existing.items():
        if binding.company_id == company.id and (cluster_name, pool) not in co.pools:
            uow.pool_bindings.remove(binding)
            changes.append(f"- pool {cluster_name}/{pool} from {co.slug}")


def _check_groups_are_free(uow: UnitOfWork, spec: Spec, *, locate: Locate) -> None:
    """A group mapped by a company the file does not describe cannot be mapped by one it does (as with pools).

    Companies in the file get their groups replaced, and the file maps each group once (validation).
    """
    described = {co.slug for co in spec.companies}
    taken = {g.get("group_id", "").lower() for other in uow.companies.list() if other.slug not in described
             for g in other.directory_groups}
    for co in spec.companies:
        for g in co.teams_groups:
            if g.group_id in taken:
                raise ConfigurationError(f"{locate(g.path)}: companies[{co.path[1]}].teams_groups[{g.path[-1]}]: "
                                         f"Teams group {g.group_id} is already mapped by another company")


def _segment(rng: IpRange) -> tuple[str, str | int | None]:
    return ("vnet", rng.vnet) if rng.vnet else ("vlan", rng.vlan)


def _check_networks_are_free(uow: UnitOfWork, spec: Spec, *, locate: Locate) -> None:
    """A range may not overlap one of a company the file does not describe (the file's own were checked)."""
    described = {co.slug for co in spec.companies}
    clusters = {c.id: c.name for c in uow.clusters.list()}
    slugs = {c.id: c.slug for c in uow.companies.list()}
    others = [r for r in uow.ip_ranges.list() if slugs.get(r.company_id) not in described]
    for co in spec.companies:
        for net in co.networks:
            for other in others:
                if (clusters.get(other.cluster_id) == net.cluster and _segment(other) == net.segment
                        and ipaddress.IPv4Network(other.cidr).overlaps(ipaddress.IPv4Network(net.cidr))):
                    raise ConfigurationError(
                        f"{locate(net.path)}: companies[{co.path[1]}].networks[{net.path[-1]}]: {net.cidr} "
                        f"({co.slug}/{net.name}) overlaps {other.cidr} ({slugs.get(other.company_id)}/{other.name}, "
                        f"already provisioned) on cluster {net.cluster} {net.describe_segment()}")


_RANGE_FIELDS = ("cluster_id", "cidr", "gateway", "vlan", "bridge", "vnet", "dns", "search_domain", "reserved")


def _apply_networks(uow: UnitOfWork, co: CompanySpec, *, changes: list[str], locate: Locate) -> None:
    """The company's ranges become the file's; a range with addresses assigned outside its new shape is refused."""
    company = uow.companies.by_slug(co.slug)
    assert company is not None and company.id is not None
    clusters = {c.name: c for c in uow.clusters.list()}
    existing = {r.name: r for r in uow.ip_ranges.list() if r.company_id == company.id}
    for net in co.networks:
        where = f"{locate(net.path)}: companies[{co.path[1]}].networks[{net.path[-1]}]"
        cluster = clusters.get(net.cluster)
        if cluster is None or cluster.id is None:
            raise ConfigurationError(f"{where}: unknown cluster '{net.cluster}'")
        wanted = IpRange(company_id=company.id, cluster_id=cluster.id, name=net.name, cidr=net.cidr,
                         gateway=net.gateway, vlan=net.vlan, bridge=net.bridge, vnet=net.vnet, dns=list(net.dns),
                         search_domain=net.search_domain, reserved=list(net.reserved))
        rng = existing.get(net.name)
        if rng is None:
            uow.ip_ranges.add(wanted)
            changes.append(f"+ range {co.slug}/{net.name} {net.cidr} on {net.cluster} {net.describe_segment()}")
            continue
        label = f"range {co.slug}/{net.name}"
        for attr in _RANGE_FIELDS:
            _set(rng, attr, getattr(wanted, attr), label=label, changes=changes)
        assert rng.id is not None
        stranded = [a.address for a in uow.ip_assignments.for_range(rng.id)
                    if a.cluster_id != rng.cluster_id or not addresses.is_assignable(rng, a.number)]
        if stranded:
            raise ConfigurationError(f"{where}: {label} would leave assigned addresses outside it: "
                                     f"{', '.join(stranded[:5])}; release them first")
    for name, rng in existing.items():
        if name not in {n.name for n in co.networks}:
            assert rng.id is not None
            held = uow.ip_assignments.for_range(rng.id)
            if held:
                raise ConfigurationError(f"range {co.slug}/{name} still has {len(held)} address(es) assigned; "
                                         "release them before removing it from the file")
            uow.ip_ranges.remove(rng)
            changes.append(f"- range {co.slug}/{name}")


def _apply_user(uow: UnitOfWork, us: UserSpec, *, changes: list[str], locate: Locate) -> None:
    def company_id(slug: str, path: PathT) -> int:
        company = uow.companies.by_slug(slug)
        if company is None or company.id is None:
            raise ConfigurationError(f"{locate(path)}: unknown company '{slug}'")
        return company.id

    home = company_id(us.company, (*us.path, "company")) if us.company else None
    assigned = [uow.companies.get(company_id(s, (*us.path, "companies"))) for s in us.companies]
    user = uow.users.by_email(us.email)
    if user is None:
        user = User(email=us.email, name=us.name, role=us.role, company_id=home, active=us.active,
                    assigned_companies=[a for a in assigned if a is not None])
        uow.users.add(user)
        changes.append(f"+ user {us.email} ({us.role.value})")
    else:
        label = f"user {us.email}"
        _set(user, "name", us.name, label=label, changes=changes)
        if user.role != us.role:
            changes.append(f"~ {label}: role {user.role.value} -> {us.role.value}")
            user.role = us.role
        _set(user, "company_id", home, label=label, changes=changes)
        _set(user, "active", us.active, label=label, changes=changes)
        old = sorted(c.slug for c in user.assigned_companies)
        if old != sorted(us.companies):
            user.assigned_companies = [a for a in assigned if a is not None]
            changes.append(f"~ {label}: companies {old} -> {sorted(us.companies)}")
    assert user.id is not None
    current = {(i.platform, i.workspace_id, i.platform_user_id): i for i in uow.identities.for_user(user.id)}
    wanted = {(i.platform, i.workspace_id, i.user_id) for i in us.identities}
    for key in sorted(wanted - current.keys()):
        other = uow.identities.find(platform=key[0], workspace_id=key[1], platform_user_id=key[2])
        if other is not None:
            raise ConfigurationError(
                f"{locate((*us.path, 'identities'))}: {key[0]} identity {key[2]} is linked to another user"
            )
        uow.identities.add(ChatIdentity(platform=key[0], workspace_id=key[1], platform_user_id=key[2],
                                        user_id=user.id))
        changes.append(f"+ identity {key[0]}:{key[1]}:{key[2]} -> {us.email}")
    for key in sorted(current.keys() - wanted):
        # identities linked automatically (by email) are kept; only provisioned ones are managed here
        if key[0] in IDENTITY_KEYS:
            uow.identities.remove(current[key])
            changes.append(f"- identity {key[0]}:{key[1]}:{key[2]} from {us.email}")


# ---- export ----------------------------------------------------------------------------


def _export_range(rng: IpRange, clusters: Mapping[int | None, Cluster]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": rng.name, "cluster": clusters[rng.cluster_id].name, "cidr": rng.cidr}
    for key, value in (("gateway", rng.gateway), ("vlan", rng.vlan), ("bridge", rng.bridge), ("vnet", rng.vnet),
                       ("dns", list(rng.dns)), ("search_domain", rng.search_domain),
                       ("reserved", list(rng.reserved))):
        if value:
            entry[key] = value
    return entry


def export(uow: UnitOfWork) -> dict[str, Any]:
    """The current state in the provisioning shape; secrets appear only as the env var that held them."""
    clusters = uow.clusters.list()
    by_id = {c.id: c for c in clusters}
    companies = uow.companies.list()
    slug_of = {c.id: c.slug for c in companies}
    bindings = uow.pool_bindings.list()
    doc: dict[str, Any] = {"clusters": [], "companies": [], "users": []}
    for cl in clusters:
        tls: dict[str, Any] = (
            {"fingerprint": cl.tls_value} if cl.tls_mode is TlsMode.FINGERPRINT
            else {"ca_file": cl.tls_value} if cl.tls_mode is TlsMode.CA_FILE
            else {"verify": False}
        )
        entry: dict[str, Any] = {"name": cl.name, "api_urls": list(cl.api_urls), "token_id": cl.token_id,
                                 "token_secret_env": cl.token_secret_env or f"PVE_{cl.name.upper()}_TOKEN", "tls": tls}
        if cl.shared_templates:
            entry["shared_templates"] = list(cl.shared_templates)
        assert cl.id is not None
        nodes = uow.ssh.nodes(cl.id)
        if nodes:
            entry["ssh"] = {"user": nodes[0].user, "authorized_keys": nodes[0].keys_file,
                            "nodes": [{"name": n.node, "host": n.host, "port": n.port,
                                       **({"host_key": n.host_key} if n.host_key else {})} for n in nodes]}
        doc["clusters"].append(entry)
    for co in companies:
        entry = {"slug": co.slug, "name": co.name, "email_domains": list(co.email_domains),
                 "pools": [{"cluster": by_id[b.cluster_id].name, "pool": b.pool}
                           for b in bindings if b.company_id == co.id and b.cluster_id in by_id]}
        if co.quotas:
            entry["quotas"] = dict(co.quotas)
        if co.approval_policy:
            entry["approval"] = dict(co.approval_policy)
        if co.backup_policy:
            entry["backup"] = dict(co.backup_policy)
        if co.directory_groups:
            entry["teams_groups"] = [{"group_id": g.get("group_id"), "role": g.get("role")}
                                     for g in co.directory_groups]
        networks = [_export_range(r, by_id) for r in uow.ip_ranges.list() if r.company_id == co.id]
        if networks:
            entry["networks"] = networks
        subscribed = declared.export(uow, co)
        if subscribed:
            entry["notifications"] = subscribed
        doc["companies"].append(entry)
    provider = declared.export(uow, None)
    if provider:
        doc["notifications"] = provider
    for u in uow.users.list():
        entry = {"email": u.email, "name": u.name, "role": u.role.value}
        if u.company_id is not None:
            entry["company"] = slug_of.get(u.company_id)
        if u.assigned_companies:
            entry["companies"] = sorted(c.slug for c in u.assigned_companies)
        if not u.active:
            entry["active"] = False
        idents = []
        for i in uow.identities.for_user(u.id or 0):
            if i.platform in IDENTITY_KEYS:
                ws_key, user_key = IDENTITY_KEYS[i.platform]
                idents.append({"platform": i.platform, ws_key: i.workspace_id, user_key: i.platform_user_id})
        if idents:
            entry["identities"] = idents
        doc["users"].append(entry)
    return doc
