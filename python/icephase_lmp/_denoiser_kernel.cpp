// The message sums of one layer of the compact denoiser (compact_denoiser.py), for the offline pipeline on CPU.
//
// Why this exists: in TorchScript a layer builds its messages as (E, 8F) arrays (E edges, F = 32 features),
// one elementwise product at a time, and index_add_ sums them into the centres: with ~10 edges per oxygen
// each product streams megabytes through memory, and these passes were ~3/4 of a layer. Here each edge's
// messages are added straight into its centre's row, in registers, in one pass. The radial network, the
// linear maps and the gated update stay torch operations (matrix products, already fast). The result is the
// same sum in another order (tests/test_denoiser_kernel.py compares the offline network built on it with the
// TorchScript denoiser).
//
// Message layout (CompactLayer.messages): with w the edge's radial weights, h its neighbour's features after
// the first linear map (scalars hs, vectors hv), u the unit vector from centre to neighbour:
//   first layer   [w0 | w1 ux | w1 uy | w1 uz]                                    w = [w0 | w1], (E, 2F)
//   later layers  [w0 hs | w1 (hv.u) | w2 hs ux, w3 hvx | w2 hs uy, w3 hvy | w2 hs uz, w3 hvz]   (E, 4F)
// With `paired`, every edge also stands for its reverse (centre and neighbour swapped, u negated).
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "_kernels.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Indices = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

// Adds the messages of one directed edge (centre <- neighbour, unit vector u, radial weights we) into s.
// F > 0: the feature count known at compile time (the loops then vectorise); F = 0: taken from f_any.
template <int F>
inline void add_edge(const float *__restrict__ we, const float *__restrict__ hx, float ux, float uy, float uz,
                     int64_t neighbour, int f_any, bool first, float *__restrict__ s)
{
  const int f = F > 0 ? F : f_any;
  if (first) {    // every node holds the same embedding, folded into w
    for (int c = 0; c < f; ++c) {
      const float b = we[f + c];
      s[c] += we[c];
      s[f + c] += b * ux;
      s[2 * f + c] += b * uy;
      s[3 * f + c] += b * uz;
    }
    return;
  }
  const float *__restrict__ h = hx + neighbour * 4 * f;
  for (int c = 0; c < f; ++c) {
    const float hs = h[c], hvx = h[f + c], hvy = h[2 * f + c], hvz = h[3 * f + c];
    const float a = we[2 * f + c] * hs, v = we[3 * f + c];
    s[c] += we[c] * hs;
    s[f + c] += we[f + c] * (hvx * ux + hvy * uy + hvz * uz);
    s[2 * f + c] += a * ux;
    s[3 * f + c] += v * hvx;
    s[4 * f + c] += a * uy;
    s[5 * f + c] += v * hvy;
    s[6 * f + c] += a * uz;
    s[7 * f + c] += v * hvz;
  }
}

// Centre by centre: each centre's incoming edges (both directions of a pair when `paired`) are found through
// a counting sort, and their messages summed in a row-sized buffer that stays in L1, then written once.
// (Adding each edge straight into its centre's row of the output, in edge order, was memory-bound: rows
// of 1 kB at random places, ~0.9 ns per value.)
template <int F>
ICEPHASE_HOT void add_messages(const float *__restrict__ w, const float *__restrict__ hx,
                               const float *__restrict__ unit, const int64_t *src, const int64_t *dst,
                               int64_t n_edges, int64_t n_nodes, int f, bool first, bool paired,
                               float *__restrict__ out)
{
  const int w_width = first ? 2 * f : 4 * f, out_width = first ? 4 * f : 8 * f;
  // incoming[start[i] .. start[i + 1]): 2 e for edge e into its dst, 2 e + 1 for its reverse into its src
  std::vector<int64_t> start(n_nodes + 1, 0), incoming(paired ? 2 * n_edges : n_edges);
  for (int64_t e = 0; e < n_edges; ++e) {
    ++start[dst[e] + 1];
    if (paired) ++start[src[e] + 1];
  }
  for (int64_t i = 0; i < n_nodes; ++i) start[i + 1] += start[i];
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t e = 0; e < n_edges; ++e) {
    incoming[next[dst[e]]++] = 2 * e;
    if (paired) incoming[next[src[e]]++] = 2 * e + 1;
  }
  std::vector<float> row(out_width);
  for (int64_t i = 0; i < n_nodes; ++i) {
    std::fill(row.begin(), row.end(), 0.0f);
    for (int64_t k = start[i]; k < start[i + 1]; ++k) {
      const int64_t e = incoming[k] / 2;
      const bool reverse = incoming[k] % 2;
      const float sign = reverse ? -1.0f : 1.0f;
      const float *u = unit + 3 * e;
      add_edge<F>(w + e * w_width, hx, sign * u[0], sign * u[1], sign * u[2], reverse ? dst[e] : src[e], f, first,
               row.data());
    }
    std::copy(row.begin(), row.end(), out + i * out_width);
  }
}

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
  for (int64_t e = 0; e < n_edges; ++e)
    require(s[e] >= 0 && s[e] < n_nodes && d[e] >= 0 && d[e] < n_nodes, "an edge index is out of range");
  const int64_t width = first ? 4 * f : 8 * f;
  py::array_t<float> out({n_nodes, width});
  float *o = out.mutable_data();
  std::fill(o, o + n_nodes * width, 0.0f);
  {
    py::gil_scoped_release release;
    // the shipped denoisers have 32 features; other sizes take the generic loops
    auto run = f == 32 ? add_messages<32> : add_messages<0>;
    run(w.data(), first ? nullptr : hx.data(), unit.data(), s, d, n_edges, n_nodes, f, first, paired, o);
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
}
