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
  if (!ok) throw std::invalid_argument("_denoiser_kernel: " + what);
}

using Output = py::array_t<float, py::array::c_style>;    // written in place: float32, C order, no conversion

// an output array of exactly this shape, float32 and C-contiguous (else a conversion would write to a copy)
void require_output(const py::array &a, int64_t rows, int64_t cols, const std::string &name)
{
  require(py::isinstance<Output>(a) && (a.flags() & py::array::c_style) && a.writeable() && a.ndim() == 2 &&
              a.shape(0) == rows && a.shape(1) == cols,
          name + " must be a writable C-contiguous float32 array of shape (" + std::to_string(rows) + ", " +
              std::to_string(cols) + ")");
}

// The checks and the call shared by the two entry points: `w_rows`/`w_cols` is the shape the weights have
// (stored, or as the table gives them per edge), `sums` runs icephase::message_sums with them.
template <class Sums>
void checked_sums(int64_t w_rows, int64_t w_cols, Floats hs, Floats hv, Floats unit, Indices src, Indices dst,
                  int64_t n_nodes, int features, bool first, bool paired, py::array out_s, py::array out_v,
                  const Sums &sums)
{
  const int64_t n_edges = src.shape(0);
  const int f = features;
  require(f > 0 && n_nodes >= 0, "features must be positive and n_nodes >= 0");
  require(src.ndim() == 1 && dst.ndim() == 1 && dst.shape(0) == n_edges, "src and dst must be (E,) alike");
  require(w_rows == n_edges && w_cols == (first ? 2 : 4) * f, "w must be (E, 2F|4F)");
  require(unit.ndim() == 2 && unit.shape(0) == n_edges && unit.shape(1) == 3, "unit must be (E, 3)");
  require(first || (hs.ndim() == 2 && hs.shape(0) == n_nodes && hs.shape(1) == f), "hs must be (N, F)");
  require(first || (hv.ndim() == 2 && hv.shape(0) == 3 * n_nodes && hv.shape(1) == f), "hv must be (3N, F)");
  const int64_t width_s = first ? f : 2 * f;
  require_output(out_s, n_nodes, width_s, "out_s");
  require_output(out_v, 3 * n_nodes, width_s, "out_v");
  const int64_t *s = src.data(), *d = dst.data();
  const std::string bad = icephase::check_edges(s, d, n_edges, n_nodes);
  require(bad.empty(), bad);
  float *os = static_cast<float *>(out_s.mutable_data()), *ov = static_cast<float *>(out_v.mutable_data());
  {
    py::gil_scoped_release release;
    const auto in = icephase::incoming_edges(s, d, n_edges, n_nodes, paired);
    sums(first ? nullptr : hs.data(), first ? nullptr : hv.data(), unit.data(), s, d, in, os, ov);
  }
}

void message_sums(Floats w, Floats hs, Floats hv, Floats unit, Indices src, Indices dst, int64_t n_nodes, int features,
                  bool first, bool paired, py::array out_s, py::array out_v)
{
  require(w.ndim() == 2, "w must be (E, 2F|4F)");
  checked_sums(w.shape(0), w.shape(1), hs, hv, unit, src, dst, n_nodes, features, first, paired, out_s, out_v,
               [&](const float *h_s, const float *h_v, const float *u, const int64_t *s, const int64_t *d,
                   const icephase::IncomingEdges &in, float *os, float *ov) {
                 icephase::message_sums(w.data(), h_s, h_v, u, s, d, in, 0, n_nodes, features, first, os, ov);
               });
}

void check_table(const Floats &table, float r_max)
{
  require(table.ndim() == 2 && table.shape(0) >= icephase::RADIAL_TABLE_MIN_POINTS && table.shape(1) > 0,
          "the table must be (points >= 5, width)");
  require(r_max > 0.0f, "r_max must be positive");
}

void tabulated_message_sums(Floats table, Floats lengths, float r_max, Floats hs, Floats hv, Floats unit,
                            Indices src, Indices dst, int64_t n_nodes, int features, bool first, bool paired,
                            py::array out_s, py::array out_v)
{
  check_table(table, r_max);
  require(lengths.ndim() == 1, "lengths must be (E,)");
  const icephase::TabulatedWeights weights{table.data(), table.shape(0), (int) table.shape(1), r_max, lengths.data()};
  checked_sums(lengths.shape(0), table.shape(1), hs, hv, unit, src, dst, n_nodes, features, first, paired, out_s,
               out_v,
               [&](const float *h_s, const float *h_v, const float *u, const int64_t *s, const int64_t *d,
                   const icephase::IncomingEdges &in, float *os, float *ov) {
                 icephase::message_sums_with(weights, h_s, h_v, u, s, d, in, 0, n_nodes, features, first, os, ov);
               });
}

void radial_weights(Floats table, Floats lengths, float r_max, py::array out)
{
  check_table(table, r_max);
  require(lengths.ndim() == 1, "lengths must be (E,)");
  const int64_t n_edges = lengths.shape(0), width = table.shape(1);
  require_output(out, n_edges, width, "out");
  float *o = static_cast<float *>(out.mutable_data());
  {
    py::gil_scoped_release release;
    icephase::radial_weights(table.data(), table.shape(0), (int) width, r_max, lengths.data(), n_edges, o);
  }
}

}    // namespace

PYBIND11_MODULE(_denoiser_kernel, m)
{
  m.doc() = "The summed messages of one compact-denoiser layer (see compact_denoiser.py and denoiser_kernel.py)";
  m.def("message_sums", &message_sums, py::arg("w"), py::arg("hs"), py::arg("hv"), py::arg("unit"), py::arg("src"),
        py::arg("dst"), py::arg("n_nodes"), py::arg("features"), py::arg("first"), py::arg("paired"), py::arg("out_s"),
        py::arg("out_v"),
        "Each centre's summed messages into out_s (n_nodes, S) and out_v (3 n_nodes, S), S = F in the first layer, "
        "else 2F (icephase_message_sums.h); hs (n_nodes, F) and hv (3 n_nodes, F) are unused in the first layer.");
  m.def("tabulated_message_sums", &tabulated_message_sums, py::arg("table"), py::arg("lengths"), py::arg("r_max"),
        py::arg("hs"), py::arg("hv"), py::arg("unit"), py::arg("src"), py::arg("dst"), py::arg("n_nodes"),
        py::arg("features"), py::arg("first"), py::arg("paired"), py::arg("out_s"), py::arg("out_v"),
        "message_sums with each edge's radial weights interpolated in the layer's table where they are used "
        "(radial_weights's numbers, none stored).");
  m.def("radial_weights", &radial_weights, py::arg("table"), py::arg("lengths"), py::arg("r_max"), py::arg("out"),
        "Each edge's radial weights into out (E, width), interpolated in a layer's table "
        "(denoiser_kernel.radial_tables).");
}
