"""Round-robin across owners: a classmate's first run does not wait behind someone's ten."""

from deepscope.app.executors.fair_queue import FairQueue


def test_owners_take_turns_and_each_keeps_its_order():
    q = FairQueue()
    for i in range(10):
        q.put("ann", f"a{i}", None)
    q.put("bob", "b0", None)
    q.put("cat", "c0", None)
    q.put("bob", "b1", None)
    order = [q.pop()[0] for _ in range(len(q))]
    assert order[:5] == ["a0", "b0", "c0", "a1", "b1"]
    assert [r for r in order if r.startswith("a")] == [f"a{i}" for i in range(10)]
    assert not q


def test_a_cancelled_run_leaves_the_queue():
    q = FairQueue()
    q.put("ann", "a0", 1)
    q.put("bob", "b0", 2)
    assert q.remove("a0") and not q.remove("a0")
    assert q.pop() == ("b0", 2) and len(q) == 0
