"""Entry point of `python -m jaxft.report`."""

import sys

from jaxft.report.cli import main

sys.exit(main())
