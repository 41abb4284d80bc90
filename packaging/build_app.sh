#!/usr/bin/env bash
# Build the one-folder application with PyInstaller: <dist>/transfer-gui/transfer-gui.
#
#   packaging/build_app.sh [--dist DIR] [--work DIR] [--cpu-only] [--strip] [--smoke]
#
# Uses the Python of the active virtual environment (or .venv/ in the repository, or python3),
# installs PyInstaller into it when missing, and runs packaging/transfer_gui.spec.
# Defaults: --dist dist, --work build/pyinstaller (under the repository, both git-ignored);
# pass folders outside the checkout (e.g. under /tmp) to keep it clean.
#   --cpu-only  TRANSFER_GUI_CPU_ONLY=1: leave out the CUDA libraries torch opens only for GPU work
#   --strip     TRANSFER_GUI_STRIP=1: strip debug symbols from the collected libraries
#   --smoke     afterwards run packaging/smoke_app.sh on the result (CLI, short training, window)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
dist="$root/dist"
work="$root/build/pyinstaller"
smoke=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) dist="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --cpu-only) export TRANSFER_GUI_CPU_ONLY=1; shift ;;
    --strip) export TRANSFER_GUI_STRIP=1; shift ;;
    --smoke) smoke=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build_app.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [ -n "${VIRTUAL_ENV:-}" ]; then
  py="$VIRTUAL_ENV/bin/python"
elif [ -x "$root/.venv/bin/python" ]; then
  py="$root/.venv/bin/python"
else
  py="$(command -v python3)"
fi

if ! "$py" -c "import PyInstaller" 2>/dev/null; then
  echo "installing PyInstaller into $("$py" -c 'import sys; print(sys.prefix)')"
  "$py" -m pip install --quiet "pyinstaller>=6.10" "pyinstaller-hooks-contrib>=2024.8"
fi
"$py" -c "import transfer_gui" 2>/dev/null || {
  echo "build_app.sh: transfer_gui is not importable by $py; run: $py -m pip install -e '$root'" >&2
  exit 1
}

start=$(date +%s)
"$py" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$dist" --workpath "$work" "$here/transfer_gui.spec"
end=$(date +%s)

app="$dist/transfer-gui"
echo "built $app in $((end - start)) s; size $(du -sh "$app" | cut -f1)"
if [ "$smoke" = 1 ]; then
  "$here/smoke_app.sh" "$app"
fi
