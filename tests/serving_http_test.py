"""The HTTP service (vidrec_jax/serving/http.py) over a real bundle: the lists of --mode=recommend,
a history in a POST, a 4xx JSON line for every bad request, Prometheus metrics, and a bundle
swapped in (POST /reload, SIGHUP on the real process) while requests keep coming, none failing."""

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from absl.testing import absltest
from fastapi.testclient import TestClient
from PIL import Image

from tests import helpers
from vidrec_jax import experiment
from vidrec_jax import export
from vidrec_jax import recommend
from vidrec_jax.serving import http


def _export(cfg, workdir: str) -> tuple[str, dict]:
  restored = experiment.restore(cfg, workdir, "latest", "export")
  folder = export.export(restored, workdir, os.path.join(tempfile.mkdtemp(), "bundle"))
  return folder, restored


class _Served:
  """`python -m vidrec_jax.serving` on a free port for a `with` block: (process, base URL, a
  JSON GET); its output must hold no traceback."""

  def __init__(self, test, bundle: str):
    self.test, self.bundle = test, bundle

  def __enter__(self):
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    self.proc = subprocess.Popen(
        [sys.executable, "-m", "vidrec_jax.serving", f"--bundle={self.bundle}", f"--port={port}"],
        cwd=helpers.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"

    def get(path):
      with urllib.request.urlopen(base + path, timeout=30) as r:
        return json.loads(r.read())
    deadline = time.time() + 120
    while True:
      try:
        get("/healthz")
        break
      except (urllib.error.URLError, ConnectionError):
        self.test.assertLess(time.time(), deadline, "the service did not start")
        self.test.assertIsNone(self.proc.poll(), "the service exited")
        time.sleep(0.5)
    return self.proc, base, get

  def __exit__(self, *exc):
    self.proc.terminate()
    out = self.proc.communicate(timeout=60)[0]
    self.test.assertNotIn("Traceback", out)


class HttpTest(absltest.TestCase):
  """A sequential model (history tower) trained 6 steps, exported (A); then 3 more steps,
  exported again (B)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    folder = tempfile.mkdtemp()
    helpers.make_microlens_folder(folder)
    cfg = helpers.load_config("smoke", "microlens.py")
    cfg.data.dataset.path = folder
    cfg.recommend.candidates = 8
    cls.workdir = tempfile.mkdtemp()
    experiment.train(cfg, cls.workdir)
    cfg.mode = "export"
    cls.bundle_a, restored = _export(cfg, cls.workdir)
    cls.users = sorted(restored[0].dataset.users.astype(str))[:3]
    cls.want = {u: recommend.recommend(restored, cls.workdir, u, 5) for u in cls.users}
    cfg.mode, cfg.train.steps = "train", 9
    experiment.train(cfg, cls.workdir)
    cfg.mode = "export"
    cls.bundle_b, _ = _export(cfg, cls.workdir)

  def setUp(self):
    super().setUp()
    self.service = http.Service(self.bundle_a)
    self.client = TestClient(http.make_app(self.service), raise_server_exceptions=False)

  def test_get_gives_the_records_of_recommend_mode(self):
    for user in self.users:
      r = self.client.get("/recommend", params={"user": user, "k": 5})
      self.assertEqual(r.status_code, 200, r.text)
      got = r.json()
      self.assertEqual((got["user"], got["k"], got["checkpoint_step"]), (user, 5, 6))
      with open(os.path.join(self.workdir, "recommend", f"{user}.json")) as f:
        self.assertEqual(got["records"], json.load(f)["records"])
    r = self.client.get("/recommend", params={"user": "nobody"}).json()
    self.assertIn("not in the user vocabulary", r["note"])
    self.assertLen(r["records"], self.service.bundle.k)  # the default: the bundle's k
    self.assertEqual(r["records"][0]["scores"].keys(), {"popularity"})

  def test_post_a_history_or_a_user(self):
    ids = [r["video_id"] for r in self.want[self.users[0]]["records"]][:2]
    r = self.client.post("/recommend", json={"history": ids, "k": 4})
    self.assertEqual(r.status_code, 200, r.text)
    got = r.json()
    self.assertEqual((got["history"], got["k"]), (ids, 4))
    self.assertEqual(got["records"], self.service.bundle.recommend(history=ids, k=4))
    self.assertEmpty({x["video_id"] for x in got["records"]} & set(ids))
    r = self.client.post("/recommend", json={"user": self.users[0], "k": 5})
    self.assertEqual(r.json()["records"], self.want[self.users[0]]["records"])

  def test_bad_requests_get_one_json_line_naming_the_problem(self):
    n = len(self.service.bundle.histories.vectors)
    cases = [
        ("get", {"params": {"user": "1", "k": 0}}, 400, "k=0 is not allowed"),
        ("get", {"params": {"user": "1", "k": 99}}, 400, "1 <= k <= 8"),
        ("get", {"params": {"user": "1", "k": "ten"}}, 400, "not an integer"),
        ("get", {"params": {"k": 3}}, 400, "give user once"),
        ("get", {"params": {"user": "1", "limit": 3}}, 400, "unknown field 'limit'"),
        ("post", {"json": {"history": [1], "kk": 3}}, 400, "unknown field 'kk'"),
        ("post", {"json": {"history": [1, n + 5]}}, 400, "not catalog video ids"),
        ("post", {"json": {"history": "1 2"}}, 400, "must be a list"),
        ("post", {"json": {"history": [1], "user": "2"}}, 400, "give one of"),
        ("post", {"json": {"user": [1]}}, 400, "must be a string or an integer"),
        ("post", {"json": [1, 2]}, 400, "must be a JSON object"),
        ("post", {"content": b"{not json"}, 400, "not JSON"),
        ("post", {"content": b'{"history": [' + b"1," * 40000 + b"1]}"}, 413, "at most 65536"),
        ("get", {"url": "/nowhere"}, 404, "paths: /, /recommend"),
        ("put", {"url": "/recommend"}, 405, "Method Not Allowed"),
    ]
    for method, kw, status, why in cases:
      url = kw.pop("url", "/recommend")
      r = getattr(self.client, method)(url, **kw)
      self.assertEqual(r.status_code, status, (method, kw, r.text))
      self.assertIn(why, r.json()["error"], (method, kw))
      self.assertNotIn("\n", r.json()["error"])
      self.assertNotIn("Traceback", r.text)
    self.assertEqual(self.client.get("/healthz").status_code, 200)  # still serving

  def test_concurrent_requests_are_answered_each_as_alone(self):
    # Requests that arrive together are batched (http_support.Batcher): each gets its own list.
    import asyncio  # pylint: disable=g-import-not-at-top
    import httpx  # pylint: disable=g-import-not-at-top
    app = http.make_app(self.service)
    b = self.service.bundle

    async def run():
      transport = httpx.ASGITransport(app=app)
      async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        gets = [client.get("/recommend", params={"user": u, "k": 4}) for u in self.users * 4]
        posts = [client.post("/recommend", json={"history": [0, 2], "k": 3})]
        return await asyncio.gather(*gets, *posts)
    answers = asyncio.run(run())
    for r, u in zip(answers, self.users * 4):
      self.assertEqual(r.json()["records"], b.recommend(u, 4))
    self.assertEqual(answers[-1].json()["records"], b.recommend(history=[0, 2], k=3))

  def test_metrics_count_requests_by_status(self):
    self.client.get("/recommend", params={"user": self.users[0]})
    self.client.get("/recommend", params={"user": self.users[0], "k": 0})
    text = self.client.get("/metrics").text
    self.assertIn('vidrec_requests_total{path="/recommend",status="200"} 1.0', text)
    self.assertIn('vidrec_requests_total{path="/recommend",status="400"} 1.0', text)
    self.assertIn('vidrec_request_seconds_count{path="/recommend"} 2.0', text)
    self.assertIn('vidrec_bundle{checkpoint_step="6",format_version="2"} 1.0', text)

  def test_reload_swaps_the_bundle_and_refuses_a_bad_one(self):
    r = self.client.post("/reload", json={"bundle": tempfile.mkdtemp()})
    self.assertEqual(r.status_code, 409)
    self.assertIn("still serving the old one", r.json()["error"])
    self.assertEqual(self.client.get("/healthz").json()["checkpoint_step"], 6)
    r = self.client.post("/reload", json={"bundle": self.bundle_b})
    self.assertEqual(r.status_code, 200, r.text)
    self.assertEqual(self.client.get("/healthz").json()["checkpoint_step"], 9)
    got = self.client.get("/recommend", params={"user": self.users[0]}).json()
    self.assertEqual(got["checkpoint_step"], 9)

  def test_the_page_thumbnails_and_watched_videos(self):
    r = self.client.get("/")
    self.assertEqual(r.status_code, 200)
    self.assertIn("text/html", r.headers["content-type"])
    for needle in ("/recommend", "/thumbnail/", "/users", "<script>"):
      self.assertIn(needle, r.text)
    users = self.client.get("/users", params={"limit": 2}).json()
    self.assertEqual((len(users["users"]), users["total"]),
                     (2, len(self.service.bundle.users)))
    self.assertEqual(self.client.get("/users", params={"limit": 0}).status_code, 400)
    got = self.client.get("/recommend", params={"user": self.users[0], "k": 5}).json()
    logged = self.service.bundle.histories.logged(self.service.bundle.row(self.users[0]))
    self.assertEqual([w["video_id"] for w in got["watched"]], logged.tolist())
    self.assertTrue(all(w["title"] for w in got["watched"]))
    shown = 0
    for rec in got["records"]:
      r = self.client.get(f"/thumbnail/{rec['video_id']}")
      if r.status_code == 404:  # an item with neither a video nor a cover
        self.assertIn("no thumbnail", r.json()["error"])
        continue
      self.assertEqual(r.headers["content-type"], "image/jpeg")
      self.assertEqual(Image.open(io.BytesIO(r.content)).size, (96, 96))
      shown += 1
    self.assertGreater(shown, 0)
    self.assertEqual(self.client.get("/thumbnail/99999").status_code, 404)
    self.assertEqual(self.client.get("/thumbnail/x").status_code, 404)

  def test_the_page_renders_in_headless_chromium(self):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
      self.skipTest("headless Chromium is not installed (Debian: apt-get install chromium)")
    with _Served(self, self.bundle_a) as (_, base, _get):
      r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          "--virtual-time-budget=15000", "--dump-dom", base + "/"],
                         capture_output=True, text=True, timeout=120, check=False)
    dom = r.stdout
    want = self.client.get("/recommend", params={"user": self.users[0]}).json()["records"]
    self.assertEqual(dom.count('class="thumb"') + dom.count('class="noimg"'),
                     len(want) + len(self.service.bundle.histories.logged(
                         self.service.bundle.row(self.users[0]))), dom[-3000:])
    for rec in want:
      self.assertIn(f"video {rec['video_id']}", dom)

  def test_the_process_reloads_on_sighup_under_load_without_a_failed_request(self):
    link = os.path.join(tempfile.mkdtemp(), "current")
    os.symlink(self.bundle_a, link)
    with _Served(self, link) as (proc, base, get):
      steps, failures, stop = [], [], threading.Event()

      def load():
        while not stop.is_set():
          try:
            steps.append(get(f"/recommend?user={self.users[0]}&k=3")["checkpoint_step"])
          except Exception as e:  # noqa: BLE001 - counted
            failures.append(repr(e))
      threads = [threading.Thread(target=load) for _ in range(4)]
      for t in threads:
        t.start()
      time.sleep(1.0)
      tmp = link + ".new"
      os.symlink(self.bundle_b, tmp)
      os.replace(tmp, link)  # the new export, swapped in atomically
      proc.send_signal(signal.SIGHUP)
      deadline = time.time() + 60
      while get("/healthz")["checkpoint_step"] != 9:
        self.assertLess(time.time(), deadline, "SIGHUP did not swap the bundle in")
        time.sleep(0.2)
      time.sleep(1.0)
      stop.set()
      for t in threads:
        t.join()
      self.assertEqual(failures, [])
      self.assertIn(6, steps)
      self.assertEqual(steps[-1], 9)
      metrics = urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()
      self.assertIn('vidrec_reloads_total{outcome="ok"} 1.0', metrics)

  def test_a_missing_bundle_is_one_error_line(self):
    r = subprocess.run([sys.executable, "-m", "vidrec_jax.serving",
                        f"--bundle={tempfile.mkdtemp()}"], cwd=helpers.REPO, capture_output=True,
                       text=True, timeout=120, check=False)
    self.assertEqual(r.returncode, 1)
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    self.assertLen(errors, 1, r.stderr)
    self.assertIn("manifest.json: missing", errors[0])
    self.assertNotIn("Traceback", r.stderr)


if __name__ == "__main__":
  absltest.main()
