"""An executor that accepts runs and never trains them: tests of the API and its limits, not the engine."""

from __future__ import annotations


class NullExecutor:
    interrupts_on_restart = True

    def replay_after(self, run_id, seq):
        return []

    def start(self, sink):
        self.sink = sink

    def submit(self, run_id, config, owner=None):
        return None

    def cancel(self, run_id):
        return True

    def shutdown(self):
        pass

    def stats(self):
        return {"executor": "null"}

    def workers(self):
        return []

    def place(self, run_id):
        return None
