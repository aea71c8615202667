"""tools/system_deps.sh decides what to install from what apt and dpkg say.

Each test runs the real script against a fake `apt-get`, `apt-cache`, `dpkg-query` and
`sudo` on PATH that answer like a Debian machine in a given state: which packages are
installed, which are in main, which only in contrib/non-free, and which apt knows by
name only.  No root, no network, nothing on the real system is touched.
"""
import os
import subprocess
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "system_deps.sh")

# One fake serves all four commands (it looks at the name it was called by).
# State lives in $FAKE_APT: installed, main, contrib, known (one package a line),
# lists_contrib (exists once `apt-get update` has read a contrib sources file), log.
FAKE = textwrap.dedent(r"""
    #!/usr/bin/env bash
    s="$FAKE_APT"
    cmd=$(basename "$0")
    echo "$cmd $*" >> "$s/log"
    listed() { grep -qxF "$1" "$s/$2" 2>/dev/null; }
    candidate() {
        listed "$1" main && return 0
        listed "$1" contrib && [ -e "$s/lists_contrib" ]
    }
    case "$cmd" in
      sudo) exec "$@" ;;
      dpkg-query)
        p="${@: -1}"
        if listed "$p" installed; then printf installed; else
            echo "dpkg-query: no packages found matching $p" >&2; exit 1; fi ;;
      apt-cache)
        [ "$1" = policy ] || exit 2
        p="$2"
        if candidate "$p"; then printf '%s:\n  Installed: (none)\n  Candidate: 1.0-1\n' "$p"
        elif listed "$p" known || listed "$p" contrib; then
            printf '%s:\n  Installed: (none)\n  Candidate: (none)\n' "$p"; fi ;;
      apt-get)
        case "$1" in
          update) grep -qs contrib "$DENSESHIFT_APT_SOURCES" && touch "$s/lists_contrib"; exit 0 ;;
          install)
            shift
            for p in "$@"; do
              case "$p" in -*) continue ;; esac
              candidate "$p" || { echo "E: Package '$p' has no installation candidate" >&2; exit 100; }
            done
            for p in "$@"; do case "$p" in -*) ;; *) echo "$p" >> "$s/installed" ;; esac; done ;;
          *) exit 2 ;;
        esac ;;
    esac
""").lstrip()


@pytest.fixture
def machine(tmp_path):
    """A fake Debian machine; returns a function that runs the script against it."""
    state, bin_dir = tmp_path / "state", tmp_path / "bin"
    state.mkdir()
    bin_dir.mkdir()
    for name in ("apt-get", "apt-cache", "dpkg-query", "sudo"):
        path = bin_dir / name
        path.write_text(FAKE)
        path.chmod(0o755)
    sources = tmp_path / "sources.list.d" / "denseshift-contrib.sources"
    sources.parent.mkdir()

    def setup(installed=(), main=(), contrib=(), known=(), contrib_enabled=False):
        for name, pkgs in (("installed", installed), ("main", main),
                           ("contrib", contrib), ("known", known)):
            (state / name).write_text("".join(p + "\n" for p in pkgs))
        if contrib_enabled:
            sources.write_text("Types: deb\nComponents: contrib non-free\n")
            (state / "lists_contrib").touch()

    def run(pkgs):
        env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                   FAKE_APT=str(state), DENSESHIFT_APT_SOURCES=str(sources),
                   DENSESHIFT_SYSTEM_PKGS=" ".join(pkgs))
        proc = subprocess.run(["bash", SCRIPT], env=env, capture_output=True, text=True,
                              timeout=60)
        log = (state / "log").read_text().splitlines() if (state / "log").exists() else []
        installed = (state / "installed").read_text().split()
        return proc, [line for line in log if not line.startswith("dpkg-query")], installed

    run.setup, run.sources = setup, sources
    return run


def test_everything_installed_asks_apt_nothing(machine):
    machine.setup(installed=["espeak-ng", "mbrola"], main=["espeak-ng"], contrib=["mbrola"])
    proc, log, _ = machine(["espeak-ng", "mbrola"])
    assert proc.returncode == 0, proc.stderr
    assert log == []
    assert not machine.sources.exists()


def test_machine_without_contrib_enables_it_and_installs(machine):
    # mbrola: apt knows the name (Candidate: (none)) until contrib is enabled, which is
    # exactly where `apt-cache show` used to succeed and the install then failed.
    machine.setup(installed=["flite"], main=["espeak-ng", "flite"],
                  contrib=["mbrola", "libttspico-utils"])
    proc, log, installed = machine(["espeak-ng", "flite", "mbrola", "libttspico-utils"])
    assert proc.returncode == 0, proc.stderr
    text = machine.sources.read_text()
    assert "Components: contrib non-free" in text and "Suites: " in text
    assert [line.split()[1] for line in log if line.startswith("apt-get")] == \
        ["update", "update", "install"]
    assert sorted(installed) == ["espeak-ng", "flite", "libttspico-utils", "mbrola"]
    assert "flite" not in log[-1]  # only what was missing is installed


def test_machine_with_contrib_installs_without_new_sources(machine):
    machine.setup(main=["espeak-ng"], contrib=["mbrola"], contrib_enabled=True)
    machine.sources.write_text("# the user's own\nComponents: contrib non-free\n")
    proc, log, installed = machine(["espeak-ng", "mbrola"])
    assert proc.returncode == 0, proc.stderr
    assert machine.sources.read_text().startswith("# the user's own")
    assert [line.split()[1] for line in log if line.startswith("apt-get")] == \
        ["update", "install"]
    assert sorted(installed) == ["espeak-ng", "mbrola"]


def test_all_in_main_needs_no_contrib(machine):
    machine.setup(main=["espeak-ng", "qemu-user"])
    proc, log, installed = machine(["espeak-ng", "qemu-user"])
    assert proc.returncode == 0, proc.stderr
    assert not machine.sources.exists()
    assert sorted(installed) == ["espeak-ng", "qemu-user"]


@pytest.mark.parametrize("contrib_enabled", [False, True])
def test_package_that_cannot_be_had_is_one_clear_error(machine, contrib_enabled):
    machine.setup(main=["espeak-ng"], contrib=["mbrola"], known=["ghost-voice"],
                  contrib_enabled=contrib_enabled)
    proc, log, installed = machine(["espeak-ng", "mbrola", "ghost-voice", "no-such-pkg"])
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert errors[-1].startswith("system_deps: no installable candidate for: "
                                 "ghost-voice no-such-pkg ")
    assert not [line for line in log if line.startswith("apt-get install")]
    assert installed == []  # nothing half-installed

