#!/usr/bin/env bash
# Builds the `iqr` Python sketch plugin as a WebAssembly component: iqr.wasm, next to
# this script. Needs python3 (3.10+ with venv) and PyPI; everything else goes into
# ./.venv. Usage: examples/python-plugin/build.sh
set -euo pipefail

# The componentize-py release this plugin is built and tested with.
COMPONENTIZE_PY_VERSION=0.25.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$(cd "$here/../../wit" && pwd)"
venv="$here/.venv"
out="$here/iqr.wasm"

fail() {
    echo "build.sh: error: $*" >&2
    exit 1
}

command -v python3 >/dev/null || fail "python3 is not installed"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv"
    python3 -m venv "$venv" || fail "cannot create a virtualenv in $venv (is python3-venv installed?)"
fi

installed="$("$venv/bin/python" -m pip show componentize-py 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [[ "$installed" != "$COMPONENTIZE_PY_VERSION" ]]; then
    echo "installing componentize-py==$COMPONENTIZE_PY_VERSION from PyPI"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION" \
        || fail "cannot install componentize-py==$COMPONENTIZE_PY_VERSION from PyPI (network? a wheel for this platform?)"
fi
tool="$venv/bin/componentize-py"
[[ -x "$tool" ]] || fail "componentize-py is missing from $venv after installing it"

# Bindings on disk are only for editors and test_plugin.py (componentize generates its
# own); regenerated when the WIT or the tool changed.
stamp="$here/bindings/.stamp"
want="$COMPONENTIZE_PY_VERSION $(sha256sum "$wit"/*.wit | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    rm -rf "$here/bindings"
    "$tool" -d "$wit" -w sketch-plugin bindings "$here/bindings" \
        || fail "componentize-py could not generate bindings for $wit"
    echo "$want" >"$stamp"
fi

cd "$here"
# -p .: app.py and plugin.py. Only modules they import end up in the component.
"$tool" -d "$wit" -w sketch-plugin componentize -p . app -o "$out" \
    || fail "componentize-py could not build $out"
[[ -s "$out" ]] || fail "componentize-py wrote no $out"
echo "built $out ($(stat -c %s "$out") bytes)"
