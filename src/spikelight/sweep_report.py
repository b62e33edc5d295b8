"""``python -m spikelight.sweep_report <sweep folder>``: see :mod:`spikelight.app.sweep_report`."""

import sys

from spikelight.app.sweep_report import main

if __name__ == "__main__":
    sys.exit(main())
