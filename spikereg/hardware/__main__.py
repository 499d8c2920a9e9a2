"""``python -m spikereg.hardware NET.h5 [--profile loihi2] [--json]``: print a mapping report."""
import sys

from spikereg.hardware.mapping import main

sys.exit(main())
