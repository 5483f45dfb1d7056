"""`python -m jaxft.train --config=configs/X.py[:arg] --workdir=DIR [--config.a.b=v ...]`."""

from __future__ import annotations

import json
import sys

from jaxft.cli import entry_point


@entry_point(__doc__)
def main(argv: list[str]) -> None:
    from jaxft.train.config import parse_args
    from jaxft.train.distributed import maybe_initialize

    config, workdir, extra = parse_args(argv)
    maybe_initialize(extra)
    from jaxft.train.loop import train

    summary = train(config, workdir)
    print(json.dumps({k: v for k, v in summary.items() if k != "final_eval"}))
    if "final_eval" in summary:
        print("final eval:", json.dumps(summary["final_eval"]))


if __name__ == "__main__":
    sys.exit(main())
