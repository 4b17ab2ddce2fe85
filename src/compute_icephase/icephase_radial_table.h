/* -*- c++ -*- ----------------------------------------------------------
   icephase: each edge's radial weights of the compact denoiser
   (python/icephase_lmp/compact_denoiser.py) from a table, on CPU.
   SPDX-License-Identifier: GPL-2.0-or-later

   Plain C++, compiled into the offline pipeline's numpy denoiser
   (python/icephase_lmp/_denoiser_kernel.cpp) and the LAMMPS compute's CPU
   layers (icephase_compact_layers.cpp), like icephase_message_sums.h.

   Why: a layer's radial weights are a function of the edge's length
   alone, w(r) = SiLU(basis(r) W_in) W_out (Bessel basis times the
   polynomial cutoff, a one-hidden-layer MLP). Evaluated per edge, its
   (E, 32) x (32, 4F) product and SiLU were the largest part of a layer
   (with ~10 edges per oxygen, ~4 us per oxygen of every iteration).
   Tabulated once per model at evenly spaced lengths (in float64, by
   denoiser_kernel.radial_tables) and interpolated by a cubic through the
   four nearest points, it costs 4 multiply-adds per weight; the error is
   ~3e-7 at 512 points, 15-30x below that of the network's own float32
   evaluation (tests/test_denoiser_kernel.py measures it).

   The grid (the one place it is defined in C++; radial_tables in Python
   builds it): point k at r_k = (k - 1) h, h = r_max / (points - 3), k = 0
   .. points - 1, so that r_1 = 0 and r_{points-2} = r_max, with one point
   beyond each end: every length in [0, r_max] has two points either side.
------------------------------------------------------------------------- */

#ifndef ICEPHASE_RADIAL_TABLE_H
#define ICEPHASE_RADIAL_TABLE_H

#include "icephase_message_sums.h"    // ICEPHASE_HOT

#include <cstdint>

namespace icephase {

// The fewest points a table may have (two intervals inside [0, r_max]).
constexpr int64_t RADIAL_TABLE_MIN_POINTS = 5;

// One edge's radial weights (width of them) at length r into out, from table (points, width) on the grid
// above. A length outside [0, r_max], or NaN, is taken as the nearest end (0 for NaN): never a read outside
// the table.
inline void radial_weights_at(const float *__restrict__ table, int64_t points, int width, float r_max, float r,
                              float *__restrict__ out)
{
  const float per_step = (float) (points - 3) / r_max;
  if (!(r > 0.0f)) r = 0.0f;    // NaN too
  if (r > r_max) r = r_max;
  const float s = r * per_step + 1.0f;
  int64_t i = (int64_t) s;
  if (i > points - 3) i = points - 3;
  if (i < 1) i = 1;
  const float t = s - (float) i;
  // the cubic through the points i - 1 .. i + 2 (Lagrange form), at t in [0, 1] between i and i + 1
  const float c0 = -t * (t - 1.0f) * (t - 2.0f) / 6.0f, c1 = (t + 1.0f) * (t - 1.0f) * (t - 2.0f) / 2.0f,
              c2 = -(t + 1.0f) * t * (t - 2.0f) / 2.0f, c3 = (t + 1.0f) * t * (t - 1.0f) / 6.0f;
  const float *__restrict__ a = table + (i - 1) * width;
  const float *__restrict__ b = a + width, *__restrict__ c = b + width, *__restrict__ d = c + width;
  for (int k = 0; k < width; ++k) out[k] = c0 * a[k] + c1 * b[k] + c2 * c[k] + c3 * d[k];
}

// w (n_edges, width), row e the weights at lengths[e].
// (static: a copy per translation unit, which GCC's target_clones handles without cross-unit resolvers)
ICEPHASE_HOT static void radial_weights(const float *__restrict__ table, int64_t points, int width, float r_max,
                                        const float *__restrict__ lengths, int64_t n_edges, float *__restrict__ w)
{
  for (int64_t e = 0; e < n_edges; ++e) radial_weights_at(table, points, width, r_max, lengths[e], w + e * width);
}

// Each edge's radial weights computed where the message sums need them (icephase_message_sums.h's weights
// argument) instead of stored for all edges first: the stored array, E x 4F floats (3 MB at ~1,000 oxygens),
// outgrows the cache that the table (points x 4F floats, 256 kB) stays in. A pair's weights are computed
// twice, once for each direction.
struct TabulatedWeights {
  const float *table;
  int64_t points;
  int width;
  float r_max;
  const float *lengths;
  const float *operator()(int64_t e, float *scratch) const
  {
    radial_weights_at(table, points, width, r_max, lengths[e], scratch);
    return scratch;
  }
};

}    // namespace icephase

#endif
