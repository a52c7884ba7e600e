"""Two parts of the HTTP service (http.py): `Batcher`, which answers the requests that queue on
the event loop while a batch computes together (one retrieval call for the batch), and
`RequestMetrics`, the middleware that counts and times every request for /metrics."""

from __future__ import annotations

import asyncio
import time

from vidrec_jax.serving import bundle as bundle_lib


class Batcher:
  """Answers the requests that queue while it computes together: one retrieval call for the
  batch (Bundle.answer_many), on the event loop, one batch at a time. A request waits for no
  timer: a lone request is a batch of one."""

  MAX_BATCH = 64

  def __init__(self):
    self._loop = self._queue = self._worker = None

  async def records(self, b: bundle_lib.Bundle, request: dict) -> list[dict]:
    loop = asyncio.get_running_loop()
    if loop is not self._loop:  # a queue and a worker per event loop (tests run several)
      self._loop, self._queue = loop, asyncio.Queue()
      self._worker = None
    if self._worker is None or self._worker.done():
      self._worker = loop.create_task(self._run())
    future = loop.create_future()
    self._queue.put_nowait((b, request, future))
    return await future

  async def _run(self):
    while True:
      batch = [await self._queue.get()]
      while not self._queue.empty() and len(batch) < self.MAX_BATCH:
        batch.append(self._queue.get_nowait())
      by_bundle: dict[int, list] = {}
      for item in batch:  # a reload mid-batch: each request stays with its own bundle
        by_bundle.setdefault(id(item[0]), []).append(item)
      for group in by_bundle.values():
        try:
          answers = group[0][0].answer_many([r for _, r, _ in group])
        except Exception as e:  # noqa: BLE001 - a fault of ours: each request gets the 500
          for _, _, f in group:
            if not f.done():
              f.set_exception(e)
          continue
        for (_, _, f), records in zip(group, answers):
          if not f.done():
            f.set_result(records)
      await asyncio.sleep(0)  # let the loop read the requests that arrived meanwhile


class RequestMetrics:
  """Counts every request by path and status and times it: a plain ASGI middleware (FastAPI's
  @app.middleware('http') runs each request through extra tasks and streams, which measured
  as a large share of a request's time here)."""

  def __init__(self, app, service, paths: tuple[str, ...]):
    self.app, self.service, self.paths = app, service, paths

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return await self.app(scope, receive, send)
    t = time.perf_counter()
    path = scope["path"]
    path = (path if path in self.paths else "/thumbnail" if path.startswith("/thumbnail/")
            else "other")
    status = [500]

    async def sending(message):
      if message["type"] == "http.response.start":
        status[0] = message["status"]
      await send(message)
    try:
      await self.app(scope, receive, sending)
    finally:
      self.service.requests.labels(path, str(status[0])).inc()
      self.service.latency.labels(path).observe(time.perf_counter() - t)
