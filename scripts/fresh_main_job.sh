#!/usr/bin/env bash
# README's main command, exactly as README writes it, in a new virtual environment: no test extra,
# no torch. Shortened only by --config.* overrides (and a scratch workdir). Exit status is the job's.
#   bash scripts/fresh_main_job.sh [SCRATCH_DIR]      (CI runs it first; developers can too)
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=${1:-$(mktemp -d)}
mkdir -p "$scratch"
cmd=$(python3 - <<'PY'
import re, sys
text = open("README.md").read()
found = re.findall(r"^pip install -e \. && .*python -m jaxft\.train .*$", text, flags=re.M)
if len(found) != 1:
    sys.exit(f"README.md: expected one main command line, found {len(found)}")
print(found[0])
PY
)
echo "README main command: $cmd"
start=$(date +%s)
python3 -m venv "$scratch/venv"
# shellcheck disable=SC1091
source "$scratch/venv/bin/activate"
short="--workdir=$scratch/run --config.total_steps=2 --config.checkpoint_every_steps=1 \
--config.eval.final_limit=2 --config.eval.max_new_tokens=32"
eval "$cmd $short"
if python -c "import torch" 2>/dev/null || python -c "import transformers" 2>/dev/null; then
  echo "fresh venv has torch or transformers: the main path must not need them" >&2
  exit 1
fi
python - "$scratch/run" <<'PY'
import json, os, sys
run = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if '"loss"' in l]
summary = json.load(open(os.path.join(run, "summary.json")))
assert len(rows) == 2 and all(r["loss"] == r["loss"] for r in rows), rows
assert summary["final_eval"]["n"] == 2, summary
print(f"fresh-venv main job: {len(rows)} steps, final eval n={summary['final_eval']['n']}")
PY
echo "fresh-venv main job passed in $(( $(date +%s) - start )) s (install included)"
