"""The HTTP service over a serving bundle (FastAPI): `python -m vidrec_jax.serving --bundle=E
--port=P` (__main__.py) runs `make_app` under uvicorn.

  GET  /recommend?user=ID&k=10   {"user", "k", "records", "checkpoint_step"[, "note"]}: the records
                                 --mode=recommend writes to WORKDIR/recommend/ID.json
  POST /recommend                a JSON object {"history": [video ids], "k": 10} (a user the
                                 bundle does not know; history towers) or {"user": ID, "k": 10}
  GET  /healthz                  the bundle being served: folder, format version, checkpoint step,
                                 videos, users, user input
  GET  /metrics                  Prometheus text: requests by path and status, a latency
                                 histogram, the bundle's format version and checkpoint step
  POST /reload                   loads the bundle again (or {"bundle": FOLDER}) and swaps it in
  GET  /                         a page (page.py): pick a user or type a history, see the list
                                 with thumbnails, titles, types, fused and per-head scores, the
                                 cold flag, beside the history (`watched` in the answers)
  GET  /users?limit=100          user ids of the bundle, for the page's picker
  GET  /thumbnail/ID             the JPEG stored for a video at export (recommend.thumbnails)

A reload loads and warms the new bundle while the old one keeps answering; the swap is one
reference assignment, and a request in flight finishes on the bundle it started with, so none is
dropped. A bundle that does not load is refused and the old one stays. Every error is a JSON
object {"error": one line} with a 4xx status (5xx only for a fault of the server itself, never
a traceback); nothing a request holds stops the process.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import anyio
import prometheus_client as prom
from absl import logging
from fastapi import FastAPI
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.responses import JSONResponse
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from vidrec_jax.serving import bundle as bundle_lib
from vidrec_jax.serving.http_support import Batcher
from vidrec_jax.serving.http_support import RequestMetrics
from vidrec_jax.serving import page as page_lib

MAX_BODY_BYTES = 1 << 16  # a watch history of thousands of ids fits; anything bigger is refused
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
GET_FIELDS = ("user", "k")
POST_FIELDS = ("user", "history", "k")


class RequestError(ValueError):
  """A bad request: its status and one line saying what is wrong and what is allowed."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


class Service:
  """The bundle being served, swapped whole on reload."""

  def __init__(self, directory: str, max_body_bytes: int = MAX_BODY_BYTES):
    self.directory, self.max_body_bytes = directory, max_body_bytes
    self.bundle = self._load(directory)
    self.batcher = Batcher()
    self._reload_lock = threading.Lock()
    self.registry = prom.CollectorRegistry()
    self.requests = prom.Counter("vidrec_requests", "HTTP requests by path and status.",
                                 ("path", "status"), registry=self.registry)
    self.latency = prom.Histogram("vidrec_request_seconds", "Request latency by path.",
                                  ("path",), buckets=LATENCY_BUCKETS, registry=self.registry)
    self.info = prom.Gauge("vidrec_bundle", "The bundle served: 1, labelled with its format "
                           "version and checkpoint step.", ("format_version", "checkpoint_step"),
                           registry=self.registry)
    self.reloads = prom.Counter("vidrec_reloads", "Bundle reloads by outcome.", ("outcome",),
                                registry=self.registry)
    self._label()

  @staticmethod
  def _load(directory: str) -> bundle_lib.Bundle:
    b = bundle_lib.load(directory)
    # Compile its functions now, not in the first request after a swap.
    if b.histories is not None:
      b.recommend(history=[int(b.items.video_ids[0])], k=1)
    else:
      b.recommend(next(iter(b.users), "warm-up"), 1)
    return b

  def _label(self) -> None:
    self.info.clear()
    self.info.labels(str(self.bundle.manifest["format_version"]), str(self.bundle.step)).set(1)

  def reload(self, directory: str | None = None) -> dict:
    """Loads (and warms) the bundle at `directory` (default: the folder served, read again),
    then swaps it in; raises BundleError, the old bundle still served, when it does not load."""
    with self._reload_lock:  # one reload at a time; requests go on meanwhile
      directory = directory or self.directory
      try:
        new = self._load(directory)
      except Exception:
        self.reloads.labels("refused").inc()
        raise
      self.bundle, self.directory = new, directory
      self.reloads.labels("ok").inc()
      self._label()
      logging.info("serving %s (checkpoint step %d)", directory, new.step)
      return self.health()

  def health(self) -> dict:
    b = self.bundle
    return dict(status="ok", bundle=b.directory, format_version=b.manifest["format_version"],
                checkpoint_step=b.step, videos=len(b.items), users=len(b.users),
                user_input=b.manifest.get("user_input", "row"), k=b.k, candidates=b.candidates)


