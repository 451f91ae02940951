"""Property tests: whatever a model replies, Tier 1/2 parsing gives tickets/tracks or a clear ValueError."""
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import multi_agent_conductor as mac
import planning
from models import Ticket, Track

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=6), st.dictionaries(st.text(max_size=12), children, max_size=6)), max_leaves=40)

ticket_like = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=8), st.integers()), "description": st.one_of(st.text(max_size=30), st.integers())},
    optional={"depends_on": st.one_of(st.lists(st.text(max_size=4), max_size=3), st.text(max_size=3)),
              "step_mode": json_scalars, "status": st.text(max_size=10)})


def wrap(draw_text: str, style: int) -> str:
    if style == 0:
        return draw_text
    if style == 1:
        return f"Here you go:\n```json\n{draw_text}\n```\nThanks"
    if style == 2:
        return draw_text[: max(0, len(draw_text) // 2)]          # truncated
    return "Sure! " + draw_text + " Hope this helps."


def check(parse, text):
    try:
        result = parse(text)
    except ValueError as exc:
        assert str(exc), "an error must say what is wrong"
        return None
    assert isinstance(result, list) and result
    return result


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.integers(0, 3))
def test_random_json_never_crashes_ticket_parsing(value, style):
    tickets = check(mac.parse_json_tickets, wrap(json.dumps(value), style))
    if tickets is not None:
        assert all(isinstance(t, Ticket) for t in tickets)


@settings(max_examples=300, deadline=None)
@given(st.lists(ticket_like, min_size=1, max_size=8), st.integers(0, 3))
def test_ticket_shaped_replies_give_a_dag_or_a_clear_error(items, style):
    tickets = check(mac.parse_json_tickets, wrap(json.dumps(items), style))
    if tickets is not None:
        ids = [t.id for t in tickets]
        assert len(ids) == len(set(ids))
        assert all(d in ids for t in tickets for d in t.depends_on)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_crashes(text):
    check(mac.parse_json_tickets, text)
    tracks = check(planning.parse_json_tracks, text)
    if tracks is not None:
        assert all(isinstance(t, Track) and t.id for t in tracks)


def test_huge_and_deeply_nested_replies_are_rejected_cleanly():
    deep = "[" * 5000 + "]" * 5000
    check(mac.parse_json_tickets, deep)
    huge = json.dumps([{"id": f"T{i}", "description": "x" * 50, "depends_on": [f"T{i-1}"] if i else []}
                       for i in range(3000)])
    tickets = check(mac.parse_json_tickets, huge)
    assert tickets is not None and len(tickets) == 3000
