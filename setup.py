"""Build of the compiled Python modules (everything else is in pyproject.toml): icephase_lmp._soap_kernel (SOAP
and neighbour search) and icephase_lmp._denoiser_kernel (the compact denoiser's message sums on CPU).

Both are optional: without a C++ compiler the install goes on; icephase_lmp.soap then computes the same
descriptor with DScribe's extension (in double precision; the same labels), 3.5-8.6x more slowly
(docs/validation.md, "Cheaper per call" and "ninth session"), and the denoiser runs as TorchScript alone
(docs/validation.md, "sixth session").
"""

from pybind11.setup_helpers import Pybind11Extension
from setuptools import setup

#: the headers the modules share with the LAMMPS plugin (ICEPHASE_HOT, the message sums, the radial table)
HEADERS = ("icephase_message_sums.h", "icephase_radial_table.h")

setup(
    ext_modules=[
        Pybind11Extension(
            f"icephase_lmp.{name}",
            [f"python/icephase_lmp/{name}.cpp"],
            depends=[f"src/compute_icephase/{header}" for header in HEADERS],
            include_dirs=["src/compute_icephase"],
            cxx_std=17,
            extra_compile_args=["-O3"],
            optional=True,
        )
        for name in ("_soap_kernel", "_denoiser_kernel")
    ]
)