def _k(value: Any, b: bundle_lib.Bundle) -> int:
  if value is None:
    return b.k
  if isinstance(value, str):
    try:
      value = int(value)
    except ValueError:
      raise RequestError(400, f"k={value!r} is not an integer; 1 <= k <= {b.candidates}"
                         ) from None
  if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= b.candidates:
    raise RequestError(400, f"k={value!r} is not allowed; an integer 1 <= k <= {b.candidates}")
  return value


async def _answer(batcher: Batcher, b: bundle_lib.Bundle, user: Any, history: Any, k: int
                  ) -> Response:
  try:
    request = b.request(user, k, history)
  except ValueError as e:
    raise RequestError(400, str(e)) from None
  records = await batcher.records(b, request)
  out: dict[str, Any] = {"user": user, "k": k, "records": records, "checkpoint_step": b.step}
  if history is not None:
    out["history"] = [int(v) for v in history]
  elif b.note(user) is not None:
    out["note"] = b.note(user)
  if b.histories is not None:  # the history the list came from, newest last (the page's)
    watched = history if history is not None else b.histories.logged(b.row(user)).tolist()
    out["watched"] = [b.video(v) or {"video_id": int(v), "title": "", "content_type": "",
                                     "cold": False} for v in watched]
  # Plain JSON types already: serialised here, not walked again by FastAPI's encoder.
  return Response(json.dumps(out, separators=(",", ":")), media_type="application/json")


def _unknown(fields, allowed) -> None:
  extra = sorted(set(fields) - set(allowed))
  if extra:
    raise RequestError(400, f"unknown field{'s' if len(extra) > 1 else ''} "
                       f"{', '.join(map(repr, extra))}; allowed: {', '.join(allowed)}")


async def _body(request: Request, limit: int) -> dict:
  """The request's JSON object, read in chunks up to `limit` bytes."""
  length = request.headers.get("content-length")
  if length is not None and (not length.isdigit() or int(length) > limit):
    raise RequestError(413, f"body of {length} bytes; at most {limit} bytes")
  chunks, size = [], 0
  async for chunk in request.stream():
    size += len(chunk)
    if size > limit:
      raise RequestError(413, f"body over {limit} bytes")
    chunks.append(chunk)
  try:
    body = json.loads(b"".join(chunks) or b"{}")
  except ValueError as e:
    raise RequestError(400, f"body is not JSON ({e})") from None
  if not isinstance(body, dict):
    raise RequestError(400, f"body must be a JSON object, not {type(body).__name__}")
  return body


