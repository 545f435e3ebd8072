"""`[cluster] ray_address`: flashbulb joins a Ray cluster it did not start. Two Ray nodes (both on
this machine, started by ray.cluster_utils as `ray start` would on two hosts) each get one replica
of the photo model, and two API servers share the cluster: the first one's exit leaves the
applications running for the second, whose calls the same replicas keep serving."""

from __future__ import annotations

import concurrent.futures

import pytest
from conftest import astronaut, gemini_body, png_bytes, start_server


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    yield nodes
    nodes.shutdown()


def config(address: str) -> str:
    # One CPU a replica, one CPU a node: Ray must put the two replicas on different nodes.
    return f"""
[cluster]
engine = "ray"
ray_address = "{address}"

[diffusion]
warm_models = ["flashbulb-photo"]

[models.flashbulb-photo]
replicas = 2
cpus_per_replica = 1
"""


def replicas_serving(server, key: str, calls: int = 8) -> list[dict]:
    body = gemini_body(png_bytes(astronaut(48)), "make it brighter")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: server.generate(key, body), range(calls)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    return [a.json()["flashbulb"]["replica"] for a in answers]


def test_two_servers_share_a_two_node_cluster_and_one_leaving_stops_nothing(cluster, tmp_path):
    first = start_server(tmp_path / "a", f"sqlite:///{tmp_path / 'a.db'}", config=config(cluster.address), ready_timeout=240)
    try:
        seen = replicas_serving(first, first.create_key("5"))
        assert len({r["node"] for r in seen}) == 2, seen  # one replica on each node
        assert first.process.pid not in {r["pid"] for r in seen}
        second = start_server(tmp_path / "b", f"sqlite:///{tmp_path / 'b.db'}", config=config(cluster.address), ready_timeout=240)
    finally:
        first.stop()
    try:
        assert first.process.returncode is not None
        again = replicas_serving(second, second.create_key("5"))
        # The same two replicas: the first server's exit deleted nothing and the second's start,
        # with the same flashbulb.toml, restarted nothing.
        assert {r["id"] for r in again} == {r["id"] for r in seen}, (again, seen)
    finally:
        second.stop()
