"""Where the data folders SpikeReg ships beside its code are: ``hardware_profiles/`` and ``configs/``.

In the repository they are top-level folders, the source of truth, edited in
place. The wheel carries them inside the package (``spikereg/hardware_profiles/``,
``spikereg/configs/``: pyproject.toml maps the folders there with
``[tool.setuptools.package-dir]``), so an installed SpikeReg finds its shipped
profiles and named configs from any folder. :func:`shipped_dir` looks in the
package first (a wheel install), then beside it (a checkout on ``PYTHONPATH`` or
an editable install, where the package is the repository's ``spikereg/``).
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """The folder of shipped files called NAME (``"hardware_profiles"``, ``"configs"``).

    Inside the installed package if it is there, else the repository's top-level
    folder; the latter may not exist (the caller says so in its own error).
    """
    inside = PACKAGE_DIR / name
    return inside if inside.is_dir() else PACKAGE_DIR.parent / name
