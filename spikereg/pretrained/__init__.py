"""Models shipped with SpikeReg, so that ``spikereg run`` works with no training.

``demo.*`` is what ``make demo`` trains (configs/demo.yaml, same seed):
``demo.pt`` the checkpoint, ``demo.net`` its verified netx export,
``demo.verify.json`` the SLAYER-vs-Lava comparison made when it was exported.
"""
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE / "demo.net"
DEFAULT_CHECKPOINT = HERE / "demo.pt"
