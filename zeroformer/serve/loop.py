"""The one decoding loop of the server: a thread that owns a BatchEngine per language model.

HTTP handlers (asyncio) never touch an engine. They hand a `Job` to `DecodingLoop.submit`; the
thread adds it to its model's engine at the next token boundary (continuous batching,
batching.py), steps every busy engine, and sends each job's events back into the handler's
asyncio queue with `loop.call_soon_threadsafe`:

    ("token", id)      one generated token
    ("end", None)      the request is finished (EOS, stop string, max_tokens, or cancelled)
    ("error", text)    the engine refused or failed it

`cancel(job)` (a client gone, a shutdown) ends it at the next boundary and frees its slot.
"""

from __future__ import annotations

import logging
import queue
import threading

from ..errors import UserError

log = logging.getLogger("zeroformer.serve")


class Job:
    """One generation request: engine.add's keywords (`add`) and where its events go."""

    def __init__(self, model: str, add: dict, aloop, events):
        self.model, self.add, self.aloop, self.events = model, add, aloop, events
        self.rid: int | None = None

    def send(self, kind: str, value=None) -> None:
        try:
            self.aloop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: the server is gone
            pass


class DecodingLoop:
    """engines: {model name: BatchEngine}. start() runs the loop in a daemon thread."""

    def __init__(self, engines: dict):
        self.engines = engines
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.wake = threading.Event()
        self.jobs: dict[tuple[str, int], Job] = {}
        self.cancelled = {name: 0 for name in engines}   # requests cancelled (/health shows it)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="zeroformer-decode", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel everything and end the thread."""
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout)

    def submit(self, job: Job) -> None:
        self.inbox.put(("add", job))
        self.wake.set()

    def cancel(self, job: Job) -> None:
        self.inbox.put(("cancel", job))
        self.wake.set()

    # --------------------------------------------------------------------------- the thread
    def _run(self) -> None:
        while not self.stopping:
            self.wake.clear()
            self._drain()
            busy = [(n, e) for n, e in self.engines.items() if e.busy]
            if not busy:
                self.wake.wait(1.0)
                continue
            for name, engine in busy:
                self._step(name, engine)
        for (name, rid), job in list(self.jobs.items()):
            job.send("error", "the server is shutting down")
        self.jobs.clear()

    def _drain(self) -> None:
        while True:
            try:
                what, job = self.inbox.get_nowait()
            except queue.Empty:
                return
            engine = self.engines[job.model]
            if what == "add":
                try:
                    job.rid = engine.add(**job.add)
                except UserError as e:
                    job.send("error", str(e))
                    continue
                self.jobs[job.model, job.rid] = job
            elif job.rid is not None and (job.model, job.rid) in self.jobs:
                self.cancelled[job.model] += engine.cancel(job.rid)

    def _step(self, name: str, engine) -> None:
        try:
            events = engine.step()
        except Exception:  # a bug, not the client's: fail this model's requests, keep serving
            log.exception("decoding step failed for model %s", name)
            for (n, rid), job in list(self.jobs.items()):
                if n == name:
                    engine.cancel(rid)
                    job.send("error", "internal error while decoding")
                    del self.jobs[n, rid]
            try:
                engine.step()  # report the cancellations
            except Exception:
                pass
            return
        for ev in events:
            job = self.jobs.get((name, ev.rid))
            if job is None:
                continue
            if ev.token is not None:
                job.send("token", ev.token)
            if ev.finished:
                job.send("end")
                del self.jobs[name, ev.rid]
