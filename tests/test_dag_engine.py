import graphlib
import itertools
import random

import pytest

from dag_engine import CycleError, DAGError, ExecutionEngine, TrackDAG
from models import BLOCKED, COMPLETED, IN_PROGRESS, TODO, Ticket


def tickets(spec: dict[str, list[str]], **flags) -> list[Ticket]:
    return [Ticket(tid, f"do {tid}", depends_on=deps, **flags.get(tid, {})) for tid, deps in spec.items()]


def test_unknown_dependency_named():
    with pytest.raises(DAGError, match="'B' depends on unknown ticket 'Z'"):
        TrackDAG(tickets({"A": [], "B": ["Z"]}))


def test_duplicate_id_named():
    with pytest.raises(DAGError, match="duplicate ticket id 'A'"):
        TrackDAG([Ticket("A", "x"), Ticket("A", "y")])


def test_cycle_error_names_the_cycle():
    with pytest.raises(CycleError) as info:
        TrackDAG(tickets({"A": ["C"], "B": ["A"], "C": ["B"], "D": []}))
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1] and set(cycle) == {"A", "B", "C"}
    assert " -> ".join(cycle) in str(info.value)
    # each step of the named cycle really is an edge "runs before"
    dag_edges = {("C", "A"), ("A", "B"), ("B", "C")}
    assert {(cycle[i], cycle[i + 1]) for i in range(len(cycle) - 1)} == dag_edges


def test_self_dependency_is_a_cycle():
    with pytest.raises(CycleError, match="A -> A"):
        TrackDAG(tickets({"A": ["A"]}))


def random_graph(rng: random.Random, n: int, p_edge: float, allow_back: bool) -> dict[str, list[str]]:
    ids = [f"t{i}" for i in range(n)]
    spec = {tid: [] for tid in ids}
    for i, tid in enumerate(ids):
        for j in range(n):
            if j == i:
                continue
            if (j < i or allow_back) and rng.random() < p_edge:
                spec[tid].append(ids[j])
    return spec


def test_matches_graphlib_on_random_graphs():
    rng = random.Random(1234)
    verdicts = {"valid": 0, "cycle": 0}
    for case in range(400):
        n = rng.randint(1, 25)
        spec = random_graph(rng, n, rng.uniform(0.02, 0.3), allow_back=case % 2 == 1)
        sorter = graphlib.TopologicalSorter(spec)
        try:
            list(sorter.static_order())
            graphlib_ok = True
        except graphlib.CycleError:
            graphlib_ok = False
        try:
            dag = TrackDAG(tickets(spec))
            ours_ok = True
        except CycleError as exc:
            ours_ok = False
            cyc = exc.cycle
            for a, b in itertools.pairwise(cyc):   # every named edge exists: b depends on a
                assert a in spec[b], f"case {case}: {a}->{b} is not an edge"
        assert ours_ok == graphlib_ok, f"case {case}: verdict differs"
        verdicts["valid" if ours_ok else "cycle"] += 1
        if ours_ok:
            order = dag.topological_order()
            pos = {tid: i for i, tid in enumerate(order)}
            assert sorted(order) == sorted(spec)
            for tid, deps in spec.items():
                for d in deps:
                    assert pos[d] < pos[tid]
    assert verdicts["valid"] > 50 and verdicts["cycle"] > 50   # both branches really exercised


def test_ready_set_and_critical_path():
    dag = TrackDAG(tickets({"A": [], "B": ["A"], "C": ["A"], "D": ["B", "C"], "E": []}))
    assert [t.id for t in dag.ready()] == ["A", "E"]
    dag.tickets["A"].status = COMPLETED
    assert sorted(t.id for t in dag.ready()) == ["B", "C", "E"]
    weights = {"A": 1, "B": 5, "C": 1, "D": 1, "E": 2}
    assert dag.critical_path(lambda t: weights[t.id]) == ["A", "B", "D"]
    assert dag.critical_path()[0] == "A" and dag.critical_path()[-1] == "D"
    assert sorted(dag.blocked_by("A")) == ["B", "C", "D"]


def test_tick_honours_auto_queue_manual_queue_and_limit():
    dag = TrackDAG(tickets({"A": [], "B": [], "C": []}))
    eng = ExecutionEngine(dag, auto_queue=False)
    assert eng.tick() == []
    eng.queue("B")
    assert [t.id for t in eng.tick()] == ["B"]
    assert dag.tickets["B"].status == IN_PROGRESS
    eng.auto_queue = True
    assert [t.id for t in eng.tick(limit=1)] == ["A"]
    assert [t.id for t in eng.tick()] == ["C"]
    with pytest.raises(KeyError, match="no ticket 'Z'"):
        eng.queue("Z")


def test_step_mode_waits_for_approval_and_pause_stops_spawns():
    dag = TrackDAG(tickets({"A": [], "B": []}, B={"step_mode": True}))
    eng = ExecutionEngine(dag, auto_queue=True)
    eng.paused = True
    assert eng.tick() == []
    eng.paused = False
    assert [t.id for t in eng.tick()] == ["A"]
    assert [t.id for t in eng.awaiting_step_approval()] == ["B"]
    eng.approve_step("B")
    assert [t.id for t in eng.tick()] == ["B"]


def test_stuck_and_complete():
    dag = TrackDAG(tickets({"A": [], "B": ["A"]}))
    eng = ExecutionEngine(dag, auto_queue=True)
    eng.tick()
    eng.mark_blocked("A", "boom")
    assert dag.tickets["A"].status == BLOCKED and dag.tickets["A"].blocked_reason == "boom"
    assert eng.is_stuck() and not eng.is_complete()
    eng.requeue("A")
    assert dag.tickets["A"].status == TODO and not eng.is_stuck()
    for tid in ("A", "B"):
        eng.tick()
        eng.mark_completed(tid)
    assert eng.is_complete() and not eng.is_stuck()
