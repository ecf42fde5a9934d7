#!/usr/bin/env bash
# Build the scanner as a one-folder app with PyInstaller and prove it works: the build runs its
# own headless self-test (offscreen Qt, a demo store, every demo code through the gate, zxing,
# OpenCV). Exit status: 0 only when the build succeeded and its self-test passed.
#
#   packaging/scanner/build.sh          (./dev package does the set-up first, then this)
#
# Output: dist/gatehouse-scanner/ (git-ignored); intermediate files in build/pyinstaller/.
# Environment: GATEHOUSE_VENV (default .venv) — the virtual environment to build from.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
VENV=${GATEHOUSE_VENV:-$ROOT/.venv}
PY="$VENV/bin/python"
NAME=gatehouse-scanner
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

[ -x "$PY" ] || { echo "build.sh: no virtual environment at $VENV (run ./dev setup)" >&2; exit 1; }
if ! "$PY" -c 'import PyInstaller, PySide6, zxingcpp, cv2' 2>/dev/null; then
  say "installing the scanner and PyInstaller into $VENV (gatehouse[scanner,package])"
  "$PY" -m pip install -q -e ".[scanner,package]"
fi

say "building $NAME with PyInstaller $("$PY" -m PyInstaller --version)"
SECONDS=0
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" \
  packaging/scanner/$NAME.spec
built=$SECONDS

APP="$ROOT/dist/$NAME"
say "self-test of the build (headless)"
# A fresh environment: nothing from the venv or the repository may leak into the test.
env -i HOME="$HOME" PATH=/usr/bin:/bin QT_QPA_PLATFORM=offscreen LANG="${LANG:-C.UTF-8}" \
  "$APP/$NAME" --self-test
tested=$SECONDS

echo "$APP: $(du -sh "$APP" | cut -f1), built in ${built} s, self-test passed in $((tested - built)) s"
