"""matplotlib with the file-only Agg backend, imported on first use (plots are optional): the
one place the reporting pages and the RL experiment's return plot get pyplot from."""


def pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top  (optional, and slow to import)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt
