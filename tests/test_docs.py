"""The documentation names files that exist.

Every repository path that README.md and docs/**/*.md name must exist; every
``#include "..."`` and file name in the C++ sources' comments must name a file of the
repository, and a ``*_impl.h`` must be included by the files its comment says include it;
every ``docs/<name>.md`` that code, hparams, recipes, tools or the Makefile name must
exist.  A renamed or deleted file then fails here instead of leaving a doc pointing at
nothing.

What counts as a named path in a markdown file (:func:`doc_paths`):

1. Candidates: the text of each inline code span (`` `...` `` on one line) and the target
   of each markdown link (``[text](target)``, without its ``#anchor``), outside fenced
   code blocks.  A trailing ``::symbol`` (a name inside a file, as in
   ``kernels/layout.py::pack_dense``) is dropped.
2. A candidate is a path when it is one word of ``A-Z a-z 0-9 _ . - / *`` (so command
   lines, expressions and placeholders such as ``<fp32 run folder>`` are not), every
   ``/``-separated part starts with a letter, ``_``, ``.`` or ``*`` (so fractions such as
   ``Kp/64`` are not), and it either contains a ``/`` or ends in one of
   :data:`SOURCE_EXTENSIONS`.  Dotted Python names (``core.quant``) are not paths, nor
   bare names with other extensions (``results.json``, ``train_log.txt``, ``model.dsp``:
   files that runs write); with a folder (``tests/data/latents_v1.pt``) they are.
3. Left out: URLs (``scheme://``, ``mailto:``); placeholders (``path/to/...``);
   paths that runs and set-up create (:data:`CREATED`: ``results/...``, ``save/...``,
   ``.venv/``, and under ``data/`` everything but source files, which are the package's
   ``data/`` modules); a few folder names inside the generated corpora
   (:data:`CORPUS_FOLDERS`).
4. A path exists when it names a file or folder (with or without the trailing ``/``)
   under one of :data:`ROOTS` -- the repository root, the package, its ``kernels/`` and
   ``kernels/csrc/`` (docs name files relative to the package and the kernel sources,
   e.g. ``core/quant.py``, ``csrc/tests/driver.cpp``, ``core/tiled.h``); a bare file name
   (no ``/``) exists when some file of the repository has that name; a glob (``*``)
   must match at least one.  An absolute path points outside the repository and fails,
   except under the system folders of :data:`SYSTEM_PREFIXES`.
"""
import fnmatch
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOTS = ("", "denseshift_speech/", "denseshift_speech/kernels/", "denseshift_speech/kernels/csrc/")
SOURCE_EXTENSIONS = (".py", ".yaml", ".yml", ".cpp", ".h", ".md", ".sh", ".toml", ".cfg")
CREATED = ("results/", "save/", ".venv/")
CORPUS_FOLDERS = {"_augmentation_/", "_background_noise_/", "_other_engine_/"}  # in data/<corpus>/
SYSTEM_PREFIXES = ("/usr/", "/etc/", "/proc/", "/dev/", "/tmp/")
# folders of the checkout that are not the repository's files (outputs, tools' caches)
SKIP_DIRS = {".git", ".venv", "build", "dist", "results", "data", "__pycache__", ".pytest_cache"}

PATH_WORD = re.compile(r"[A-Za-z0-9_.*/-]+")
PART = re.compile(r"[A-Za-z_.*]")


def repo_files() -> set:
    """Relative paths of the repository's files and folders (outputs and caches skipped)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel = os.path.relpath(dirpath, ROOT)
        top = rel == "."
        dirnames[:] = [d for d in dirnames
                       if not (d in SKIP_DIRS and top) and d not in (".git", "__pycache__")
                       and not d.endswith(".egg-info")]
        prefix = "" if top else rel.replace(os.sep, "/") + "/"
        out.update(prefix + d + "/" for d in dirnames)
        out.update(prefix + f for f in filenames)
    return out


FILES = repo_files()
BASENAMES = {p.rstrip("/").rsplit("/", 1)[-1] for p in FILES}


def markdown_files() -> list:
    return ["README.md"] + sorted(os.path.relpath(p, ROOT).replace(os.sep, "/") for p in
                                  glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))


def candidates(text: str):
    """(line number, candidate) for each inline code span and link target outside fences."""
    in_fence = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        for m in re.finditer(r"`([^`]+)`", line):
            yield n, m.group(1).strip()
        for m in re.finditer(r"\]\(([^)\s]+)\)", line):
            yield n, m.group(1).split("#", 1)[0]


def is_path(c: str) -> bool:
    c = c.split("::", 1)[0]
    if not c or "://" in c or c.startswith("mailto:"):
        return False
    body = c[1:] if c.startswith("/") else c
    if not PATH_WORD.fullmatch(body):
        return False
    if not all(PART.match(part) for part in body.rstrip("/").split("/")):
        return False
    return "/" in c or c.endswith(SOURCE_EXTENSIONS)


def skipped(c: str) -> bool:
    """Placeholders and the paths runs create (rule 3)."""
    c = c[2:] if c.startswith("./") else c
    if "path/to/" in c or c in CORPUS_FOLDERS:
        return True
    if c.startswith(CREATED) or c + "/" in CREATED:
        return True
    return c.startswith("data/") and not c.endswith(SOURCE_EXTENSIONS)


def exists(c: str) -> bool:
    """Rule 4."""
    c = c.split("::", 1)[0]
    if c.startswith("/"):
        return c.startswith(SYSTEM_PREFIXES)
    c = c[2:] if c.startswith("./") else c
    if "/" not in c.rstrip("/"):
        if "*" in c:
            return any(fnmatch.fnmatch(b, c.rstrip("/")) for b in BASENAMES)
        if not c.endswith("/"):
            return c in BASENAMES
    for root in ROOTS:
        p = root + c
        if "*" in p:
            if any(fnmatch.fnmatch(f.rstrip("/"), p.rstrip("/")) for f in FILES):
                return True
        elif p in FILES or p.rstrip("/") in FILES or p.rstrip("/") + "/" in FILES:
            return True
    return False


def doc_paths(text: str):
    """(line, path) of every repository path a markdown text names (rules 1-3)."""
    for n, c in candidates(text):
        if is_path(c) and not skipped(c):
            yield n, c


@pytest.mark.parametrize("doc", markdown_files())
def test_every_path_a_doc_names_exists(doc):
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        text = f.read()
    missing = [f"{doc}:{n}: `{c}`" for n, c in doc_paths(text) if not exists(c)]
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def test_the_rule_finds_paths_and_leaves_out_the_rest():
    """The extraction rule on examples: what counts, and what a missing file does."""
    text = "\n".join([
        "`kernels/layout.py::pack_dense` and `hparams/*_ds.yaml`, `quant.py`, `core/`",
        "[method](docs/METHOD.md#1-the-numbers) [paper](https://arxiv.org/abs/2208.09708)",
        "`deploy.py` `kernels/csrc/ops.cpp` `/work/shared/METHOD.md`",
        "`--init_from_fp=<fp32 run>` `Kp/64` `core.quant` `results/demo/report.md`",
        "`data/synth_librispeech` `data/grammar.py` `path/to/LibriSpeech` `model.dsp`",
        "```", "`not/in/a/fence.py`", "```",
    ])
    found = [c for _, c in doc_paths(text)]
    assert found == ["kernels/layout.py::pack_dense", "hparams/*_ds.yaml", "quant.py", "core/",
                     "docs/METHOD.md", "deploy.py", "kernels/csrc/ops.cpp",
                     "/work/shared/METHOD.md", "data/grammar.py"]
    assert [c for c in found if not exists(c)] == ["deploy.py", "kernels/csrc/ops.cpp",
                                                   "/work/shared/METHOD.md"]


# ------------------------------------------------------------- C++ sources ------------

CSRC = os.path.join(ROOT, "denseshift_speech", "kernels", "csrc")
# files named in comments: a word ending in a source extension, optionally with folders
COMMENT_FILE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[A-Za-z_][\w-]*\.(?:py|cpp|h|yaml|md|sh))\b")


def csrc_files() -> list:
    return sorted(os.path.relpath(p, ROOT).replace(os.sep, "/") for p in
                  glob.glob(os.path.join(CSRC, "**", "*.*"), recursive=True)
                  if p.endswith((".cpp", ".h")))


def comments(text: str) -> list:
    """(line number, text) of each ``//`` comment (string literals are not comments)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        code = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
        if "//" in code:
            out.append((n, code.split("//", 1)[1]))
    return out


