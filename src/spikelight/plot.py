"""``python -m spikelight.plot <run folder | checkpoint>``: see :mod:`spikelight.app.plot`."""

import sys

from spikelight.app.plot import main

if __name__ == "__main__":
    sys.exit(main())
