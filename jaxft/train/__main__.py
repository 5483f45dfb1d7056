"""`python -m jaxft.train --config=configs/X.py --workdir=DIR [--config.a.b=v ...]`."""

from __future__ import annotations

import json
import sys

from jaxft.errors import JaxftError


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    from jaxft.train.config import parse_args
    from jaxft.train.distributed import maybe_initialize

    try:
        config, workdir, extra = parse_args(argv)
        maybe_initialize(extra)
        from jaxft.train.loop import train

        summary = train(config, workdir)
    except JaxftError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "final_eval"}))
    if "final_eval" in summary:
        print("final eval:", json.dumps(summary["final_eval"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
