"""Where a run lives in Redis, in one place so the app and the workers agree."""

PREFIX = "deepscope"
ACTIVE = f"{PREFIX}:active"           # set of run ids whose streams the app reads
GROUP = "persist"                     # the consumer group that stores every event once
STREAM_MAXLEN = 50_000                # events kept per run stream (older ones are stored already)
STREAM_TTL_S = 3600                   # a finished run's stream expires after this
HEARTBEAT_TTL_S = 10                  # a running run whose heartbeat is this stale has lost its worker
HEARTBEAT_EVERY_S = 2
FLAG_TTL_S = 7 * 24 * 3600            # claims and cancel flags outlive any run, then clean themselves up


DISPATCH_AHEAD = 2                    # runs waiting in a Celery queue; the rest wait in the fair queue
REAPER_LOCK = f"{PREFIX}:reaper"      # held by the one replica that reaps, for a few seconds at a time
RECONCILE_LOCK = f"{PREFIX}:reconcile"  # held by the one replica that ends runs no worker owns


def fair_owners(queue: str) -> str:
    """The rotation: owners with runs waiting for ``queue``, each once, in turn order."""
    return f"{PREFIX}:fair:{queue}:owners"


def fair_runs(queue: str, owner: str) -> str:
    return f"{PREFIX}:fair:{queue}:runs:{owner}"


def dispatch_lock(queue: str) -> str:
    """Held by the one replica moving runs from the fair queue into Celery's ``queue``."""
    return f"{PREFIX}:dispatch:{queue}"


def stream(run_id: str) -> str:
    return f"{PREFIX}:events:{run_id}"


def claim(run_id: str) -> str:
    """Set once, by whoever gets to a queued run first: a worker starting it, or a cancel."""
    return f"{PREFIX}:claim:{run_id}"


def cancel(run_id: str) -> str:
    return f"{PREFIX}:cancel:{run_id}"


def heartbeat(run_id: str) -> str:
    return f"{PREFIX}:heartbeat:{run_id}"
