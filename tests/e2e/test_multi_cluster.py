"""Several clusters: asked in parallel, and one that does not answer leaves the others usable."""

from __future__ import annotations

import pytest

from bot.bootstrap import Storage
from core.chat import Severity
from tests.fakes import FakeClock, FakeHypervisors, FakeQueue
from tests.support import STANDARD_DOC, ChatDriver, job_of, provision, test_app

BOB = "bob@acme.example"
EDGE = """\
  - name: edge
    api_urls: [https://127.0.0.2:8006]
    token_id: "pvebot@pve!bot"
    token_secret_env: PVE_EDGE_TOKEN
    tls: {verify: false}
companies:"""


@pytest.fixture
def chat(storage: Storage, clock: FakeClock) -> tuple[ChatDriver, FakeHypervisors]:
    doc = STANDARD_DOC.replace("companies:", EDGE, 1).replace(
        "pools: [{cluster: lab, pool: acme}]", "pools: [{cluster: lab, pool: acme}, {cluster: edge, pool: acme-edge}]"
    )
    provision(storage, doc)
    hypervisors = FakeHypervisors()
    hypervisors.cluster("lab").add(101, "web-01", pool="acme", status="stopped")
    hypervisors.cluster("edge").add(301, "web-01", pool="acme-edge", status="stopped")
    hypervisors.cluster("edge").add(302, "cdn-01", pool="acme-edge")
    return ChatDriver(test_app(storage, hypervisors=hypervisors, queue=FakeQueue())), hypervisors


def test_a_silent_cluster_leaves_the_others_listed_with_a_warning(chat: tuple[ChatDriver, FakeHypervisors]) -> None:
    driver, hypervisors = chat
    assert "cdn-01" in driver.run("vm list", as_=BOB).plain_text()
    hypervisors.cluster("edge").down = "cluster edge: no API URL of the cluster accepted a connection"
    listing = driver.run("vm list --refresh", as_=BOB)
    text = listing.plain_text()
    assert listing.severity is Severity.WARNING
    assert "web-01" in text and "cdn-01" not in text
    assert "⚠️ not shown: cluster edge: no API URL of the cluster accepted a connection" in text


def test_while_a_cluster_is_silent_only_qualified_references_act(chat: tuple[ChatDriver, FakeHypervisors]) -> None:
    driver, hypervisors = chat
    # web-01 is a name in both clusters: normally an ambiguity the user must resolve
    assert "matches several" in driver.run("vm start web-01", as_=BOB).text
    hypervisors.cluster("edge").down = "cluster edge: no API URL of the cluster accepted a connection"
    # with edge silent, the name must not quietly mean lab's web-01
    refused = driver.run("vm start web-01", as_=BOB)
    assert refused.severity is Severity.ERROR
    assert "cluster edge is not answering" in refused.text and "cluster/vmid" in refused.text
    assert job_of(driver.ask("vm start lab/101", as_=BOB)) is not None
    assert "cluster edge: no API URL" in driver.run("vm start edge/301", as_=BOB).text


def test_when_no_cluster_answers_the_error_is_said(chat: tuple[ChatDriver, FakeHypervisors]) -> None:
    driver, hypervisors = chat
    for name in ("lab", "edge"):
        hypervisors.cluster(name).down = f"cluster {name}: no API URL of the cluster accepted a connection"
    answer = driver.run("vm list --refresh", as_=BOB)
    assert answer.severity is Severity.ERROR
    assert "no API URL of the cluster accepted a connection" in answer.text