@pytest.mark.parametrize("src", csrc_files())
def test_csrc_includes_and_comments_name_existing_files(src):
    """A quoted ``#include`` resolves beside the file or in csrc/core (the build's include
    path); a file name in a ``//`` comment (a word ending in .py .cpp .h .yaml .md .sh,
    with or without folders) exists by rule 4 above."""
    path = os.path.join(ROOT, src)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    here = os.path.dirname(path)
    bad = []
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
        # setup.py's include path is csrc/core; a quoted include is relative to the file
        if m and not any(os.path.isfile(os.path.join(d, m.group(1)))
                         for d in (here, os.path.join(CSRC, "core"))):
            bad.append(f"{src}:{n}: #include \"{m.group(1)}\"")
    for n, comment in comments(text):
        for name in COMMENT_FILE.findall(comment):
            if not exists(name):
                bad.append(f"{src}:{n}: comment names {name}")
    assert not bad, "\n".join(bad)


def test_impl_headers_name_the_files_that_include_them():
    """A ``*_impl.h`` loop body's leading comment names the files that include it (the
    only files it names): those files must."""
    includers = {}
    for src in csrc_files():
        with open(os.path.join(ROOT, src), encoding="utf-8") as f:
            for inc in re.findall(r'#\s*include\s+"([^"]+)"', f.read()):
                includers.setdefault(os.path.basename(inc), set()).add(os.path.basename(src))
    checked = 0
    for src in csrc_files():
        if not src.endswith("_impl.h"):
            continue
        with open(os.path.join(ROOT, src), encoding="utf-8") as f:
            head = []
            for line in f:
                if not line.startswith("//"):
                    break
                head.append(line)
        head = "".join(head)
        named = set(re.findall(r"[\w-]+\.(?:cpp|h)\b", head)) - {os.path.basename(src)}
        wrong = named - includers.get(os.path.basename(src), set())
        assert not wrong, f"{src} names {sorted(wrong)} as including it; they do not"
        checked += 1
    assert checked >= 4


# ------------------------------------------------ docs named from code and hparams -----

DOC_REF = re.compile(r"(?<![\w/.-])(docs/[\w./-]+\.md)\b")


def test_docs_named_in_code_and_hparams_exist():
    """Every ``docs/<name>.md`` that a source file, hparams file, recipe, tool or the Makefile
    names (the results files code comments point to, docs/METHOD.md, ...) exists."""
    bad = []
    for top in ("denseshift_speech", "hparams", "recipes", "tools", "tests", "Makefile", "setup.py"):
        paths = [os.path.join(ROOT, top)] if os.path.isfile(os.path.join(ROOT, top)) else \
            glob.glob(os.path.join(ROOT, top, "**", "*.*"), recursive=True)
        for path in paths:
            if not path.endswith((".py", ".yaml", ".cpp", ".h", ".sh", "Makefile")):
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                for n, line in enumerate(f, 1):
                    for ref in DOC_REF.findall(line):
                        if not os.path.isfile(os.path.join(ROOT, ref)):
                            bad.append(f"{os.path.relpath(path, ROOT)}:{n}: {ref}")
    assert not bad, "\n".join(bad)


def test_every_results_file_is_in_the_index():
    folder = os.path.join(ROOT, "docs", "results")
    index = open(os.path.join(folder, "README.md")).read()
    files = sorted(f for f in os.listdir(folder) if f.endswith(".md") and f != "README.md")
    assert [f for f in files if f"]({f})" not in index] == []
