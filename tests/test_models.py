import pytest

from models import Ticket, Track, new_tier_usage, slugify


def test_ticket_round_trip():
    t = Ticket("T1", "do it", depends_on=["T0"], step_mode=True, context_requirements=["a.py"], retry_count=1)
    t.usage.add(10, 4)
    again = Ticket.from_dict(t.to_dict())
    assert again == t


@pytest.mark.parametrize("data, message", [
    ("nope", "expected an object"),
    ({"description": "x"}, "missing required field 'id'"),
    ({"id": "T 1", "description": "x"}, "field 'id' must be a short identifier"),
    ({"id": "T1"}, "missing required field 'description'"),
    ({"id": "T1", "description": 3}, "field 'description' must be str"),
    ({"id": "T1", "description": "x", "depends_on": "T0"}, "field 'depends_on' must be list"),
    ({"id": "T1", "description": "x", "status": "done"}, "field 'status' must be one of"),
    ({"id": "T1", "description": "x", "step_mode": "yes"}, "field 'step_mode' must be bool"),
    ({"id": "T1", "description": "x", "retry_count": True}, "field 'retry_count' must be int"),
])
def test_ticket_validation_names_the_field(data, message):
    with pytest.raises(ValueError, match=message):
        Ticket.from_dict(data)


def test_track_round_trip_and_lookup():
    tr = Track("t_20260101", "Title", "desc", tickets=[Ticket("A", "a"), Ticket("B", "b", depends_on=["A"])])
    again = Track.from_dict(tr.to_dict())
    assert again == tr and again.ticket("B").depends_on == ["A"]
    with pytest.raises(KeyError):
        tr.ticket("Z")


def test_slugify_cuts_at_word_boundary():
    assert slugify("Add a CLI flag to print the version", 20) == "add_a_cli_flag_to"
    assert slugify("!!!") == "track"


def test_tier_usage_add_and_snapshot_is_a_copy():
    u = new_tier_usage({"Tier 1": "m1"})
    u.add("Tier 1", 5, 2)
    snap = u.snapshot()
    snap["Tier 1"]["input"] = 999
    snap["Tier 1"]["models"]["m1"]["input"] = 999
    assert u["Tier 1"] == {"input": 5, "output": 2, "model": "m1", "models": {"m1": {"input": 5, "output": 2}}}


def test_tier_usage_keeps_tokens_per_model_and_restores_old_ledgers():
    u = new_tier_usage({"Tier 3": "lite"})
    u.add("Tier 3", 10, 4)                     # no model: the tier's current one
    u.add("Tier 3", 3, 1, "pro")               # after an escalation
    assert u["Tier 3"]["input"] == 13 and u["Tier 3"]["model"] == "pro"
    assert u["Tier 3"]["models"] == {"lite": {"input": 10, "output": 4}, "pro": {"input": 3, "output": 1}}
    resumed = new_tier_usage({"Tier 3": "lite"})
    resumed.restore({"Tier 3": {"input": 20, "output": 5, "model": "pro",            # saved before
                                "models": {"lite": {"input": 15, "output": 4}}}})     # rows were complete
    assert resumed["Tier 3"]["models"] == {"lite": {"input": 15, "output": 4}, "pro": {"input": 5, "output": 1}}
    assert (resumed["Tier 3"]["input"], resumed["Tier 3"]["model"]) == (20, "pro")
