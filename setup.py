"""Build of the one compiled Python module, icephase_lmp._soap_kernel (everything else is in pyproject.toml).

The module is optional: without a C++ compiler the install goes on and icephase_lmp.soap computes the same
features with DScribe's extension, 3.5-3.8x more slowly (docs/validation.md, "Cheaper per call").
"""

from pybind11.setup_helpers import Pybind11Extension
from setuptools import setup

setup(
    ext_modules=[
        Pybind11Extension(
            "icephase_lmp._soap_kernel",
            ["python/icephase_lmp/_soap_kernel.cpp"],
            cxx_std=17,
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
