/* ----------------------------------------------------------------------
   icephase: LAMMPS compute style "icephase" (plugin)
   SPDX-License-Identifier: GPL-2.0-or-later

   The binned neighbour search of compute icephase (see icephase_bins.h).
------------------------------------------------------------------------- */

#include "icephase_bins.h"

#include <algorithm>
#include <cmath>

using namespace LAMMPS_NS;

/* ---------------------------------------------------------------------- */

void IcephaseBins::extent(const double *x, int n, double *lo, double *hi)
{
  for (int d = 0; d < 3; d++) lo[d] = hi[d] = 0.0;
  for (int k = 0; k < n; k++)
    for (int d = 0; d < 3; d++) {
      const double v = x[3 * k + d];
      if (k == 0 || v < lo[d]) lo[d] = v;
      if (k == 0 || v > hi[d]) hi[d] = v;
    }
}

/* ----------------------------------------------------------------------
   bins at least one cutoff wide; while there would be more than
   2 n + 1000 of them (a sparse set), the bins grow by half
------------------------------------------------------------------------- */

void IcephaseBins::setup(const double *box_lo, const double *box_hi, double cut, int n)
{
  cutsq = cut * cut;
  double size = cut;
  const double limit = 2.0 * n + 1000.0;
  auto count_bins = [&](double s) {
    double c = 1.0;
    for (int d = 0; d < 3; d++) c *= std::max(1.0, std::floor((box_hi[d] - box_lo[d]) / s));
    return c;
  };
  while (count_bins(size) > limit) size *= 1.5;
  for (int d = 0; d < 3; d++) {
    lo[d] = box_lo[d];
    nb[d] = std::max(1, (int) std::floor((box_hi[d] - box_lo[d]) / size));
    binsize[d] = (box_hi[d] - box_lo[d]) / nb[d];
    if (binsize[d] <= 0.0) binsize[d] = 1.0;
  }
}

/* ----------------------------------------------------------------------
   each bin lists its points in ascending order (filled from the last)
------------------------------------------------------------------------- */

void IcephaseBins::fill(const double *x, int n)
{
  points = x;
  head.assign((long) nb[0] * nb[1] * nb[2], -1);
  next.assign(n, -1);
  for (int k = n - 1; k >= 0; k--) {
    int b[3];
    bin_of(&x[3 * k], b);
    const long ib = ((long) b[2] * nb[1] + b[1]) * nb[0] + b[0];
    next[k] = head[ib];
    head[ib] = k;
  }
}

/* ----------------------------------------------------------------------
   the bin of p, clamped into 0 .. nb - 1 along each axis
------------------------------------------------------------------------- */

void IcephaseBins::bin_of(const double *p, int *b) const
{
  for (int d = 0; d < 3; d++) {
    const double t = (p[d] - lo[d]) / binsize[d];
    b[d] = t < 1.0 ? 0 : (t >= nb[d] - 1 ? nb[d] - 1 : (int) t);
  }
}

/* ---------------------------------------------------------------------- */

double IcephaseBins::memory_usage() const
{
  return (double) (head.capacity() + next.capacity()) * sizeof(int);
}
