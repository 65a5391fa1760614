"""Importing pyrovae and writing its pictures leaves matplotlib's backend alone (a notebook's
inline figures keep working) and holds no figure in pyplot's global list."""

import subprocess
import sys

SCRIPT = """
import matplotlib
import pyrovae, pyrovae.reports, pyrovae.reports.compare_plots
from pyrovae.reports.plots import save_elbo_curves
save_elbo_curves([{"epoch": 1, "train_elbo": -3.0, "test_elbo": -3.5},
                  {"epoch": 2, "train_elbo": -2.0, "test_elbo": -2.5}], "elbo.png")
import matplotlib.pyplot as plt
print(matplotlib.get_backend(), len(plt.get_fignums()))
"""


def test_pictures_leave_the_backend_and_pyplot_alone(tmp_path):
    env = {"MPLBACKEND": "svg", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["svg", "0"]
    png = (tmp_path / "elbo.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
