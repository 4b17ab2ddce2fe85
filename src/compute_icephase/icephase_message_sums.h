/* -*- c++ -*- ----------------------------------------------------------
   icephase: the message sums of one layer of the compact denoiser
   (python/icephase_lmp/compact_denoiser.py), on CPU.
   SPDX-License-Identifier: GPL-2.0-or-later

   Plain C++ (no LAMMPS, torch or Python types), compiled into two places:
   the offline pipeline's numpy denoiser (python/icephase_lmp/
   _denoiser_kernel.cpp) and the LAMMPS compute's CPU layers
   (icephase_compact_layers.cpp). One algorithm, one copy.

   Why: in TorchScript a layer builds its messages as (E, 8F) arrays (E
   edges, F = 32 features), one elementwise product at a time, and
   index_add_ sums them into the centres; with ~10 edges per oxygen each
   product streams megabytes through memory, and those passes were ~3/4
   of a layer. Here each centre's incoming messages are summed in a
   row-sized buffer that stays in L1, then written once. (Adding each edge
   straight into its centre's row of the output, in edge order, was
   memory-bound: rows of 1 kB at random places.)

   Message layout (CompactLayer.messages): with w the edge's radial
   weights, h its neighbour's features after the first linear map
   (scalars hs, vectors hv), u the unit vector from centre to neighbour:
     first layer   [w0 | w1 ux | w1 uy | w1 uz]                w = [w0 | w1], (E, 2F)
     later layers  [w0 hs | w1 (hv.u) | w2 hs ux, w3 hvx | w2 hs uy, w3 hvy
                    | w2 hs uz, w3 hvz]                        w = (E, 4F)
   With `paired`, every edge also stands for its reverse (centre and
   neighbour swapped, u negated). A centre's sum is written as two parts:
   its first quarter, the scalar messages, to a row of out_s (N, S), and
   the x, y, z vector messages to three consecutive rows of out_v (3N, S),
   S = F in the first layer, else 2F: the shapes the node-wise linear maps
   take, so that no caller has to copy them apart. The neighbour features
   come the same way, hs (N, F) and hv (3N, F).
------------------------------------------------------------------------- */

#ifndef ICEPHASE_MESSAGE_SUMS_H
#define ICEPHASE_MESSAGE_SUMS_H

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

// The hot loops are compiled twice, plain x86-64 and with AVX+FMA, and the loader picks the one this CPU
// runs (GCC function multiversioning); on other compilers or CPUs there is one portable version. (Also
// used by python/icephase_lmp/_soap_kernel.cpp.)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ICEPHASE_HOT __attribute__((target_clones("fma", "default")))
#else
#define ICEPHASE_HOT
#endif

