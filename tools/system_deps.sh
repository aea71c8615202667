#!/usr/bin/env bash
# Debian packages the project needs (root, or sudo), installed only when missing:
#  * speech engines of the embedded corpora: espeak-ng, flite, mbrola (contrib) with its
#    English voices, SVOX Pico and RHVoice (non-free) speak the training splits;
#    festival with three English voices the held-out-engine test splits;
#  * g++-aarch64-linux-gnu + qemu-user: tests/test_arm.py cross-builds the kernel driver
#    for aarch64 and runs it under QEMU (it fails, not skips, without them on x86).
# mbrola, its voices, pico and RHVoice live in Debian's contrib and non-free components:
# when apt cannot find them, a sources file enabling those components for the
# system's own Debian release is added (/etc/apt/sources.list.d/denseshift-contrib.sources).
set -euo pipefail

SPEECH_PKGS="espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
mbrola mbrola-us1 mbrola-us2 mbrola-en1 libttspico-utils rhvoice rhvoice-english"
CROSS_PKGS="g++-aarch64-linux-gnu qemu-user"
EXTRA_SOURCES=/etc/apt/sources.list.d/denseshift-contrib.sources

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

have_speech() {
    command -v espeak-ng && command -v flite && command -v festival && command -v mbrola &&
    command -v pico2wave && command -v RHVoice-test &&
    [ -d /usr/share/festival/voices/english/kal_diphone ] &&
    [ -d /usr/share/festival/voices/english/ked_diphone ] &&
    [ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] &&
    [ -f /usr/share/mbrola/us1/us1 ] && [ -f /usr/share/mbrola/us2/us2 ] &&
    [ -f /usr/share/mbrola/en1/en1 ] &&
    [ -d /usr/share/RHVoice/voices/clb ]
}

have_cross() {
    command -v aarch64-linux-gnu-g++ && command -v qemu-aarch64
}

enable_contrib_non_free() {
    # the release codename and mirror the system already uses (bookworm, deb.debian.org)
    local codename mirror
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    mirror=$( { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
                  awk '{print $2}'
                grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'; } |
              grep -v security | head -n1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: contrib non-free\nSigned-By: %s\n' \
        "$mirror" "$codename" /usr/share/keyrings/debian-archive-keyring.gpg |
        $SUDO tee "$EXTRA_SOURCES" >/dev/null
}

if ! have_speech >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    if ! apt-cache show libttspico-utils >/dev/null 2>&1; then
        enable_contrib_non_free
        $SUDO apt-get update -qq
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $SPEECH_PKGS
fi
if ! have_cross >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $CROSS_PKGS
fi
