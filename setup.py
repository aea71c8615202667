"""Build of the native DenseShift kernel (metadata lives in setup.cfg).

`pip install --no-build-isolation -e '.[test]'` compiles denseshift_speech._C from
denseshift_speech/kernels/csrc/*.cpp with the torch in the environment.  Each ISA file
selects its instruction set with `#pragma GCC target`, so no per-file flags are needed
and dispatch happens at run time.  If the compiler or torch headers are missing the
build is skipped with a warning and the package uses the pure-PyTorch reference
(denseshift_speech.kernels warns about it at import).
"""
import glob
import os
import sys

from setuptools import setup

ext_modules, cmdclass = [], {}
try:
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except Exception as err:  # torch missing: pure-Python install
    print(f"warning: torch not importable ({err}); skipping the native DenseShift kernel",
          file=sys.stderr)
else:
    here = os.path.dirname(os.path.abspath(__file__))
    # csrc/*.cpp: kernels, feature detection, torch glue (csrc/tests/ holds the standalone
    # driver, not part of the extension)
    sources = sorted(glob.glob(os.path.join("denseshift_speech", "kernels", "csrc", "*.cpp")))

    class OptionalBuildExtension(BuildExtension):
        """Build the kernel if possible; never fail the install because of it."""

        def build_extensions(self):
            try:
                super().build_extensions()
            except Exception as err:  # compiler missing, header mismatch, ...
                print(f"warning: building the native DenseShift kernel failed ({err}); "
                      "the pure-PyTorch reference will be used", file=sys.stderr)

        def copy_extensions_to_source(self):
            try:
                super().copy_extensions_to_source()
            except Exception as err:
                print(f"warning: native DenseShift kernel not installed ({err})", file=sys.stderr)

    ext_modules = [CppExtension(
        "denseshift_speech._C", sources,
        extra_compile_args=["-O3", "-g0", "-fno-math-errno", "-ffp-contract=off", "-fopenmp", "-Wno-maybe-uninitialized",
                            "-Wno-uninitialized"],
        extra_link_args=["-fopenmp"],
    )]
    cmdclass = {"build_ext": OptionalBuildExtension.with_options(no_python_abi_suffix=False)}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
