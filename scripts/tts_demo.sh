#!/usr/bin/env bash
# The text-to-speech demo in one command, on the CPU: makes a speech corpus (sentences of the Debian package
# fortunes read by espeak-ng: `melnet-fast data speech`, which says what to install, or installs it with
# TTS_DEMO_INSTALL=1), trains tts_small on it for TTS_DEMO_STEPS steps (default 1500: the guided-attention loss of
# the preset decays to zero over them; the last fifth at a tenth of the learning rate), then on the held-out
# (test) sentences: the NLL table with each clip's own text and with another clip's text, the share of
# sentences whose attention is monotone and reaches the end, alignment plots, and synthesised audio with their
# alignment plots. Everything goes under OUT (default tts_demo_out/); running it again resumes the training.
#
#   bash scripts/tts_demo.sh [OUT]
# Environment: TTS_DEMO_STEPS, TTS_DEMO_MINUTES (a cap on the training time, default none), TTS_DEMO_SENTENCES
# (default 500), TTS_DEMO_VOICES (default us-male), TTS_DEMO_TIERS (default "1 2 3"; "1" trains only the initial
# tier, the one that reads the text, about 3x faster), TTS_DEMO_SPEAK (held-out sentences to synthesise, default 3),
# TTS_DEMO_SET (extra --set KEY=VALUE for the model, e.g.
# "hidden_size=16", for a smoke run), TTS_DEMO_NO_SETUP=1 (use .venv as it is: the tests' smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${TTS_DEMO_NO_SETUP:-0}" = 1 ] || source scripts/env.sh
OUT=${1:-tts_demo_out}
budget=()
[ -n "${TTS_DEMO_MINUTES:-}" ] && budget=(--max-minutes "$TTS_DEMO_MINUTES")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cli=(.venv/bin/python -m melnet_fast)
install=()
[ "${TTS_DEMO_INSTALL:-0}" = 1 ] && install=(--install)
overrides=()
for kv in ${TTS_DEMO_SET:-}; do overrides+=(--set "$kv"); done
mkdir -p "$OUT"

if [ ! -f "$OUT/corpus/manifest.csv" ]; then
  "${cli[@]}" data speech "$OUT/corpus" --sentences "${TTS_DEMO_SENTENCES:-500}" \
    --speakers ${TTS_DEMO_VOICES:-us-male} "${install[@]}"
fi
# shellcheck disable=SC2086
"${cli[@]}" train --data "$OUT/corpus/manifest.csv" --preset tts_small --out "$OUT/run" --steps "${TTS_DEMO_STEPS:-1500}" \
  "${budget[@]}" --tiers ${TTS_DEMO_TIERS:-1 2 3} --lr-cooldown 0.2 --val-every 100 --checkpoint-every 50 --no-progress \
  "${overrides[@]}"

"${cli[@]}" eval --run "$OUT/run" --data "$OUT/corpus/manifest.csv" --json > "$OUT/eval-own.txt"
"${cli[@]}" eval --run "$OUT/run" --data "$OUT/corpus/manifest.csv" --json --other-texts > "$OUT/eval-other.txt"
.venv/bin/python scripts/tts_demo_report.py --run "$OUT/run" --data "$OUT/corpus/manifest.csv" --out "$OUT" \
  --own "$OUT/eval-own.txt" --other "$OUT/eval-other.txt"

# Synthesise the first held-out sentences: OUT/speech-K.wav and OUT/speech-K-alignment.png.
mapfile -t texts < <(.venv/bin/python - "$OUT/corpus/manifest.csv" "${TTS_DEMO_SPEAK:-3}" <<'EOF'
import csv, sys
rows = [r["text"] for r in csv.DictReader(open(sys.argv[1])) if r.get("split") == "test"]
print("\n".join(rows[:int(sys.argv[2])]))
EOF
)
args=()
for t in "${texts[@]}"; do args+=(--text "$t"); done
"${cli[@]}" tts --run "$OUT/run" "${args[@]}" --out "$OUT/speech.wav" --temperature 0.7
echo "tts demo: report in $OUT/report.md, audio and alignment plots in $OUT/"
