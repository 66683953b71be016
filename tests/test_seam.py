"""The replay-then-live hand-over (``RunService.stream``), forced deterministically: an event is
published after the viewer subscribed and before the replay reads the store. It must arrive once."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from deepscope.app.hub import Hub
from deepscope.app.service import RunService
from deepscope.app.store import Store


class NoExecutor:
    interrupts_on_restart = True

    def replay_after(self, run_id: str, seq: int) -> list:
        return []


def bound_service(tmp_path, name: str) -> tuple[Store, RunService, str]:
    """A service on a SQLite store of its own, its hub bound to the running loop, and one run in it."""
    store = Store(f"sqlite:///{tmp_path / (name + '.db')}")
    hub = Hub()
    hub.bind(asyncio.get_running_loop())
    return store, RunService(store, hub, NoExecutor()), store.create_run(name, {})["id"]


def step(seq: int) -> tuple[dict, str]:
    event = {"seq": seq, "type": "step", "step": seq, "epoch": 0, "loss": 1.0, "acc": 0.5, "progress": 0.5}
    return event, orjson.dumps(event).decode()


def done(seq: int) -> tuple[dict, str]:
    event = {"seq": seq, "type": "status", "status": "completed", "message": "done", "summary": {}}
    return event, orjson.dumps(event).decode()


@pytest.mark.parametrize("stored_before_the_read", [True, False], ids=["stored-and-live", "live-only"])
def test_an_event_in_the_seam_arrives_exactly_once(tmp_path, stored_before_the_read):
    async def scenario() -> list[int]:
        store, service, run_id = bound_service(tmp_path, "seam")
        for seq in range(3):
            service.on_event(run_id, *step(seq))
        real_events, injected = service.events, []

        def events_with_a_seam(rid, after=-1, limit=1000, types=None):
            if not injected:  # the viewer has subscribed; the replay is about to read the store
                injected.append(3)
                event, raw = step(3)
                if stored_before_the_read:
                    service.persist(rid, event, raw)
                    service.flush()
                service.publish(rid, event, raw)
            return real_events(rid, after, limit, types)

        service.events = events_with_a_seam
        received: list[int] = []

        async def watch() -> None:
            async for raw in service.stream(run_id):
                received.append(orjson.loads(raw)["seq"])

        viewer = asyncio.create_task(watch())
        for _ in range(500):
            if 3 in received or viewer.done():
                break
            await asyncio.sleep(0.01)
        service.on_event(run_id, *done(4))
        await asyncio.wait_for(viewer, 10)
        store.close()
        return received

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_a_viewer_that_does_not_read_holds_one_page(tmp_path):
    # The replay reads the store a page at a time, and only when the socket has taken the last page:
    # a client that stops reading stops the reads (its sends wait), so its memory stays one page.
    from deepscope.app.service import REPLAY_PAGE

    async def scenario() -> tuple[int, int]:
        store, service, run_id = bound_service(tmp_path, "long")
        for seq in range(REPLAY_PAGE * 5):
            service.persist(run_id, *step(seq))
        service.flush()
        reads: list[int] = []
        real_events = service.events

        def counting(rid, after=-1, limit=1000, types=None):
            rows = real_events(rid, after, limit, types)
            reads.append(len(rows))
            return rows

        service.events = counting
        stream = service.stream(run_id)
        await stream.__anext__()  # the client read one event, then stopped
        await asyncio.sleep(0.2)
        held = (len(reads), max(reads))
        await stream.aclose()
        store.close()
        return held

    n_reads, largest = asyncio.run(scenario())
    assert n_reads == 1 and largest <= REPLAY_PAGE


def test_live_snapshots_are_paced_in_seq_order_and_curves_are_never_dropped():
    from deepscope.app.service import SNAPSHOT_INTERVAL_S, _SnapshotPacing

    paced = _SnapshotPacing(last=-1)
    # several snapshots waiting at once: only the newest goes (L0 is superseded by L2); steps all go
    assert [s for s, _, _ in paced.release([(0, "layers", "L0"), (1, "step", "S1"), (2, "layers", "L2"),
                                            (3, "step", "S3")])] == [1, 2, 3]
    # the next one comes too soon: it waits, and the step behind it waits with it (seq order holds)
    assert paced.release([(4, "layers", "L4"), (5, "step", "S5")]) == []
    assert 0 < paced.wait() <= SNAPSHOT_INTERVAL_S["layers"]
    paced.sent_at["layers"] -= SNAPSHOT_INTERVAL_S["layers"]  # the interval has passed
    assert [s for s, _, _ in paced.release([(6, "status", "END")])] == [4, 5, 6]
    assert paced.release([(5, "step", "S5"), (6, "status", "END")]) == []  # nothing twice


def test_a_viewer_that_does_not_read_holds_a_page_of_bounded_bytes(tmp_path):
    # Heavy events (a 100-layer net's layers events are about 115 KB): a page is cut to REPLAY_BYTES, so a
    # socket that never reads holds a few of them, not REPLAY_PAGE.
    from deepscope.app.service import REPLAY_BYTES

    heavy = "x" * 100_000

    async def scenario() -> list[int]:
        store, service, run_id = bound_service(tmp_path, "deep")
        for seq in range(40):
            event = {"seq": seq, "type": "layers", "step": seq, "layers": [], "pad": heavy}
            service.persist(run_id, event, orjson.dumps(event).decode())
        service.flush()
        held: list[int] = []
        real_events = service.events

        def measuring(rid, after=-1, limit=1000, types=None):
            rows = real_events(rid, after, limit, types)
            held.append(sum(len(raw) for _, _, raw in rows))
            return rows

        service.events = measuring
        stream = service.stream(run_id)
        for _ in range(25):  # the client reads a while (several pages), then stops reading
            await stream.__anext__()
        await asyncio.sleep(0.2)
        await stream.aclose()
        store.close()
        return held

    pages = asyncio.run(scenario())
    assert len(pages) >= 3, pages  # it read page after page as the client took them ...
    assert max(pages[1:]) <= REPLAY_BYTES + 100_200, pages  # ... each about REPLAY_BYTES once sizes are known
