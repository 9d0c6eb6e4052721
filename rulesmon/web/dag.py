"""A run's DAG from its jobs' `node.parents` / `node.children` details, laid out in layers.

Each node sits in the layer of its longest path from a root (so every edge points to a later
layer), and each layer is ordered by the mean position of its parents, twice over, which keeps
the edges of a pipeline mostly straight without a full crossing minimisation. Nodes are
identified by (job key, node name): two DAGs of one run may reuse names. Jobs recorded before
the history kept the node's parents and children have no place in it, and a run without any
such job has no DAG.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..display.fmt import natural_key


@dataclass(slots=True)
class Node:
    key: tuple[str, str]
    name: str
    uid: str
    instance: str
    status: str
    state: str | None
    exit_code: int | None
    parents: list[tuple[str, str]] = field(default_factory=list)
    children: list[tuple[str, str]] = field(default_factory=list)
    layer: int = 0
    order: int = 0


@dataclass
class Dag:
    nodes: dict[tuple[str, str], Node]
    edges: list[tuple[tuple[str, str], tuple[str, str]]]
    layers: list[list[Node]]
    cyclic: bool = False


def build(jobs: Iterable[Mapping[str, Any]]) -> Dag | None:
    """The DAG of the jobs that name their parents or children; None when none does. A node
    recorded twice in the run (a resubmission under a new job id) is its latest row."""
    nodes: dict[tuple[str, str], Node] = {}
    links: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    seen: dict[tuple[str, str], str] = {}
    for job in jobs:
        details = job.get("details") or {}
        parents, children = details.get("node.parents"), details.get("node.children")
        if not isinstance(parents, list) and not isinstance(children, list):
            continue
        tool = str(job.get("tool") or str(job["instance"]).rsplit("/", 1)[0])
        name = str(details.get("node.name") or job.get("name") or
                   str(job["instance"]).rsplit("/", 1)[-1])
        key = (tool, name)
        stamp = str(job.get("first_seen") or "")
        if key in seen and seen[key] > stamp:
            continue
        seen[key] = stamp
        nodes[key] = Node(key=key, name=name, uid=str(job["id"]), instance=str(job["instance"]),
                          status=str(job["status"]), state=job.get("state"),
                          exit_code=job.get("returncode"))
        links[key] = ([str(p) for p in parents or []], [str(c) for c in children or []])
    if not nodes:
        return None
    edges: set[tuple[tuple[str, str], tuple[str, str]]] = set()
    for key, (parents, children) in links.items():
        tool = key[0]
        edges.update(((tool, p), key) for p in parents if (tool, p) in nodes)
        edges.update((key, (tool, c)) for c in children if (tool, c) in nodes)
    rank = {key: i for i, key in enumerate(sorted(nodes, key=lambda k: (k[0], natural_key(k[1]))))}
    ordered = sorted(edges, key=lambda e: (rank[e[0]], rank[e[1]]))
    for parent, child in ordered:
        nodes[parent].children.append(child)
        nodes[child].parents.append(parent)
    return _layout(nodes, ordered, rank)


def _layout(nodes: dict[tuple[str, str], Node],
            edges: list[tuple[tuple[str, str], tuple[str, str]]],
            rank: Mapping[tuple[str, str], int]) -> Dag:
    indegree = {key: len(node.parents) for key, node in nodes.items()}
    ready = [k for k, d in indegree.items() if d == 0]
    done: list[tuple[str, str]] = []
    while ready:
        key = ready.pop()
        done.append(key)
        node = nodes[key]
        for child in node.children:
            nodes[child].layer = max(nodes[child].layer, node.layer + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    cyclic = len(done) < len(nodes)
    if cyclic:  # DAGMan refuses cycles, but a database may say anything: park them last
        last = max((nodes[k].layer for k in done), default=-1) + 1
        for key, node in nodes.items():
            if indegree[key] > 0:
                node.layer = last
    depth = max(n.layer for n in nodes.values()) + 1
    layers: list[list[Node]] = [[] for _ in range(depth)]
    for node in sorted(nodes.values(), key=lambda n: rank[n.key]):
        layers[node.layer].append(node)
    for layer in layers:
        for i, node in enumerate(layer):
            node.order = i
    for _ in range(2):
        for layer in layers[1:]:
            layer.sort(key=lambda n: (_barycentre(n, nodes), n.order))
            for i, node in enumerate(layer):
                node.order = i
    return Dag(nodes=nodes, edges=edges, layers=layers, cyclic=cyclic)


def _barycentre(node: Node, nodes: Mapping[tuple[str, str], Node]) -> float:
    above = [nodes[p].order for p in node.parents if nodes[p].layer < node.layer]
    return sum(above) / len(above) if above else float(node.order)


def as_json(dag: Dag) -> dict[str, Any]:
    """The DAG for /api/run/<id>: nodes with their layer, edges as (parent id, child id)."""
    return {
        "nodes": [{"id": n.uid, "name": n.name, "tool": n.key[0], "instance": n.instance,
                   "status": n.status, "state": n.state, "returncode": n.exit_code,
                   "layer": n.layer, "order": n.order,
                   "parents": [dag.nodes[p].name for p in n.parents],
                   "children": [dag.nodes[c].name for c in n.children]}
                  for layer in dag.layers for n in layer],
        "edges": [[dag.nodes[p].uid, dag.nodes[c].uid] for p, c in dag.edges],
        "layers": len(dag.layers),
        "cyclic": dag.cyclic,
    }
