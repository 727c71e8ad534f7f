#!/usr/bin/env bash
# SLM Lab end to end from a fresh clone: set up .venv, then every chapter's command in order, ending with the report:
# patterns -> data -> train -> eval -> ACE -> MCTS -> tiny LM -> RL -> report.
# SLMLAB_QUICK=1 runs the quick sizes the notebooks use, into the quick/ artifacts tree. Each step resumes or reuses
# what is already on disk where its command does, so a second run mostly checks. Afterwards: scripts/demo.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SLMLAB="${SLMLAB:-.venv/bin/slmlab}"

case "$(printf '%s' "${SLMLAB_QUICK:-}" | tr '[:upper:]' '[:lower:]')" in
  1|true|yes|on) quick=1 ;;
  *) quick=0 ;;
esac
export SLMLAB_QUICK="$quick"

step() {
  printf '\n==> %s\n' "$*"
  local started=$SECONDS
  "$SLMLAB" "$@"
  printf '    (%ss)\n' "$((SECONDS - started))"
}

make setup

if [ "$quick" = 1 ]; then
  train_options=(--steps 8)
  eval_options=(--limit 8)
  ace_tasks=(tatqa_tiny medqa_tiny iot_tiny)
  ace_epochs=1
  quick_flag=(--quick)
  lm_eval_options=(--quick --samples 8)
  rl_options=(--quick --limit 6)
else
  train_options=()
  eval_options=()
  ace_tasks=(finance medical iot)
  ace_epochs=2
  quick_flag=()
  lm_eval_options=()
  rl_options=()
fi

# "${list[@]+...}" expands an empty list to nothing under `set -u`, also in the bash 3.2 of macOS.
step patterns validate patterns
step data
step train ${train_options[@]+"${train_options[@]}"}
step eval ${eval_options[@]+"${eval_options[@]}"}
for task in ${ace_tasks[@]+"${ace_tasks[@]}"}; do
  step ace run --task "$task" --mode ace --epochs "$ace_epochs"
done
step mcts run ${quick_flag[@]+"${quick_flag[@]}"}
step lm tokenizer ${quick_flag[@]+"${quick_flag[@]}"}
step lm train ${quick_flag[@]+"${quick_flag[@]}"}
step lm eval ${lm_eval_options[@]+"${lm_eval_options[@]}"}
step rl train --humaneval ${rl_options[@]+"${rl_options[@]}"}
step report ${quick_flag[@]+"${quick_flag[@]}"}
