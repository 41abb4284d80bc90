#!/usr/bin/env bash
# Smoke-test a built application folder (from build_app.sh) without a display:
#
#   packaging/smoke_app.sh DIST/transfer-gui [--no-train]
#
# 1. `transfer-gui --version` and `transfer-gui models` (timed);
# 2. unless --no-train: train 2 epochs on the bundled sample data, export ONNX (with the parity
#    check) and TorchScript, and predict with the ONNX file -- all from the frozen program;
# 3. start the window offscreen and measure the time to its first paint (from Qt's own
#    painting log), then stop it; it passes when the program was still running and wrote no
#    traceback. If the UI honours TRANSFER_GUI_QUIT_AFTER_MS it quits by itself instead.
set -uo pipefail
app_dir="${1:?usage: smoke_app.sh DIST/transfer-gui [--no-train]}"
train=1
[ "${2:-}" = "--no-train" ] && train=0
exe="$app_dir/transfer-gui"
[ -x "$exe" ] || { echo "smoke_app.sh: no program at $exe" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"  # never run next to a checkout: nothing may come from the sources
export QT_QPA_PLATFORM=offscreen
fail=0

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
step() {  # step NAME CMD... : run, time, report
  local name="$1"; shift
  local t0; t0=$(now)
  if "$@" >"$tmp/out.txt" 2>"$tmp/err.txt"; then
    echo "ok   $name ($(since "$t0") s)"
  else
    echo "FAIL $name (exit $?)"; tail -20 "$tmp/err.txt"; fail=1
  fi
}

step "--version: $("$exe" --version 2>&1)" "$exe" --version
step "models" "$exe" models
grep -q efficientnet_lite0 "$tmp/out.txt" || { echo "FAIL models does not list efficientnet_lite0"; fail=1; }

if [ "$train" = 1 ]; then
  data="$app_dir/_internal/resources/sample_data"
  step "train 2 epochs on the bundled sample data" "$exe" train --data "$data" --out "$tmp/run" --epochs 2 --quiet
  step "export ONNX with parity check" "$exe" export "$tmp/run" --format onnx --out "$tmp/m.onnx" \
    --parity-images "$data/Bag"
  step "export TorchScript" "$exe" export "$tmp/run" --format torchscript --out "$tmp/m.pt"
  step "predict with the ONNX file" "$exe" predict "$tmp/m.onnx" "$data/Sneaker/000.png"
  sed 's/^/     /' "$tmp/out.txt"
fi

# The window: Qt logs every flush of a top-level window; the first one is the first paint.
t0=$(now)
TRANSFER_GUI_QUIT_AFTER_MS=8000 QT_LOGGING_RULES="qt.widgets.painting=true" \
  QT_MESSAGE_PATTERN="@@%{time hh:mm:ss.zzz} %{message}" timeout 30 "$exe" >/dev/null 2>"$tmp/gui.txt"
rc=$?
first=$(grep -m1 "^@@.*Flushing top level" "$tmp/gui.txt" | cut -c3-14)
if [ -n "$first" ]; then
  paint=$(awk -v t0="$t0" -v hms="$first" 'BEGIN {
    split(hms, p, ":"); s = p[1] * 3600 + p[2] * 60 + p[3];
    cmd = "date -d @" int(t0) " +%H:%M:%S"; cmd | getline base; split(base, q, ":");
    b = q[1] * 3600 + q[2] * 60 + q[3] + (t0 - int(t0)); d = s - b; if (d < 0) d += 86400;
    printf "%.2f", d }')
else
  paint="(no paint seen)"
fi
if grep -v "^@@" "$tmp/gui.txt" | grep -q "Traceback\|Error"; then
  echo "FAIL window: errors on stderr (exit $rc)"; grep -v "^@@" "$tmp/gui.txt" | tail -30; fail=1
elif [ "$rc" != 0 ] && [ "$rc" != 124 ]; then
  echo "FAIL window exited with $rc"; fail=1
elif [ -z "$first" ]; then
  echo "FAIL window never painted (exit $rc)"; fail=1
else
  echo "ok   window: first paint after $paint s; exit $rc (124 = still running after 30 s, stopped)"
fi
exit $fail
