"""The HTTP service over a serving bundle (http.py):

  python -m vidrec_jax.serving --bundle=E --port=8000

SIGHUP (or POST /reload) loads the bundle folder again and swaps it in without dropping a
request: to roll out a new export, write it beside the old one and point --bundle at a symlink
you flip (`ln -sfn NEW E`), then `kill -HUP PID`.
"""

import os
import signal
import sys
import threading

from absl import app
from absl import flags
from absl import logging

_BUNDLE = flags.DEFINE_string("bundle", None, "The bundle folder --mode=export wrote.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every one).")
_PORT = flags.DEFINE_integer("port", 8000, "Port to listen on.")
_MAX_BODY = flags.DEFINE_integer("max_body_bytes", 1 << 16, "Largest request body accepted.")


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}; flags: --bundle --host --port "
          "--max_body_bytes", file=sys.stderr)
    return 2
  if not _BUNDLE.value:
    print("error: --bundle=FOLDER is required (a bundle --mode=export wrote)", file=sys.stderr)
    return 2
  if not 0 <= _PORT.value < 65536 or _MAX_BODY.value < 1:
    print(f"error: --port={_PORT.value} or --max_body_bytes={_MAX_BODY.value} is out of range "
          "(0..65535; >= 1)", file=sys.stderr)
    return 2
  import uvicorn  # pylint: disable=g-import-not-at-top
  from vidrec_jax.serving import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from vidrec_jax.serving import http  # pylint: disable=g-import-not-at-top
  try:
    service = http.Service(_BUNDLE.value, _MAX_BODY.value)
  except bundle_lib.BundleError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1

  def hangup(signum, frame):
    del signum, frame

    def reload():
      try:
        service.reload()
      except Exception as e:  # noqa: BLE001 - the old bundle stays; one line in the log
        logging.error("SIGHUP: %s not reloaded, still serving the old bundle: %s",
                      service.directory, str(e).splitlines()[0] if str(e) else type(e).__name__)
    threading.Thread(target=reload, daemon=True).start()

  signal.signal(signal.SIGHUP, hangup)
  logging.info("serving %s on http://%s:%d (pid %d)", os.path.abspath(_BUNDLE.value),
               _HOST.value, _PORT.value, os.getpid())
  uvicorn.run(http.make_app(service), host=_HOST.value, port=_PORT.value, log_level="warning",
              access_log=False)
  return 0


if __name__ == "__main__":
  app.run(main)
