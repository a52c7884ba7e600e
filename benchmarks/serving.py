"""The HTTP service under load at catalog sizes past the trained one (issue 30, item 5).

  python benchmarks/serving.py --bundle=E --root=/tmp/serving_bench --sizes=20000,100000,1000000

From a bundle `--mode=export` wrote (its model, users and exported functions), each size N gets
a bundle of N items: the trained catalog's vectors, then vectors drawn from a Gaussian with the
catalog's mean and covariance (retrieval and ranking vectors drawn jointly), each rescaled to a
norm drawn from the catalog's norms. Each retrieval choice (--retrievals) is built and tuned as
`--mode=export` does (retrieval.py: half of --queries users tune, half measure recall@candidates
against exact). Each bundle is then served by `python -m vidrec_jax.serving` on loopback and
loaded by a small asyncio HTTP/1.1 client (keep-alive connections, one request in flight each)
at each concurrency (--concurrency) for --seconds or --max_requests, whichever ends first:
GET /recommend?user=U&k=10 with users drawn from the bundle's. Recorded: p50/p99 latency,
requests/s, failed requests, recall@candidates, index build time, bundle size on disk, load
time (process start to a healthy /healthz, and serving.load in the process), the server's peak
RSS. With --reload_under_load, the largest size's last run gets a SIGHUP halfway (the same
bundle read again and swapped in) and counts failed requests across the swap.

Client and server share this machine's cores: the figures are the loopback service's on 2
cores, client included.
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import main_runner  # pylint: disable=g-import-not-at-top,wrong-import-position

_BUNDLE = flags.DEFINE_string("bundle", None, "A bundle --mode=export wrote (the model served).")
_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_serving_bench", "Where the bundles go.")
_SIZES = flags.DEFINE_list("sizes", ["20000", "100000", "1000000"], "Catalog sizes.")
_RETRIEVALS = flags.DEFINE_list("retrievals", ["exact", "faiss", "scann"], "Stage-1 choices "
                                "(retrieval.RETRIEVALS).")
_CONCURRENCY = flags.DEFINE_list("concurrency", ["1", "16"], "Requests in flight.")
_SECONDS = flags.DEFINE_float("seconds", 15.0, "Load per run, at most (after 1 s of warm-up).")
_MAX_REQUESTS = flags.DEFINE_integer("max_requests", 20000, "Requests per run, at most.")
_QUERIES = flags.DEFINE_integer("queries", 1000, "Users whose vectors tune and measure indexes.")
_TARGET = flags.DEFINE_float("target", 0.95, "Recall target an index is tuned to.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the drawn vectors, the users and the queries.")
_K = flags.DEFINE_integer("k", 10, "k of each request.")
_RELOAD = flags.DEFINE_bool("reload_under_load", True, "SIGHUP halfway through the last run.")
_RESULTS = flags.DEFINE_string("results", os.path.join(main_runner.REPO, "benchmarks", "results",
                                                     "serving.md"), "The results table.")


def _draw(real: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
  """`n` rows like `real`'s: Gaussian with its mean and covariance, norms drawn from its."""
  mean, cov = real.mean(0), np.cov(real, rowvar=False)
  x = rng.multivariate_normal(mean, cov, size=n, method="eigh").astype(np.float32)
  norms = np.linalg.norm(real, axis=1)
  want = rng.choice(norms, size=n)
  return x * (want / np.maximum(np.linalg.norm(x, axis=1), 1e-12))[:, None]


def enlarge(b, n: int, seed: int):
  """(items, histories) of `b` grown to `n` items (its own first)."""
  from vidrec_jax import serving  # pylint: disable=g-import-not-at-top
  it = b.items
  m = len(it)
  rng = np.random.default_rng(seed)
  r, d = it.retrieval.shape[1], it.ranking.shape[1]
  same = np.array_equal(it.retrieval, it.ranking)
  joint = it.retrieval if same else np.concatenate([it.retrieval, it.ranking], 1)
  extra = _draw(np.asarray(joint, np.float32), max(n - m, 0), rng)
  ret = np.concatenate([it.retrieval, extra[:, :r]])[:n]
  rank = ret if same else np.concatenate([it.ranking, extra[:, r:r + d]])[:n]
  first_new = int(it.video_ids.max()) + 1
  if b.histories is not None:
    first_new = max(first_new, len(b.histories.vectors))
  ids = np.concatenate([it.video_ids, first_new + np.arange(max(n - m, 0))])[:n]
  kinds = rng.choice(it.content_types, size=max(n - m, 0))
  items = serving.Items(
      retrieval=ret, ranking=rank, video_ids=ids.astype(np.int64),
      titles=np.concatenate([it.titles, [f"drawn video {i}" for i in ids[m:]]])[:n],
      content_types=np.concatenate([it.content_types, kinds])[:n],
      cold=np.concatenate([it.cold, np.zeros(max(n - m, 0), bool)])[:n])
  h = b.histories
  if h is not None:
    total = int(ids.max()) + 1
    hv = np.zeros((total, h.vectors.shape[1]), np.float32)
    hv[:len(h.vectors)] = h.vectors
    new = ids[m:]
    # A drawn video watched in a history: its history vector drawn like the real ones.
    hv[new] = rank[m:] if h.vectors.shape[1] == rank.shape[1] else _draw(h.vectors, len(new),
                                                                          rng)
    pop = np.zeros(total, np.int64)
    pop[:len(h.popularity)] = h.popularity
    h = serving.Histories(vectors=hv, offsets=h.offsets, clicks=h.clicks, popularity=pop,
                          max_len=h.max_len)
  return items, h


