"""``python -m spikereg`` == ``spikereg``."""
from spikereg.cli import main

main()
