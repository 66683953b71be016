"""A slow viewer gets the newest heavy event of each type and every light one; it never blocks others."""

import asyncio

from deepscope.app.hub import MAX_PENDING, Hub


def test_slow_viewer_coalesces_heavy_events_but_keeps_every_light_one():
    async def scenario():
        hub = Hub()
        slow, fast = hub.subscribe("r"), hub.subscribe("r")
        first = await asyncio.wait_for(_feed_and_take(hub, fast, 0, 1), 1)
        assert [s for s, _, _ in first] == [0]
        slow.coalescing = True  # past the replay seam, as after a first batch
        kept_up = []
        for seq in range(1, 301):
            kind = "layers" if seq % 3 == 0 else ("boundary" if seq % 5 == 0 else "step")
            hub.publish("r", seq, kind, f'{{"seq":{seq}}}')
            kept_up.extend(await fast.get_batch())  # a viewer that keeps up, beside the slow one
        batch = await asyncio.wait_for(slow.get_batch(), 1)
        seqs = [s for s, _, _ in batch]
        kinds = {s: t for s, t, _ in batch}
        assert seqs == sorted(seqs)
        steps = [s for s in range(1, 301) if s % 3 and s % 5]
        assert [s for s in seqs if kinds[s] == "step"] == steps  # every light event
        assert [s for s in seqs if kinds[s] == "layers"] == [300]  # only the newest heavy one
        assert [s for s in seqs if kinds[s] == "boundary"] == [295]
        assert slow.coalesced > 0 and not slow.overflowed
        # The viewer that kept up lost nothing: the slow one's backlog is its own.
        assert [s for s, _, _ in kept_up] == list(range(1, 301))
        hub.unsubscribe(slow)
        hub.unsubscribe(fast)
        assert hub.viewers("r") == 0

    asyncio.run(scenario())


def test_replay_seam_is_never_coalesced_and_a_hopeless_backlog_overflows():
    async def scenario():
        hub = Hub()
        viewer = hub.subscribe("r")
        for seq in range(10):
            hub.publish("r", seq, "layers", "{}")
        assert len(await viewer.get_batch()) == 10  # while replaying: the seam is kept whole
        for seq in range(10, 10 + MAX_PENDING + 1):
            hub.publish("r", seq, "step", "{}")
        assert viewer.overflowed

    asyncio.run(scenario())


async def _feed_and_take(hub, viewer, seq, n):
    hub.publish("r", seq, "status", "{}")
    return await viewer.get_batch()