def queries(b, n: int, seed: int) -> np.ndarray:
  users = np.random.default_rng(seed).permutation(sorted(b.users))[:n]
  out = [b.user_vector(u) for u in users]
  return np.stack([q for q in out if q is not None]).astype(np.float32)


def write(b, folder: str, items, histories, name: str, tune, held):
  from vidrec_jax import serving  # pylint: disable=g-import-not-at-top
  from vidrec_jax.serving import retrieval  # pylint: disable=g-import-not-at-top
  t = time.perf_counter()
  retriever, report = retrieval.build(name, items.retrieval, tune, held, b.candidates,
                                      _TARGET.value, seed=_SEED.value)
  report["build_seconds_total"] = round(time.perf_counter() - t, 2)
  meta = {k: v for k, v in b.manifest.items()
          if k not in ("files", "shapes", "format_version", "user_input", "max_len", "retrieval",
                       "platforms")}
  shutil.rmtree(folder, ignore_errors=True)
  serving.write_bundle(folder, items, *b.exported, b.users, b.oov_row, b.fusion, meta,
                       histories, retriever, report)
  return report


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _peak_rss_mb(pid: int) -> float:
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return float(line.split()[1]) / 1024
  return float("nan")


async def _client(port: int, paths: list[str], concurrency: int, seconds: float,
                  max_requests: int) -> dict:
  """Keep-alive HTTP/1.1 connections, one request in flight each, until time or count ends."""
  lat, fails, statuses = [], [0], {}
  stop_at = time.perf_counter() + seconds
  sent = [0]

  async def worker(w: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = w
    try:
      while time.perf_counter() < stop_at and sent[0] < max_requests:
        sent[0] += 1
        path = paths[i % len(paths)]
        i += concurrency
        t = time.perf_counter()
        try:
          writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
          await writer.drain()
          status_line = await reader.readline()
          status = int(status_line.split()[1])
          length = 0
          while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
              break
            if line.lower().startswith(b"content-length:"):
              length = int(line.split(b":")[1])
          await reader.readexactly(length)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
          fails[0] += 1
          writer.close()
          reader, writer = await asyncio.open_connection("127.0.0.1", port)
          continue
        lat.append(time.perf_counter() - t)
        statuses[status] = statuses.get(status, 0) + 1
        if status != 200:
          fails[0] += 1
    finally:
      writer.close()

  t0 = time.perf_counter()
  await asyncio.gather(*(worker(w) for w in range(concurrency)))
  wall = time.perf_counter() - t0
  lat_ms = np.asarray(lat) * 1000
  return dict(requests=len(lat), failed=fails[0], statuses=statuses, seconds=round(wall, 2),
              rps=round(len(lat) / wall, 1),
              p50_ms=round(float(np.percentile(lat_ms, 50)), 2) if len(lat) else None,
              p99_ms=round(float(np.percentile(lat_ms, 99)), 2) if len(lat) else None)


def serve(folder: str, users: list[str], reload_at_last: bool) -> dict:
  """Starts the service on `folder`, loads it at each concurrency, stops it."""
  port = _free_port()
  t = time.perf_counter()
  proc = subprocess.Popen([sys.executable, "-m", "vidrec_jax.serving", f"--bundle={folder}",
                           f"--port={port}"], cwd=main_runner.REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  while True:
    try:
      with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        json.loads(r.read())
      break
    except OSError:
      if proc.poll() is not None:
        raise SystemExit(f"the service exited: {proc.stderr.read()[-2000:]}")
      time.sleep(0.2)
  out = dict(ready_seconds=round(time.perf_counter() - t, 2), runs={})
  paths = [f"/recommend?user={u}&k={_K.value}" for u in users]
  try:
    asyncio.run(_client(port, paths, 2, 1.0, 10**9))  # warm-up
    levels = [int(c) for c in _CONCURRENCY.value]
    for j, c in enumerate(levels):
      last = reload_at_last and j == len(levels) - 1
      if last:
        threading.Timer(_SECONDS.value / 2, proc.send_signal, (signal.SIGHUP,)).start()
      res = asyncio.run(_client(port, paths, c, _SECONDS.value, _MAX_REQUESTS.value))
      res["reload_mid_run"] = last
      out["runs"][str(c)] = res
      print(f"  concurrency {c}: {res}", flush=True)
    if reload_at_last:
      # Read as the load ends: a swap that completed during the run counts; one still loading
      # then did not happen under load (the table says so).
      with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
      out["reloads_ok"] = sum(float(l.split()[-1]) for l in text.splitlines()
                              if l.startswith('vidrec_reloads_total{outcome="ok"}'))
    out["peak_rss_mb"] = round(_peak_rss_mb(proc.pid))
  finally:
    proc.terminate()
    proc.wait(timeout=60)
  return out


def _reload_note(serve_out: dict) -> str:
  done = serve_out.get("reloads_ok", 0) >= 1
  return f" (SIGHUP mid-run: {'swapped during the run' if done else 'not swapped before the end'})"


def table(results: list[dict]) -> str:
  lines = ["# Serving: the HTTP service under load (benchmarks/serving.py)", "",
           "Each row: `python benchmarks/serving.py` (flags in ROOT/serving.json); loopback, client "
           "and server on the same 2 cores.", "",
           "| items | retrieval | recall@C (held out) | probes | index build s | bundle MB | "
           "load s | ready s | peak RSS MB | concurrency | requests/s | p50 ms | p99 ms | "
           "failed |", "|" + "---|" * 14]
  for r in results:
    rep = r["report"]
    rec = next((v for k, v in rep.items() if k.startswith("recall@")), None)
    probes = next((rep[k] for k in ("nprobe", "leaves_to_search", "ef_search") if k in rep),
                  "all")
    for c, run in r["serve"]["runs"].items():
      lines.append(
          f"| {r['items']} | {rep['name']} | {rec:.4f} | {probes} | "
          f"{rep.get('build_seconds_total', 0)} | {r['bundle_mb']:.0f} | {r['load_seconds']} | "
          f"{r['serve']['ready_seconds']} | {r['serve']['peak_rss_mb']} | {c}"
          f"{_reload_note(r['serve']) if run['reload_mid_run'] else ''} | {run['rps']} | "
          f"{run['p50_ms']} | {run['p99_ms']} | {run['failed']} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  from vidrec_jax import serving  # pylint: disable=g-import-not-at-top
  os.makedirs(_ROOT.value, exist_ok=True)
  src = serving.load(_BUNDLE.value)
  q = queries(src, _QUERIES.value, _SEED.value)
  half = len(q) // 2
  users = list(np.random.default_rng(_SEED.value + 1).permutation(sorted(src.users))[:2000])
  results = []
  sizes = [int(s) for s in _SIZES.value]
  for n in sizes:
    items, histories = enlarge(src, n, _SEED.value)
    for name in _RETRIEVALS.value:
      folder = os.path.join(_ROOT.value, f"{n}_{name}")
      print(f"{n} items, {name}: building ...", flush=True)
      report = write(src, folder, items, histories, name, q[:half], q[half:])
      t = time.perf_counter()
      loaded = serving.load(folder)
      load_s = round(time.perf_counter() - t, 2)
      del loaded
      mb = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder)
               for f in fs) / 2**20
      print(f"  {report}; {mb:.0f} MB, load {load_s} s", flush=True)
      last = _RELOAD.value and n == sizes[-1] and name == _RETRIEVALS.value[-1]
      results.append(dict(items=n, report=report, bundle_mb=mb, load_seconds=load_s,
                          serve=serve(folder, users, last)))
      with open(os.path.join(_ROOT.value, "serving.json"), "w") as f:
        json.dump(dict(flags={k: getattr(flags.FLAGS, k) for k in (
            "bundle", "sizes", "retrievals", "concurrency", "seconds", "max_requests", "queries",
            "target", "seed", "k")}, results=results), f, indent=1, default=str)
      main_runner.write(_RESULTS.value, table(results))
  print(table(results))


if __name__ == "__main__":
  flags.mark_flag_as_required("bundle")
  app.run(main)