namespace icephase {

// Each centre's incoming edges in compressed rows: incoming[start[i] .. start[i + 1]) holds 2 e for an edge
// e into its dst (i), and 2 e + 1 for its reverse into its src (paired only). A counting sort, in edge order.
struct IncomingEdges {
  std::vector<int64_t> start, incoming;
};

inline IncomingEdges incoming_edges(const int64_t *src, const int64_t *dst, int64_t n_edges, int64_t n_nodes,
                                    bool paired)
{
  IncomingEdges in;
  in.start.assign(n_nodes + 1, 0);
  in.incoming.resize(paired ? 2 * n_edges : n_edges);
  for (int64_t e = 0; e < n_edges; ++e) {
    ++in.start[dst[e] + 1];
    if (paired) ++in.start[src[e] + 1];
  }
  for (int64_t i = 0; i < n_nodes; ++i) in.start[i + 1] += in.start[i];
  std::vector<int64_t> next(in.start.begin(), in.start.end() - 1);
  for (int64_t e = 0; e < n_edges; ++e) {
    in.incoming[next[dst[e]]++] = 2 * e;
    if (paired) in.incoming[next[src[e]]++] = 2 * e + 1;
  }
  return in;
}

// "" if every index lies in [0, n_nodes), else what is wrong (the offline kernel's input comes from Python).
inline std::string check_edges(const int64_t *src, const int64_t *dst, int64_t n_edges, int64_t n_nodes)
{
  for (int64_t e = 0; e < n_edges; ++e)
    if (src[e] < 0 || src[e] >= n_nodes || dst[e] < 0 || dst[e] >= n_nodes) return "an edge index is out of range";
  return "";
}

// Adds the messages of one directed edge (centre <- neighbour, unit vector u, radial weights we) into s.
// F > 0: the feature count known at compile time (the loops then vectorise); F = 0: taken from f_any.
template <int F>
inline void add_edge(const float *__restrict__ we, const float *__restrict__ hs_all, const float *__restrict__ hv_all,
                     float ux, float uy, float uz, int64_t neighbour, int f_any, bool first, float *__restrict__ s)
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
  const float *__restrict__ h_s = hs_all + neighbour * f, *__restrict__ h_v = hv_all + neighbour * 3 * f;
  for (int c = 0; c < f; ++c) {
    const float hs = h_s[c], hvx = h_v[c], hvy = h_v[f + c], hvz = h_v[2 * f + c];
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

// Each edge's radial weights read from an array w (E, width), computed beforehand for every edge.
struct StoredWeights {
  const float *w;
  int64_t width;
  const float *operator()(int64_t e, float *) const { return w + e * width; }
};

// Nodes [begin, end) of the summed messages, out_s (n_nodes, S) and out_v (3 n_nodes, S), S = F in the
// first layer, else 2F: `weights(e, scratch)` gives edge e's radial weights (2F|4F; StoredWeights, or
// computed into the scratch row: icephase_radial_table.h's TabulatedWeights), hs (n_nodes, F) and hv
// (3 n_nodes, F) the neighbour features (unused in the first layer), unit (E, 3). Nodes are independent,
// so disjoint ranges may run on different threads.
template <int F, class Weights>
ICEPHASE_HOT void add_messages(const Weights &weights, const float *__restrict__ hs, const float *__restrict__ hv,
                               const float *__restrict__ unit, const int64_t *src, const int64_t *dst,
                               const IncomingEdges &in, int64_t begin, int64_t end, int f, bool first,
                               float *__restrict__ out_s, float *__restrict__ out_v)
{
  const int w_width = first ? 2 * f : 4 * f, width_s = first ? f : 2 * f;
  std::vector<float> row(4 * width_s), scratch(w_width);
  for (int64_t i = begin; i < end; ++i) {
    std::fill(row.begin(), row.end(), 0.0f);
    for (int64_t k = in.start[i]; k < in.start[i + 1]; ++k) {
      const int64_t e = in.incoming[k] / 2;
      const bool reverse = in.incoming[k] % 2;
      const float sign = reverse ? -1.0f : 1.0f;
      const float *u = unit + 3 * e;
      add_edge<F>(weights(e, scratch.data()), hs, hv, sign * u[0], sign * u[1], sign * u[2],
                  reverse ? dst[e] : src[e], f, first, row.data());
    }
    std::copy(row.begin(), row.begin() + width_s, out_s + i * width_s);
    std::copy(row.begin() + width_s, row.end(), out_v + i * 3 * width_s);
  }
}

// add_messages with the feature count as a compile-time constant where it is the shipped denoisers' 32.
template <class Weights>
inline void message_sums_with(const Weights &weights, const float *hs, const float *hv, const float *unit,
                              const int64_t *src, const int64_t *dst, const IncomingEdges &in, int64_t begin,
                              int64_t end, int f, bool first, float *out_s, float *out_v)
{
  auto run = f == 32 ? add_messages<32, Weights> : add_messages<0, Weights>;
  run(weights, hs, hv, unit, src, dst, in, begin, end, f, first, out_s, out_v);
}

// the same, from weights stored for every edge (w: E rows of 2F|4F)
inline void message_sums(const float *w, const float *hs, const float *hv, const float *unit, const int64_t *src,
                         const int64_t *dst, const IncomingEdges &in, int64_t begin, int64_t end, int f, bool first,
                         float *out_s, float *out_v)
{
  message_sums_with(StoredWeights{w, first ? 2 * f : 4 * f}, hs, hv, unit, src, dst, in, begin, end, f, first,
                    out_s, out_v);
}

}    // namespace icephase

#endif
