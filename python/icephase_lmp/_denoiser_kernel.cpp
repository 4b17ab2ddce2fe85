// The message sums of one layer of the compact denoiser (compact_denoiser.py), for the offline pipeline on CPU.
//
// The algorithm (and why it exists) is src/compute_icephase/icephase_message_sums.h, shared with the LAMMPS
// compute's CPU layers; this file hands it numpy arrays, and likewise the radial weights from a table
// (icephase_radial_table.h). The linear maps and the gated update are numpy matrix products
// (denoiser_kernel.py). The sums are the same in another order (tests/test_denoiser_kernel.py compares the
// offline network built on them with the TorchScript denoiser).
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "icephase_message_sums.h"    // src/compute_icephase: the algorithm
#include "icephase_radial_table.h"    // src/compute_icephase: the radial weights from a table

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Indices = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

void require(bool ok, const std::string &what)
{
  if (!ok) throw std::invalid_argument("message_sums: " + what);
}

py::array_t<float> message_sums(Floats w, Floats hx, Floats unit, Indices src, Indices dst, int64_t n_nodes,
                                 int features, bool first, bool paired)
{
  const int64_t n_edges = src.shape(0);
  const int f = features;
  require(f > 0 && n_nodes >= 0, "features must be positive and n_nodes >= 0");
  require(src.ndim() == 1 && dst.ndim() == 1 && dst.shape(0) == n_edges, "src and dst must be (E,) alike");
  require(w.ndim() == 2 && w.shape(0) == n_edges && w.shape(1) == (first ? 2 : 4) * f, "w must be (E, 2F|4F)");
  require(unit.ndim() == 2 && unit.shape(0) == n_edges && unit.shape(1) == 3, "unit must be (E, 3)");
  require(first || (hx.ndim() == 2 && hx.shape(0) == n_nodes && hx.shape(1) == 4 * f), "hx must be (N, 4F)");
  const int64_t *s = src.data(), *d = dst.data();
  const std::string bad = icephase::check_edges(s, d, n_edges, n_nodes);
  require(bad.empty(), bad);
  const int64_t width = first ? 4 * f : 8 * f;
  py::array_t<float> out({n_nodes, width});
  float *o = out.mutable_data();
  std::fill(o, o + n_nodes * width, 0.0f);
  {
    py::gil_scoped_release release;
    const auto in = icephase::incoming_edges(s, d, n_edges, n_nodes, paired);
    icephase::message_sums(w.data(), first ? nullptr : hx.data(), unit.data(), s, d, in, 0, n_nodes, f, first, o);
  }
  return out;
}

py::array_t<float> radial_weights(Floats table, Floats lengths, float r_max)
{
  require(table.ndim() == 2 && table.shape(0) >= icephase::RADIAL_TABLE_MIN_POINTS && table.shape(1) > 0,
          "the table must be (points >= 5, width)");
  require(lengths.ndim() == 1, "lengths must be (E,)");
  require(r_max > 0.0f, "r_max must be positive");
  const int64_t n_edges = lengths.shape(0), width = table.shape(1);
  py::array_t<float> out({n_edges, width});
  {
    py::gil_scoped_release release;
    icephase::radial_weights(table.data(), table.shape(0), (int) width, r_max, lengths.data(), n_edges,
                             out.mutable_data());
  }
  return out;
}

}    // namespace

PYBIND11_MODULE(_denoiser_kernel, m)
{
  m.doc() = "The summed messages of one compact-denoiser layer (see compact_denoiser.py and denoiser_kernel.py)";
  m.def("message_sums", &message_sums, py::arg("w"), py::arg("hx"), py::arg("unit"), py::arg("src"), py::arg("dst"),
        py::arg("n_nodes"), py::arg("features"), py::arg("first"), py::arg("paired"),
        "Each centre's summed messages, (n_nodes, 4F) in the first layer, else (n_nodes, 8F).");
  m.def("radial_weights", &radial_weights, py::arg("table"), py::arg("lengths"), py::arg("r_max"),
        "Each edge's radial weights (E, width), interpolated in a layer's table (denoiser_kernel.radial_tables).");
}