def make_app(service: Service) -> FastAPI:
  """The FastAPI app answering from `service`'s bundle."""
  app = FastAPI(title="vidrec_jax", docs_url=None, redoc_url=None, openapi_url=None)
  paths = ("/", "/recommend", "/healthz", "/metrics", "/reload", "/users", "/thumbnail")

  app.add_middleware(RequestMetrics, service=service, paths=paths)

  @app.exception_handler(Exception)
  async def internal_error(request: Request, e: Exception):
    # A fault of ours: one JSON line to the client, the traceback to the server's log only.
    logging.error("request %s failed: %s: %s", request.url.path, type(e).__name__, e)
    return JSONResponse({"error": f"internal error ({type(e).__name__})"}, 500)

  @app.exception_handler(RequestError)
  async def request_error(_, e: RequestError):
    return JSONResponse({"error": str(e)}, e.status)

  @app.exception_handler(bundle_lib.BundleError)
  async def bundle_error(_, e: bundle_lib.BundleError):
    return JSONResponse({"error": f"bundle not loaded, still serving the old one: {e}"}, 409)

  @app.exception_handler(StarletteHTTPException)
  async def http_error(_, e: StarletteHTTPException):
    return JSONResponse({"error": f"{e.detail}; paths: {', '.join(paths)}"}, e.status_code)

  @app.exception_handler(RequestValidationError)
  async def validation_error(_, e: RequestValidationError):
    return JSONResponse({"error": "; ".join(str(x.get("msg")) for x in e.errors())}, 400)

  # The bundle's work runs on the event loop, the requests queued meanwhile in one batch
  # (Batcher): on the loop measured faster at 16 concurrent clients than a thread pool, whose
  # threads contend for the GIL (benchmarks/serving.py). A reload loads in a thread beside it.
  @app.get("/recommend")
  async def get_recommend(request: Request):
    q = request.query_params
    _unknown(q.keys(), GET_FIELDS)
    if len(q.getlist("user")) != 1 or len(q.getlist("k")) > 1:
      raise RequestError(400, "give user once (a user id) and k at most once")
    b = service.bundle  # this request's bundle, whatever a reload does meanwhile
    return await _answer(service.batcher, b, q["user"], None, _k(q.get("k"), b))

  @app.post("/recommend")
  async def post_recommend(request: Request):
    body = await _body(request, service.max_body_bytes)
    _unknown(body, POST_FIELDS)
    if ("user" in body) == ("history" in body):
      raise RequestError(400, "give one of user (a user id) or history (a list of video ids)")
    user = body.get("user")
    if user is not None and (isinstance(user, bool) or not isinstance(user, (str, int))):
      raise RequestError(400, f"user must be a string or an integer, not {type(user).__name__}")
    b = service.bundle
    k = _k(body.get("k"), b)
    history = body.get("history")
    if history is not None and not isinstance(history, list):
      raise RequestError(400, f"history must be a list of video ids, not "
                         f"{type(history).__name__}")
    return await _answer(service.batcher, b, None if user is None else str(user), history, k)

  @app.get("/")
  def page():
    return HTMLResponse(page_lib.PAGE)

  @app.get("/users")
  def users(request: Request):
    q = request.query_params
    _unknown(q.keys(), ("limit",))
    try:
      limit = int(q.get("limit", "100"))
    except ValueError:
      raise RequestError(400, f"limit={q.get('limit')!r} is not an integer") from None
    if not 0 < limit <= 10000:
      raise RequestError(400, f"limit={limit} is not allowed; 1 <= limit <= 10000")
    b = service.bundle
    return {"users": list(itertools.islice(b.users, limit)), "total": len(b.users)}

  @app.get("/thumbnail/{video_id}")
  def thumbnail(video_id: str):
    jpeg = service.bundle.thumbnail(video_id)
    if jpeg is None:
      raise RequestError(404, f"no thumbnail for video {video_id!r} in this bundle")
    return Response(jpeg, media_type="image/jpeg",
                    headers={"cache-control": "max-age=3600"})

  @app.get("/healthz")
  def healthz():
    return service.health()

  @app.get("/metrics")
  def metrics():
    return Response(prom.generate_latest(service.registry),
                    media_type=prom.CONTENT_TYPE_LATEST)

  @app.post("/reload")
  async def reload(request: Request):
    body = await _body(request, service.max_body_bytes)
    _unknown(body, ("bundle",))
    directory = body.get("bundle")
    if directory is not None and not isinstance(directory, str):
      raise RequestError(400, "bundle must be a folder path (a string)")
    return await anyio.to_thread.run_sync(service.reload, directory)

  return app
