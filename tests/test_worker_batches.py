"""A local worker sends a run's events in batches (app/executors/local_worker.py): in order, one run at a
time, a status and step 0's events at once, nothing held past BATCH_S once a step starts, and every
other message after the events before it."""

import time

import orjson

from deepscope.app.executors.local_worker import BATCH_EVENTS, BATCH_S, _Batches


def batches():
    sent = []
    return _Batches(sent.append), sent


def seqs(msg):
    return [orjson.loads(raw)["seq"] for raw, _ in msg[2]]


def test_events_wait_for_each_other_but_a_status_and_step_0_go_at_once():
    b, sent = batches()
    b.add("r", {"seq": 0, "type": "status", "status": "running"})
    b.add("r", {"seq": 1, "type": "step", "step": 0})
    assert [m[0] for m in sent] == ["events", "events"]
    for seq in range(2, 6):
        b.add("r", {"seq": seq, "type": "step", "step": seq})
    assert len(sent) == 2  # waiting together
    b.add("r", {"seq": 6, "type": "status", "status": "completed"})
    assert [seqs(m) for m in sent] == [[0], [1], [2, 3, 4, 5, 6]]


def test_a_batch_is_sent_when_full_when_old_and_before_another_run_or_message():
    b, sent = batches()
    for seq in range(1, BATCH_EVENTS + 1):
        b.add("r", {"seq": seq, "type": "step", "step": seq})
    assert len(sent) == 1 and len(sent[0][2]) == BATCH_EVENTS
    b.add("r", {"seq": 100, "type": "step", "step": 100})
    b.flush_if_due()
    assert len(sent) == 1  # young: it waits
    time.sleep(BATCH_S * 1.5)
    b.flush_if_due()
    assert seqs(sent[-1]) == [100]
    b.add("r", {"seq": 101, "type": "step", "step": 101})
    b.add("look", {"seq": 3, "type": "layers", "step": 5})  # another run's: what waits goes first
    b.send(("looked", "look", 4, True))
    assert [(m[0], m[1]) for m in sent[-3:]] == [("events", "r"), ("events", "look"), ("looked", "look")]


def test_a_snapshot_travels_with_its_head_so_the_service_need_not_parse_it():
    b, sent = batches()
    b.add("r", {"seq": 0, "type": "layers", "step": 0, "layers": [{"name": "dense1"}]})
    b.add("r", {"seq": 1, "type": "step", "step": 0, "loss": 0.7})
    (raw, head), (_, light) = [item for m in sent for item in m[2]]
    assert head == (0, "layers", 0) and orjson.loads(raw)["layers"] == [{"name": "dense1"}]
    assert light is None  # parsed by the service: its fields change the run's row
