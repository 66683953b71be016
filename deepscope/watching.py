"""``deepscope.watch``: stream any PyTorch training into the playground (docs/watch.md).

    import deepscope
    run = deepscope.watch(model, optimizer, name="resnet-try-3")  # server from DEEPSCOPE_URL, else a file
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        run.log(loss=loss)
    run.finish()                                                   # or: with deepscope.watch(...) as run:

It never hurts the training it watches: events go out from a background thread, a server that does not
answer at the start means a local file (said once), and one that goes away mid-run means its events wait
(in memory, then on disk) until it is back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


class Watch:
    """A watched run: ``log`` metrics, ``finish`` (or leave the ``with`` block). ``run_id`` and ``url``
    say where to see it; ``file`` is set instead when it is written locally."""

    def __init__(self, model: Any, optimizer: Any, name: str | None = None, *, layers: list[Any] | None = None,
                 total_steps: int | None = None, server: str | None = None, token: str | None = None,
                 bins: int = 32, captures: int = 50, every_steps: int = 10, budget: float = 0.03,
                 max_per_second: float = 10.0, classes: int | None = None, data_dir: str | Path | None = None,
                 background: bool | None = None) -> None:
        from deepscope.engine.telemetry import Settings
        from deepscope.engine.watched import WatchedRun, describe

        self.name = (name or f"watched {type(model).__name__}")[:80]
        self.run_id: str | None = None
        self.url: str | None = None
        self.file: Path | None = None
        self.max_stored_bytes: int | None = None  # the server's cap on what the run's captures store
        data = Path(data_dir) if data_dir else None
        self.sink = self._sink(describe(model), server or os.environ.get("DEEPSCOPE_URL"),
                               token or os.environ.get("DEEPSCOPE_TOKEN"), data)
        settings = Settings(every_steps=every_steps, bins=bins, max_per_second=max_per_second, budget=budget,
                            captures=captures)
        self.run = WatchedRun(model, optimizer, self.sink.put, name=self.name, layers=layers, total_steps=total_steps,
                              settings=settings, classes=classes, background=background,
                              max_stored_bytes=self.max_stored_bytes)

    def _sink(self, config: dict[str, Any], server: str | None, token: str | None, data_dir: Path | None) -> Any:
        from deepscope.client import DeepScope
        from deepscope.client.ingest import FileSink, RemoteSink

        if server:
            client = DeepScope(server, token=token, timeout=10.0)
            try:
                run = client.create_watched(self.name, config)
            except Exception as exc:  # unreachable, or refused: the training goes on, written locally
                print(f"deepscope.watch: cannot reach the DeepScope server at {server} ({exc}); writing this run "
                      "to a file instead (deepscope serve shows it)", file=sys.stderr, flush=True)
                client.close()
            else:
                self.run_id, self.url = run["id"], f"{client.url}/#run={run['id']}"
                self.max_stored_bytes = run.get("max_stored_bytes")
                self.client = client
                return RemoteSink(client, run["id"], data_dir)
        sink = FileSink(self.name, config, data_dir)
        self.file = sink.path
        return sink

    def log(self, **metrics: Any) -> None:
        """``loss`` (and ``acc``) of the step just taken; ``val_loss``, ``val_acc``, ``train_loss`` and
        ``train_acc`` (with ``epoch``) when you evaluate. Tensors are fine: they are read once, here."""
        self.run.log(**metrics)

    def finish(self, status: str = "completed", message: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """End the run and send what is left (waiting at most ``timeout`` seconds); its summary."""
        if self.sink.dropped:
            self.run.summary["dropped_events"] = self.sink.dropped
        summary = self.run.finish(status, message)
        self.sink.close(timeout)
        if getattr(self, "client", None) is not None:
            self.client.close()
        return summary

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            self.finish()
        elif issubclass(kind, KeyboardInterrupt):
            self.finish("cancelled", "stopped by the user (KeyboardInterrupt)")
        else:
            self.finish("failed", f"{kind.__name__}: {exc}".splitlines()[0][:300])


def watch(model: Any, optimizer: Any, name: str | None = None, **options: Any) -> Watch:
    """Watch ``model`` as ``optimizer`` trains it (see ``Watch`` for the options, docs/watch.md for more)."""
    return Watch(model, optimizer, name, **options)
