# shellcheck shell=bash
# Helpers shared by the launchers; each one sources this file after defining its usage():
#   source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)  # the repo root

die() { echo "error: $*" >&2; echo "see: $0 --help" >&2; exit 2; }
q() {  # one shell word, quoted only where needed (a --flag= prefix stays outside the quotes)
  local s=$1 pre=''
  if [[ $s =~ ^(--?[A-Za-z0-9_.-]+=)(.*)$ ]]; then pre=${BASH_REMATCH[1]} s=${BASH_REMATCH[2]}; fi
  if [[ -n $s && $s =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then printf '%s%s' "$pre" "$s"
  elif [[ $s != *[\"\$\`\\!]* ]]; then printf '%s"%s"' "$pre" "$s"
  else printf "%s'%s'" "$pre" "${s//\'/\'\\\'\'}"; fi
}
words() { local out=() a; for a in "$@"; do out+=("$(q "$a")"); done; echo "${out[*]}"; }
run() { if ((DRY_RUN)); then words "$@"; else "$@"; fi; }

# parse_args 'NAME...' 'SWITCH=VAR...' ARGS...
#   -h/--help prints usage() and exits; --dry-run sets DRY_RUN=1; --NAME=VALUE (for each NAME) sets
#   opt_NAME (dashes as underscores) to VALUE; --SWITCH sets VAR=1 (DRY_RUN and each VAR start at 0);
#   everything after `--` goes to the array EXTRA; any other argument is an error.
parse_args() {
  local names=$1 switches=$2 arg w
  shift 2
  DRY_RUN=0 EXTRA=()
  for w in $switches; do printf -v "${w#*=}" 0; done
  while (($#)); do
    arg=$1
    case $arg in
      --) shift; EXTRA=("$@"); return ;;
      -h|--help) usage; exit 0 ;;
      --dry-run) DRY_RUN=1; shift; continue ;;
    esac
    for w in $switches; do
      [[ $arg == "--${w%%=*}" ]] && { printf -v "${w#*=}" 1; shift; continue 2; }
    done
    for w in $names; do
      [[ $arg == "--$w="* ]] && { printf -v "opt_${w//-/_}" '%s' "${arg#*=}"; shift; continue 2; }
    done
    die "unknown argument '$arg'"
  done
}

require_opts() {  # require_opts NAME...: die unless each --NAME was given (a non-empty opt_NAME)
  local name var
  for name in "$@"; do
    var="opt_${name//-/_}"; [[ -n ${!var} ]] || die "missing --$name"
  done
}
