// SOAP power spectrum of one species with DScribe's GTO radial basis, evaluated from a spline table.
//
// Why this exists: DScribe's extension evaluates, for every neighbour pair, n_max (l_max + 1) exponentials
// (132 at n_max 12, l_max 10) and adds each product into memory one pair at a time; that was 30-40% of
// a classify call. Here the radial functions R_ln(r) (the GTO integrals times the Loewdin coefficients) are
// tabulated once per descriptor as cubic Hermite pieces on a 0.01 A grid (soap.py builds the table), and the
// expansion coefficients of each centre are summed over its neighbours in registers. The numbers agree with
// DScribe's to ~1e-10 of each feature's largest value (tests/test_soap.py).
//
// Conventions (the same as DScribe 2.1, so the features keep their order and scale):
//   c_nlm = sum_j R_ln(r_j) r_j^l Y_lm(r_j / |r_j|)      (real orthonormal Y_lm; R includes pi^1.5)
//   p_(l, n, n') = prel_l sum_m c_nlm c_n'lm, n <= n',   features ordered by l, then (n, n') row by row
// The centre's own Gaussian (r = 0) adds only to l = 0; soap.py passes it as `self_term`.
//
// Precision: the expansion (harmonics, radial functions, c_nlm) is templated on its arithmetic; the table's
// dtype picks it. float32 (soap.PRECISION's default) is 1.25-1.5x cheaper per centre and ~1e-6 of the
// largest feature off; the distances that index the table and the sums over m are double in both.
//
// The neighbours are found here too (`CellList`), in an open cloud of points: a periodic box enters as its
// atoms followed by their images within the reach (geometry.periodic_cloud). Building the neighbour vectors
// in numpy first cost as much as a third of the kernel itself, and their array (P x 3 doubles, ~90 pairs per
// oxygen) grew with the system beyond every cache; here each centre's vectors are gathered into a scratch
// array that is reused. `pairs_within` serves the other-crystal step's 8 A search the same way.
//
// More compiled helpers of the offline pipeline live here, beside the searches: `periodic_pairs`, the
// denoiser's periodic neighbour list (geometry.neighbor_edges), `repeat_counts`, the other-crystal step's
// count of repeated environments (other_crystal.py), and the classifier's nearest-reference searches
// (`nearest_scores`, a float32 scan of every reference; `nearest_indexed`, an exact search through groups),
// and `smallest_rings`, the ring census's rings (ring_census.py).
//
// SPDX-License-Identifier: GPL-2.0-or-later

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "icephase_message_sums.h"    // src/compute_icephase: ICEPHASE_HOT

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

constexpr int BLOCK = 4;    // radial functions are padded to a multiple of this (one AVX register)

// Real solid harmonics r^l Y_lm for K vectors at once (arrays over the pairs, so the loops vectorise).
// Built from Q_lm = r^l P_l^m(z/r) / rho^m, a polynomial in z and r^2, times Re/Im (x + iy)^m.
struct SolidHarmonics {
  int L;
  std::vector<double> norm, ca, cb;    // [l * L + m]

  explicit SolidHarmonics(int lmax) : L(lmax + 1), norm(L * L), ca(L * L), cb(L * L)
  {
    for (int l = 0; l < L; ++l) {
      double ratio = 1.0;    // (l - m)! / (l + m)!
      norm[l * L] = std::sqrt((2 * l + 1) / (4 * M_PI));
      for (int m = 1; m <= l; ++m) {
        ratio /= double(l + m) * double(l - m + 1);
        norm[l * L + m] = std::sqrt((2 * l + 1) / (4 * M_PI) * 2.0 * ratio);
      }
      for (int m = 0; m + 2 <= l; ++m) {
        ca[l * L + m] = double(2 * l - 1) / (l - m);
        cb[l * L + m] = double(l + m - 1) / (l - m);
      }
    }
  }
};

// Y[(l * l + l + m) * K + p], m = -l..l; cm, sm: L * K; Q: L * L * K scratch
template <class Real>
ICEPHASE_HOT void solid_harmonics(const SolidHarmonics &h, int K, const Real *x, const Real *y, const Real *z,
                                  const Real *r2, Real *Y, Real *cm, Real *sm, Real *Q)
{
  const int L = h.L;
  for (int p = 0; p < K; ++p) {
    cm[p] = 1.0;
    sm[p] = 0.0;
  }
  for (int m = 1; m < L; ++m) {
    const Real *c0 = cm + (m - 1) * K, *s0 = sm + (m - 1) * K;
    Real *c1 = cm + m * K, *s1 = sm + m * K;
    for (int p = 0; p < K; ++p) {
      c1[p] = c0[p] * x[p] - s0[p] * y[p];
      s1[p] = c0[p] * y[p] + s0[p] * x[p];
    }
  }
  double double_factorial = 1.0;    // (2m - 1)!!
  for (int m = 0; m < L; ++m) {
    if (m > 0) double_factorial *= (2 * m - 1);
    const Real qmm = Real((m % 2) ? -double_factorial : double_factorial);
    Real *q0 = Q + (m * L + m) * K;
    for (int p = 0; p < K; ++p) q0[p] = qmm;
    if (m + 1 < L) {
      Real *q1 = Q + ((m + 1) * L + m) * K;
      const Real a = Real(2 * m + 1) * qmm;
      for (int p = 0; p < K; ++p) q1[p] = a * z[p];
    }
    for (int l = m + 2; l < L; ++l) {
      const Real a = Real(h.ca[l * L + m]), b = Real(h.cb[l * L + m]);
      const Real *q1 = Q + ((l - 1) * L + m) * K, *q2 = Q + ((l - 2) * L + m) * K;
      Real *q = Q + (l * L + m) * K;
      for (int p = 0; p < K; ++p) q[p] = a * z[p] * q1[p] - b * r2[p] * q2[p];
    }
  }
  for (int l = 0; l < L; ++l) {
    const Real n0 = Real(h.norm[l * L]);
    const Real *q0 = Q + (l * L) * K;
    Real *y0 = Y + (l * l + l) * K;
    for (int p = 0; p < K; ++p) y0[p] = n0 * q0[p];
    for (int m = 1; m <= l; ++m) {
      const Real nm = Real(h.norm[l * L + m]);
      const Real *q = Q + (l * L + m) * K, *c = cm + m * K, *s = sm + m * K;
      Real *yp = Y + (l * l + l + m) * K, *ym = Y + (l * l + l - m) * K;
      for (int p = 0; p < K; ++p) {
        const Real v = nm * q[p];
        yp[p] = v * c[p];
        ym[p] = v * s[p];
      }
    }
  }
}

// R[(l * K + p) * NP + n] from the table (G cells, each L x 4 coefficients x NP functions)
template <int NP, class Real>
ICEPHASE_HOT void radial(int L, int K, int G, const double *r, const Real *table, double inv_h, Real *R)
{
  for (int p = 0; p < K; ++p) {
    const double u = r[p] * inv_h;    // in double: t keeps its digits across the table's ~900 cells
    const int g = std::min(int(u), G - 1);
    const Real t = Real(u - g);
    const Real *cell = table + (long) g * L * 4 * NP;
    for (int l = 0; l < L; ++l) {
      const Real *c0 = cell + l * 4 * NP, *c1 = c0 + NP, *c2 = c1 + NP, *c3 = c2 + NP;
      Real *out = R + ((long) l * K + p) * NP;
      for (int n = 0; n < NP; ++n) out[n] = c0[n] + t * (c1[n] + t * (c2[n] + t * c3[n]));
    }
  }
}

// C[lm * NP + n] += sum_p Y[lm][p] R[l][p][n]; four lm rows at a time share each load of R[l][p][:]
template <int NP, class Real>
ICEPHASE_HOT void expand(int L, int K, const Real *Y, const Real *R, Real *C)
{
  for (int l = 0; l < L; ++l) {
    const Real *Rl = R + (long) l * K * NP;
    const int end = (l + 1) * (l + 1);
    int lm = l * l;
    for (; lm + 4 <= end; lm += 4) {
      Real a0[NP] = {}, a1[NP] = {}, a2[NP] = {}, a3[NP] = {};
      const Real *y0 = Y + (long) lm * K, *y1 = y0 + K, *y2 = y1 + K, *y3 = y2 + K;
      for (int p = 0; p < K; ++p) {
        const Real *rp = Rl + (long) p * NP;
        const Real v0 = y0[p], v1 = y1[p], v2 = y2[p], v3 = y3[p];
        for (int n = 0; n < NP; ++n) {
          const Real rv = rp[n];
          a0[n] += v0 * rv;
          a1[n] += v1 * rv;
          a2[n] += v2 * rv;
          a3[n] += v3 * rv;
        }
      }
      for (int n = 0; n < NP; ++n) {
        C[lm * NP + n] += a0[n];
        C[(lm + 1) * NP + n] += a1[n];
        C[(lm + 2) * NP + n] += a2[n];
        C[(lm + 3) * NP + n] += a3[n];
      }
    }
    for (; lm < end; ++lm) {
      Real acc[NP] = {};
      const Real *ylm = Y + (long) lm * K;
      for (int p = 0; p < K; ++p) {
        const Real *rp = Rl + (long) p * NP;
        for (int n = 0; n < NP; ++n) acc[n] += ylm[p] * rp[n];
      }
      for (int n = 0; n < NP; ++n) C[lm * NP + n] += acc[n];
    }
  }
}

// Points sorted into cubic bins at least `reach` wide, so that every point within `reach` of a point lies
// in its own bin or one of the 26 around it. The bins span the cloud's bounding box; where that box is
// sparse (a few atoms far apart) the bins grow so that there are never many more bins than points.
class CellList {
 public:
  CellList(const double *pos, long n_points, double reach) : pos_(pos), reach2_(reach * reach)
  {
    double hi[3];
    for (int d = 0; d < 3; ++d) lo_[d] = hi[d] = n_points ? pos[d] : 0.0;
    for (long i = 0; i < n_points; ++i)
      for (int d = 0; d < 3; ++d) {
        lo_[d] = std::min(lo_[d], pos[3 * i + d]);
        hi[d] = std::max(hi[d], pos[3 * i + d]);
      }
    double width = reach;
    for (;;) {
      long total = 1;
      for (int d = 0; d < 3; ++d) {
        n_[d] = int(std::min((hi[d] - lo_[d]) / width, 1e6)) + 1;
        total *= n_[d];
      }
      if (total <= 4 * n_points + 64) break;
      width *= 1.5;
    }
    inv_width_ = 1.0 / width;
    start_.assign((long) n_[0] * n_[1] * n_[2] + 1, 0);
    std::vector<long> bin_of(n_points);
    for (long i = 0; i < n_points; ++i) {
      bin_of[i] = bin(pos + 3 * i);
      ++start_[bin_of[i] + 1];
    }
    for (size_t b = 1; b < start_.size(); ++b) start_[b] += start_[b - 1];
    members_.resize(n_points);
    std::vector<long> fill(start_.begin(), start_.end() - 1);
    for (long i = 0; i < n_points; ++i) members_[fill[bin_of[i]]++] = i;    // ascending within a bin
    // the coordinates again, in bin order: a search then reads each bin's points from one stretch of
    // memory instead of from all over the cloud (which no longer fits in cache at ~100,000 atoms)
    sorted_.resize(3 * (size_t) n_points);
    for (long k = 0; k < n_points; ++k)
      for (int d = 0; d < 3; ++d) sorted_[3 * k + d] = pos[3 * members_[k] + d];
  }

  // The points in bin order (bins in x-major order): visiting centres in this order keeps the bins that
  // one centre searches in cache for the next.
  std::vector<long> spatial_order(const int64_t *points, long n) const
  {
    std::vector<long> order(n), key(n);
    for (long k = 0; k < n; ++k) {
      order[k] = k;
      key[k] = bin(pos_ + 3 * points[k]);
    }
    std::stable_sort(order.begin(), order.end(), [&](long a, long b) { return key[a] < key[b]; });
    return order;
  }

  // Calls visit(j, dx, dy, dz) for every point j != i closer than the reach to point i (strictly).
  template <class Visit> void neighbours(long i, Visit &&visit) const
  {
    neighbours_until(i, [&](long j, double dx, double dy, double dz) {
      visit(j, dx, dy, dz);
      return false;
    });
  }

  // The same, stopping (and returning true) at the first neighbour for which visit returns true.
  template <class Visit> bool neighbours_until(long i, Visit &&visit) const
  {
    const double *p = pos_ + 3 * i;
    int c[3];
    for (int d = 0; d < 3; ++d) c[d] = coordinate(p[d], d);
    for (int a = std::max(c[0] - 1, 0); a <= std::min(c[0] + 1, n_[0] - 1); ++a)
      for (int b = std::max(c[1] - 1, 0); b <= std::min(c[1] + 1, n_[1] - 1); ++b)
        for (int e = std::max(c[2] - 1, 0); e <= std::min(c[2] + 1, n_[2] - 1); ++e) {
          const long cell = ((long) a * n_[1] + b) * n_[2] + e;
          for (long k = start_[cell]; k < start_[cell + 1]; ++k) {
            const long j = members_[k];
            const double *q = &sorted_[3 * k];
            const double dx = q[0] - p[0], dy = q[1] - p[1], dz = q[2] - p[2];
            if (j != i && dx * dx + dy * dy + dz * dz < reach2_ && visit(j, dx, dy, dz)) return true;
          }
        }
    return false;
  }

 private:
  int coordinate(double x, int d) const { return std::min(std::max(int((x - lo_[d]) * inv_width_), 0), n_[d] - 1); }
  long bin(const double *p) const
  {
    return ((long) coordinate(p[0], 0) * n_[1] + coordinate(p[1], 1)) * n_[2] + coordinate(p[2], 2);
  }

  const double *pos_;
  double reach2_, lo_[3], inv_width_;
  int n_[3];
  std::vector<long> start_, members_;
  std::vector<double> sorted_;    // [3 * k]: the coordinates of members_[k]
};

// o[(l, n, n2)] = prel_l sum_m C[lm][n] C[lm][n2] for n <= n2: whole rows of the (NP x NP) product at a time,
// which vectorise (a scalar sum per (n, n2) did not)
template <int NP, class Real>
ICEPHASE_HOT void contract(int L, int N, const Real *C, const double *prel, double *o)
{
  for (int l = 0; l < L; ++l) {
    double P[NP][NP] = {};
    for (int lm = l * l; lm < (l + 1) * (l + 1); ++lm) {
      const Real *c = C + lm * NP;
      for (int n = 0; n < N; ++n) {
        const double cn = c[n];
        for (int n2 = 0; n2 < NP; ++n2) P[n][n2] += cn * c[n2];
      }
    }
    for (int n = 0; n < N; ++n)
      for (int n2 = n; n2 < N; ++n2) *o++ = prel[l] * P[n][n2];
  }
}

template <class Real> struct Descriptor {
  int L, N, G;
  double spacing;
  const Real *table;
  const double *self_term, *prel;
};

// One centre's power spectrum from its neighbour vectors (x, y, z: K each); the scratch arrays are kept
// between centres. Real is the type of the expansion (harmonics, radial functions, coefficients); the
// distances that index the table and the final contraction are in double either way.
template <int NP, class Real> class Spectrum {
 public:
  explicit Spectrum(const Descriptor<Real> &d) : d_(d), harmonics_(d.L - 1), C_((long) d.L * d.L * NP) {}

  std::vector<Real> x, y, z;    // the caller fills these with the K neighbour vectors

  void compute(int K, double *o)
  {
    const int L = d_.L, N = d_.N, nlm = L * L;
    if ((int) r_.size() < K) {
      r_.resize(K), r2_.resize(K);
      Y_.resize((long) nlm * K), cm_.resize((long) L * K), sm_.resize((long) L * K), Q_.resize((long) L * L * K);
      R_.resize((long) L * K * NP);
    }
    for (int p = 0; p < K; ++p) {
      const double d2 = double(x[p]) * x[p] + double(y[p]) * y[p] + double(z[p]) * z[p];
      r2_[p] = Real(d2);
      r_[p] = std::sqrt(d2);
    }
    std::fill(C_.begin(), C_.end(), Real(0));
    for (int n = 0; n < N; ++n) C_[n] = Real(d_.self_term[n]);    // l = m = 0
    if (K > 0) {
      solid_harmonics(harmonics_, K, x.data(), y.data(), z.data(), r2_.data(), Y_.data(), cm_.data(), sm_.data(),
                      Q_.data());
      radial<NP>(L, K, d_.G, r_.data(), d_.table, 1.0 / d_.spacing, R_.data());
      expand<NP>(L, K, Y_.data(), R_.data(), C_.data());
    }
    contract<NP>(L, N, C_.data(), d_.prel, o);
  }

 private:
  const Descriptor<Real> &d_;
  const SolidHarmonics harmonics_;
  std::vector<Real> C_, r2_, Y_, cm_, sm_, Q_, R_;
  std::vector<double> r_;
};

template <int NP, class Real>
void power_spectra(const Descriptor<Real> &d, const CellList &cells, const int64_t *centres, long n_centres,
                   double *out)
{
  const long n_features = (long) d.L * d.N * (d.N + 1) / 2;
  Spectrum<NP, Real> spectrum(d);
  for (long c : cells.spatial_order(centres, n_centres)) {
    spectrum.x.clear(), spectrum.y.clear(), spectrum.z.clear();
    cells.neighbours(centres[c], [&](long, double dx, double dy, double dz) {
      spectrum.x.push_back(Real(dx)), spectrum.y.push_back(Real(dy)), spectrum.z.push_back(Real(dz));
    });
    spectrum.compute(int(spectrum.x.size()), out + c * n_features);
  }
}

using Points = py::array_t<double, py::array::c_style | py::array::forcecast>;
using Indices = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

// The checks every entry point makes: points (M, 3) finite, centres within 0..M-1, a positive reach.
void check_cloud(const Points &points, const Indices &centres, double reach)
{
  if (points.ndim() != 2 || points.shape(1) != 3) throw std::invalid_argument("points must have shape (M, 3)");
  if (centres.ndim() != 1) throw std::invalid_argument("centres must have shape (n,)");
  if (!(reach > 0.0) || !std::isfinite(reach)) throw std::invalid_argument("the reach must be a positive distance");
  const double *p = points.data();
  for (long k = 0; k < 3 * (long) points.shape(0); ++k)
    if (!std::isfinite(p[k])) throw std::invalid_argument("points must be finite (a NaN or infinite coordinate)");
  const int64_t *c = centres.data();
  for (long k = 0; k < (long) centres.shape(0); ++k)
    if (c[k] < 0 || c[k] >= points.shape(0)) throw std::invalid_argument("a centre index is out of range");
}

// power_spectra for the table's arithmetic (Real) and padded function count (NP)
template <class Real>
void spectra_of(const py::array &table, int n_max, double spacing, const Points &self_term, const Points &prel,
                const CellList &cells, const int64_t *c, long n_centres, double *o)
{
  const Descriptor<Real> d{int(table.shape(1)), n_max, int(table.shape(0)), spacing,
                           static_cast<const Real *>(table.data()), self_term.data(), prel.data()};
  switch (table.shape(3)) {
    case 4: power_spectra<4>(d, cells, c, n_centres, o); break;
    case 8: power_spectra<8>(d, cells, c, n_centres, o); break;
    case 12: power_spectra<12>(d, cells, c, n_centres, o); break;
    default: power_spectra<16>(d, cells, c, n_centres, o); break;
  }
}

// The table's dtype chooses the arithmetic of the expansion: float64 (DScribe's numbers to ~1e-10) or float32
// (twice the numbers per vector register and half the table's memory; soap.py says what it costs in accuracy).
py::array_t<double> power_spectrum(Points points, Indices centres, double reach, py::array table, double spacing,
                                   int n_max, Points self_term, Points prel)
{
  check_cloud(points, centres, reach);
  const bool single = table.dtype().is(py::dtype::of<float>());
  if (!single && !table.dtype().is(py::dtype::of<double>()))
    throw std::invalid_argument("table must be float64 or float32");
  if (!(table.flags() & py::array::c_style)) throw std::invalid_argument("table must be C-contiguous");
  if (table.ndim() != 4 || table.shape(2) != 4) throw std::invalid_argument("table must have shape (G, L, 4, NP)");
  const int G = int(table.shape(0)), L = int(table.shape(1)), NP = int(table.shape(3));
  if (n_max < 1 || n_max > NP || NP % BLOCK != 0 || NP > 4 * BLOCK)
    throw std::invalid_argument("n_max must be 1..16 and the table padded to a multiple of 4 functions");
  if (self_term.size() < n_max || prel.size() < L) throw std::invalid_argument("self_term or prel too short");
  if ((G - 1) * spacing < reach) throw std::invalid_argument("the radial table is shorter than the reach");
  const long n_centres = centres.shape(0);
  py::array_t<double> out({(py::ssize_t) n_centres, (py::ssize_t) (L * n_max * (n_max + 1) / 2)});
  double *o = out.mutable_data();
  const int64_t *c = centres.data();
  {
    py::gil_scoped_release release;    // dask's threads may run several frames at once
    const CellList cells(points.data(), points.shape(0), reach);
    if (single)
      spectra_of<float>(table, n_max, spacing, self_term, prel, cells, c, n_centres, o);
    else
      spectra_of<double>(table, n_max, spacing, self_term, prel, cells, c, n_centres, o);
  }
  return out;
}

py::tuple pairs_within(Points points, Indices centres, double cutoff)
{
  check_cloud(points, centres, cutoff);
  std::vector<int64_t> first, second;
  const int64_t *c = centres.data();
  const long n_centres = centres.shape(0);
  {
    py::gil_scoped_release release;
    const CellList cells(points.data(), points.shape(0), cutoff);
    std::vector<int64_t> found;
    for (long k = 0; k < n_centres; ++k) {
      found.clear();
      cells.neighbours(c[k], [&](long j, double, double, double) { found.push_back(j); });
      std::sort(found.begin(), found.end());
      first.insert(first.end(), found.size(), c[k]);
      second.insert(second.end(), found.begin(), found.end());
    }
  }
  return py::make_tuple(py::array_t<int64_t>((py::ssize_t) first.size(), first.data()),
                        py::array_t<int64_t>((py::ssize_t) second.size(), second.data()));
}

// For each centre, whether any other point lies closer than cutoff (geometry.too_close). Each search stops at
// the first such point: a point among many on one spot stops at once, and nothing grows with the pairs (a
// full pair list would hold every pair among them).
py::array_t<bool> any_within(Points points, Indices centres, double cutoff)
{
  check_cloud(points, centres, cutoff);
  const int64_t *c = centres.data();
  const long n_centres = centres.shape(0);
  py::array_t<bool> out(n_centres);
  bool *o = out.mutable_data();
  {
    py::gil_scoped_release release;
    const CellList cells(points.data(), points.shape(0), cutoff);
    const auto found = [](long, double, double, double) { return true; };
    for (long k = 0; k < n_centres; ++k) o[k] = cells.neighbours_until(c[k], found);
  }
  return out;
}

// The bin search of periodic_pairs. Every atom looks at the 27 bins around its own (offsets (dx, dy, dz) in
// -1..1, in lexicographic order); with `half`, only at the atoms after it in its own bin and at the 13 bins
// of the offsets after (0, 0, 0) (the bin at -d finds the pairs of the other 13), so each pair is found once.
// With >= 3 bins along each cell vector every image of an atom lies in at most one of the bins looked at.
// The atoms of a bin are read from copies of their coordinates in bin order (one stretch of memory per
// bin); the atoms are taken in their own order (the denoiser's message sums then read memory in that order).
template <class Write>
void search_bins(const int bins[3], const std::vector<long> &bin_of, const std::vector<long> &start,
                 const std::vector<long> &members, const std::vector<double> &xw, const double *h, double cut2,
                 bool half, Write &&write)
{
  const long n = (long) members.size();
  std::vector<double> sx(n), sy(n), sz(n);
  std::vector<long> sorted_at(n);    // where atom i's copy is
  for (long k = 0; k < n; ++k) {
    sorted_at[members[k]] = k;
    sx[k] = xw[3 * members[k]];
    sy[k] = xw[3 * members[k] + 1];
    sz[k] = xw[3 * members[k] + 2];
  }
  constexpr int OFFSETS = 27, HOME = 13;    // offset o is (o / 9 - 1, o / 3 % 3 - 1, o % 3 - 1)
  // each bin's neighbour bin per offset, and the whole cells added to its atoms (as cell counts and as a vector)
  const long nbins = (long) bins[0] * bins[1] * bins[2];
  std::vector<long> other(OFFSETS * nbins);
  std::vector<double> wrap(3 * OFFSETS * nbins), image(3 * OFFSETS * nbins);
  for (long b = 0; b < nbins; ++b) {
    const long bi[3] = {b / (bins[1] * bins[2]), (b / bins[2]) % bins[1], b % bins[2]};
    for (int o = 0; o < OFFSETS; ++o) {
      const int step[3] = {o / 9 - 1, o / 3 % 3 - 1, o % 3 - 1};
      long nb[3];
      double *w = &wrap[3 * (OFFSETS * b + o)], *v = &image[3 * (OFFSETS * b + o)];
      for (int d = 0; d < 3; ++d) {
        nb[d] = bi[d] + step[d];
        w[d] = nb[d] < 0 ? -1.0 : nb[d] >= bins[d] ? 1.0 : 0.0;
        nb[d] -= (long) w[d] * bins[d];
      }
      for (int d = 0; d < 3; ++d) v[d] = w[0] * h[d] + w[1] * h[3 + d] + w[2] * h[6 + d];
      other[OFFSETS * b + o] = (nb[0] * bins[1] + nb[1]) * bins[2] + nb[2];
    }
  }
  for (long i = 0; i < n; ++i) {
    const long a = sorted_at[i], b = bin_of[i];
    for (int o = half ? HOME : 0; o < OFFSETS; ++o) {
      const double *v = &image[3 * (OFFSETS * b + o)], *w = &wrap[3 * (OFFSETS * b + o)];
      const double xi = sx[a] - v[0], yi = sy[a] - v[1], zi = sz[a] - v[2];
      const long ob = other[OFFSETS * b + o];
      for (long k = half && o == HOME ? a + 1 : start[ob]; k < start[ob + 1]; ++k) {
        if (o == HOME && k == a) continue;    // the atom itself
        const double vx = sx[k] - xi, vy = sy[k] - yi, vz = sz[k] - zi;
        if (vx * vx + vy * vy + vz * vz < cut2) write(i, members[k], w);
      }
    }
  }
}

// Every directed pair (i, j) of a fully periodic box closer than cutoff, with the Cartesian image shift of j
// (edge vector pos[j] - pos[i] + shift), as geometry.neighbor_edges returns them: (index (2, E), shift (E, 3)),
// i ascending; with `half`, each pair once as (i, j) with i < j (geometry.neighbor_pairs: no atom meets its own
// image in a box this wide; search_bins). pos may lie outside the cell (the denoiser's positions are
// unwrapped). The atoms are binned by their wrapped fractional coordinates into at least 3 bins along each
// cell vector, each bin at least cutoff wide between its faces, so that every neighbour of an atom lies in
// one of the 27 bins around its own and each periodic image in at most one of them. The caller checks that
// the box holds 3 such bins (else matscipy searches).
py::tuple periodic_pairs(Points positions, py::array_t<double, py::array::c_style | py::array::forcecast> cell,
                         double cutoff, bool half)
{
  if (positions.ndim() != 2 || positions.shape(1) != 3) throw std::invalid_argument("positions must be (N, 3)");
  if (cell.ndim() != 2 || cell.shape(0) != 3 || cell.shape(1) != 3) throw std::invalid_argument("cell must be 3 x 3");
  const long n = positions.shape(0);
  const double *x = positions.data(), *h = cell.data();
  for (long k = 0; k < 3 * n; ++k)
    if (!std::isfinite(x[k])) throw std::invalid_argument("positions must be finite (a NaN or Inf coordinate)");
  for (int k = 0; k < 9; ++k)
    if (!std::isfinite(h[k])) throw std::invalid_argument("the cell must be finite");
  // inverse of the cell (rows = box vectors): fractional f = x H^-1
  const double det = h[0] * (h[4] * h[8] - h[5] * h[7]) - h[1] * (h[3] * h[8] - h[5] * h[6]) +
      h[2] * (h[3] * h[7] - h[4] * h[6]);
  if (!(std::abs(det) > 0.0)) throw std::invalid_argument("the cell has no volume");
  const double inv[9] = {(h[4] * h[8] - h[5] * h[7]) / det, (h[2] * h[7] - h[1] * h[8]) / det,
                         (h[1] * h[5] - h[2] * h[4]) / det, (h[5] * h[6] - h[3] * h[8]) / det,
                         (h[0] * h[8] - h[2] * h[6]) / det, (h[2] * h[3] - h[0] * h[5]) / det,
                         (h[3] * h[7] - h[4] * h[6]) / det, (h[1] * h[6] - h[0] * h[7]) / det,
                         (h[0] * h[4] - h[1] * h[3]) / det};
  int bins[3];
  for (int d = 0; d < 3; ++d) {
    // perpendicular width along cell vector d: 1 / |column d of H^-1|
    const double width = 1.0 / std::sqrt(inv[d] * inv[d] + inv[3 + d] * inv[3 + d] + inv[6 + d] * inv[6 + d]);
    bins[d] = (int) std::floor(width / cutoff);
    if (bins[d] < 3) throw std::invalid_argument("the box is narrower than 3 cutoffs along a cell vector");
  }
  std::vector<int64_t> first, second;
  std::vector<double> shifts;
  {
    py::gil_scoped_release release;
    std::vector<double> frac(3 * n);       // wrapped fractional coordinates
    std::vector<double> offset(3 * n);     // the whole cells each atom was wrapped by
    std::vector<long> bin_of(n);
    for (long i = 0; i < n; ++i) {
      long b = 0;
      for (int d = 0; d < 3; ++d) {
        const double f = x[3 * i] * inv[d] + x[3 * i + 1] * inv[3 + d] + x[3 * i + 2] * inv[6 + d];
        const double whole = std::floor(f);
        double w = f - whole;
        if (w >= 1.0) w = 0.0;    // f just below an integer rounds up
        frac[3 * i + d] = w;
        offset[3 * i + d] = whole;
        b = b * bins[d] + std::min((long) (w * bins[d]), (long) bins[d] - 1);
      }
      bin_of[i] = b;
    }
    // atoms by bin (counting sort, atom order within a bin)
    const long nbins = (long) bins[0] * bins[1] * bins[2];
    std::vector<long> start(nbins + 1, 0), members(n);
    for (long i = 0; i < n; ++i) ++start[bin_of[i] + 1];
    for (long b = 0; b < nbins; ++b) start[b + 1] += start[b];
    std::vector<long> next(start.begin(), start.end() - 1);
    for (long i = 0; i < n; ++i) members[next[bin_of[i]]++] = i;

    // wrapped Cartesian positions: a neighbour's vector is then xw[j] + (its bin's image shift) - xw[i]
    std::vector<double> xw(3 * n);
    for (long i = 0; i < n; ++i)
      for (int d = 0; d < 3; ++d)
        xw[3 * i + d] = frac[3 * i] * h[d] + frac[3 * i + 1] * h[3 + d] + frac[3 * i + 2] * h[6 + d];
    const double cut2 = cutoff * cutoff;
    first.reserve(20 * n);
    second.reserve(20 * n);
    shifts.reserve(60 * n);
    // the pair (i, j) whose vector is xw[j] + wrap H - xw[i] < cutoff: pos[j] - pos[i] + shift with
    // shift = (wrap - offset_j + offset_i) H; written from the lower index (the reverse vector) where `half`
    auto write = [&](long i, long j, const double *wrap) {
      double sc[3];
      for (int d = 0; d < 3; ++d) sc[d] = wrap[d] - offset[3 * j + d] + offset[3 * i + d];
      if (half && j < i) {
        std::swap(i, j);
        for (int d = 0; d < 3; ++d) sc[d] = -sc[d];
      }
      first.push_back(i);
      second.push_back(j);
      for (int d = 0; d < 3; ++d) shifts.push_back(sc[0] * h[d] + sc[1] * h[3 + d] + sc[2] * h[6 + d]);
    };
    search_bins(bins, bin_of, start, members, xw, h, cut2, half, write);
  }
  const py::ssize_t e = (py::ssize_t) first.size();
  py::array_t<int64_t> index({(py::ssize_t) 2, e});
  std::copy(first.begin(), first.end(), index.mutable_data());
  std::copy(second.begin(), second.end(), index.mutable_data() + e);
  py::array_t<double> shift({e, (py::ssize_t) 3});
  std::copy(shifts.begin(), shifts.end(), shift.mutable_data());
  return py::make_tuple(index, shift);
}

// For each centre c < n_centres, how many of its pairs (i[p] = c, j[p]) have reduced vectors (rows of
// `reduced`, (N, k)) closer than threshold in the metric (0: euclidean, 1: cosine, as classifier.row_distance):
// the other-crystal step's repeat counts (other_crystal.py). A row with a NaN never counts. The Euclidean sum
// stops once it reaches the threshold (most pairs of a liquid differ in their first components).
py::array_t<int64_t> repeat_counts(py::array_t<double, py::array::c_style | py::array::forcecast> reduced,
                                   Indices i, Indices j, double threshold, int metric, long n_centres)
{
  if (reduced.ndim() != 2) throw std::invalid_argument("reduced must be (N, k)");
  if (i.ndim() != 1 || j.ndim() != 1 || i.shape(0) != j.shape(0)) throw std::invalid_argument("i and j must be (P,) alike");
  if (metric != 0 && metric != 1) throw std::invalid_argument("metric must be 0 (euclidean) or 1 (cosine)");
  const long n = reduced.shape(0), k = reduced.shape(1), pairs = i.shape(0);
  const int64_t *a = i.data(), *b = j.data();
  for (long p = 0; p < pairs; ++p)
    if (a[p] < 0 || a[p] >= n || b[p] < 0 || b[p] >= n) throw std::invalid_argument("a pair index is out of range");
  if (n_centres < 0) throw std::invalid_argument("n_centres must be >= 0");
  py::array_t<int64_t> counts(n_centres);
  int64_t *out = counts.mutable_data();
  std::fill(out, out + n_centres, 0);
  const double *x = reduced.data(), t2 = threshold * threshold;
  {
    py::gil_scoped_release release;
    for (long p = 0; p < pairs; ++p) {
      if (a[p] >= n_centres) continue;
      const double *u = x + a[p] * k, *v = x + b[p] * k;
      bool close;
      if (metric == 0) {
        double d2 = 0.0;
        long c = 0;
        for (; c < k && !(d2 >= t2); ++c) d2 += (u[c] - v[c]) * (u[c] - v[c]);
        close = std::sqrt(d2) < threshold;
      } else {
        double uv = 0.0, uu = 0.0, vv = 0.0;
        for (long c = 0; c < k; ++c) {
          uv += u[c] * v[c];
          uu += u[c] * u[c];
          vv += v[c] * v[c];
        }
        close = 1.0 - uv / std::max(std::sqrt(uu) * std::sqrt(vv), 1e-12) < threshold;
      }
      if (close) ++out[a[p]];
    }
  }
  return counts;
}

// The classifier's nearest-reference scan (classifier.nearest_reference) for a block of rows, in float32:
// for each row a of `rows` (n, k), the reference m with the smallest score offsets[m] + sum_c a[c] w[c][m]
// (`weights_t` is (k, M): the references' weights transposed), and whether the row is unsure: another
// reference scores within margin[row] of the smallest, or the row is not finite. The caller searches unsure
// rows again in float64, so a winner reported here is the float64 search's whenever margin bounds the float32
// rounding (in any order of the sums). The references go in tiles of SCAN_TILE, each tile's weights
// contiguous, and SCAN_ROWS rows share each tile while it is in registers; a tile whose smallest score is not
// below a row's runner-up is not looked at one by one. numpy's version forms a (rows x M) block and reads it
// four times.
constexpr int SCAN_TILE = 16, SCAN_ROWS = 4;    // scan_tiles has SCAN_ROWS accumulators by name

struct ScanBest {
  long best = 0;
  float low = std::numeric_limits<float>::infinity(), second = std::numeric_limits<float>::infinity();
};

// 8 floats: one AVX register (two SSE ones); a tile is two of them. (A 16-float vector type spills to the
// stack where the target has no 512-bit registers.)
constexpr int SCAN_HALF = SCAN_TILE / 2;
typedef float ScanVector __attribute__((vector_size(SCAN_HALF * sizeof(float))));

ICEPHASE_HOT void scan_tiles(const float *a, int nrows, int k, const float *tiles, const float *tile_offsets,
                             long ntiles, ScanBest *out)
{
  for (long t = 0; t < ntiles; ++t) {
    // SCAN_ROWS x 2 named accumulators, so that they stay in registers
    ScanVector off_lo, off_hi;
    std::memcpy(&off_lo, tile_offsets + t * SCAN_TILE, sizeof(off_lo));
    std::memcpy(&off_hi, tile_offsets + t * SCAN_TILE + SCAN_HALF, sizeof(off_hi));
    ScanVector r0_lo = off_lo, r0_hi = off_hi, r1_lo = off_lo, r1_hi = off_hi;
    ScanVector r2_lo = off_lo, r2_hi = off_hi, r3_lo = off_lo, r3_hi = off_hi;
    const float *wt = tiles + t * k * SCAN_TILE;
    for (int c = 0; c < k; ++c, wt += SCAN_TILE) {
      ScanVector w_lo, w_hi;
      std::memcpy(&w_lo, wt, sizeof(w_lo));
      std::memcpy(&w_hi, wt + SCAN_HALF, sizeof(w_hi));
      const float a0 = a[c], a1 = a[k + c], a2 = a[2 * k + c], a3 = a[3 * k + c];
      r0_lo += a0 * w_lo;
      r0_hi += a0 * w_hi;
      r1_lo += a1 * w_lo;
      r1_hi += a1 * w_hi;
      r2_lo += a2 * w_lo;
      r2_hi += a2 * w_hi;
      r3_lo += a3 * w_lo;
      r3_hi += a3 * w_hi;
    }
    const ScanVector parts[2 * SCAN_ROWS] = {r0_lo, r0_hi, r1_lo, r1_hi, r2_lo, r2_hi, r3_lo, r3_hi};
    for (int r = 0; r < nrows; ++r) {
      // the tile's smallest score for this row: lane-wise minimum of the two halves, then across 8 lanes
      const ScanVector lo = parts[2 * r], hi = parts[2 * r + 1];
      const ScanVector least = lo < hi ? lo : hi;
      float lanes[SCAN_HALF];
      std::memcpy(lanes, &least, sizeof(lanes));
      float tile_low = lanes[0];
      for (int j = 1; j < SCAN_HALF; ++j) tile_low = std::min(tile_low, lanes[j]);
      ScanBest &b = out[r];
      if (!(tile_low < b.second)) continue;
      float v[SCAN_TILE];
      std::memcpy(v, &lo, sizeof(lo));
      std::memcpy(v + SCAN_HALF, &hi, sizeof(hi));
      for (int j = 0; j < SCAN_TILE; ++j) {
        if (v[j] < b.low) {
          b.second = b.low;
          b.low = v[j];
          b.best = t * SCAN_TILE + j;
        } else if (v[j] < b.second) {
          b.second = v[j];
        }
      }
    }
  }
}

py::tuple nearest_scores(py::array_t<float, py::array::c_style | py::array::forcecast> rows,
                         py::array_t<float, py::array::c_style | py::array::forcecast> weights_t,
                         py::array_t<float, py::array::c_style | py::array::forcecast> offsets,
                         py::array_t<double, py::array::c_style | py::array::forcecast> margin)
{
  if (rows.ndim() != 2 || weights_t.ndim() != 2 || offsets.ndim() != 1 || margin.ndim() != 1)
    throw std::invalid_argument("rows (n, k), weights_t (k, M), offsets (M,) and margin (n,) expected");
  const long n = rows.shape(0), k = rows.shape(1), refs = weights_t.shape(1);
  if (weights_t.shape(0) != k || offsets.shape(0) != refs || margin.shape(0) != n)
    throw std::invalid_argument("rows, weights_t, offsets and margin do not match in shape");
  if (refs == 0) throw std::invalid_argument("no references");
  py::array_t<int64_t> winner(n);
  py::array_t<bool> unsure(n);
  int64_t *best_of = winner.mutable_data();
  bool *unsure_of = unsure.mutable_data();
  const float *a = rows.data(), *w = weights_t.data(), *off = offsets.data();
  const double *slack = margin.data();
  {
    py::gil_scoped_release release;
    // tiles: [tile][c][j]; padding scores +inf (offset +inf, weight 0), never a winner or runner-up
    const long ntiles = (refs + SCAN_TILE - 1) / SCAN_TILE;
    std::vector<float> tiles(ntiles * k * SCAN_TILE, 0.0f);
    std::vector<float> tile_offsets(ntiles * SCAN_TILE, std::numeric_limits<float>::infinity());
    for (long m = 0; m < refs; ++m) {
      const long t = m / SCAN_TILE, j = m % SCAN_TILE;
      tile_offsets[m] = off[m];
      for (long c = 0; c < k; ++c) tiles[(t * k + c) * SCAN_TILE + j] = w[c * refs + m];
    }
    // a row with a NaN, an infinity or a huge value (a score could overflow) is left to the float64 search
    std::vector<float> block(SCAN_ROWS * k, 0.0f);
    for (long r0 = 0; r0 < n; r0 += SCAN_ROWS) {
      const int nrows = (int) std::min<long>(SCAN_ROWS, n - r0);
      std::copy(a + r0 * k, a + (r0 + nrows) * k, block.begin());
      std::fill(block.begin() + nrows * k, block.end(), 0.0f);
      ScanBest found[SCAN_ROWS];
      scan_tiles(block.data(), nrows, (int) k, tiles.data(), tile_offsets.data(), ntiles, found);
      for (int r = 0; r < nrows; ++r) {
        bool finite = true;
        for (long c = 0; c < k; ++c) finite = finite && std::fabs(block[r * k + c]) < 1e15f;
        best_of[r0 + r] = found[r].best;
        unsure_of[r0 + r] = !finite || !std::isfinite(found[r].low) ||
            (double) found[r].second <= (double) found[r].low + slack[r0 + r];
      }
    }
  }
  return py::make_tuple(winner, unsure);
}

// The classifier's nearest-reference search with an index (classifier.ReferenceIndex), in float64: the references
// are grouped around centres, each group sorted by the distance of its members to their centre (member_d), and
// each group's radius is its largest member_d. By the triangle inequality no member of a group lies closer to a
// row than |row - centre| - radius, and no member closer than |(|row - centre|) - member_d|; so a row visits the
// groups in order of the first bound and, in each, the members outwards from |row - centre|, until the bound
// passes its best distance (plus its margin). The float32 scan reads every reference for every row: for a
// liquid-labelled row of a model with many references that was most of the classifier's time, and the k-d
// tree with a bound found nothing for such rows after visiting most of it.
//
// Per row: the reference (by its index in `order`) with the smallest squared distance, and whether the row is
// unsure: another visited reference lies within margin[row] of it (every reference within the margin is
// visited: the bounds carry it), or the row is not finite. The caller searches unsure rows again with the
// float64 scores of the plain search, so every answer is the plain search's whenever margin bounds the
// difference of the two float64 computations.
constexpr double INDEX_SLACK = 1e-12;    // relative: covers the rounding of the bounds themselves

// Four partial sums (components c mod 4), added in a fixed order: a single running sum is a chain of k dependent
// additions, and the search is bound by that latency. The result depends on the two vectors alone.
ICEPHASE_HOT inline double squared_distance(const double *a, const double *b, long k)
{
  double s[4] = {0.0, 0.0, 0.0, 0.0};
  long c = 0;
  for (; c + 4 <= k; c += 4)
    for (int j = 0; j < 4; ++j) {
      const double d = a[c + j] - b[c + j];
      s[j] += d * d;
    }
  for (int j = 0; c < k; ++c, ++j) {
    const double d = a[c] - b[c];
    s[j] += d * d;
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

py::tuple nearest_indexed(py::array_t<double, py::array::c_style | py::array::forcecast> rows,
                          py::array_t<double, py::array::c_style | py::array::forcecast> members,
                          py::array_t<int64_t, py::array::c_style | py::array::forcecast> order,
                          py::array_t<int64_t, py::array::c_style | py::array::forcecast> starts,
                          py::array_t<double, py::array::c_style | py::array::forcecast> centres,
                          py::array_t<double, py::array::c_style | py::array::forcecast> member_d,
                          py::array_t<double, py::array::c_style | py::array::forcecast> margin)
{
  if (rows.ndim() != 2 || members.ndim() != 2 || order.ndim() != 1 || starts.ndim() != 1 || centres.ndim() != 2 ||
      member_d.ndim() != 1 || margin.ndim() != 1)
    throw std::invalid_argument("rows (n, k), members (M, k), order (M,), starts (G + 1,), centres (G, k), "
                                "member_d (M,) and margin (n,) expected");
  const long n = rows.shape(0), k = rows.shape(1), refs = members.shape(0), groups = centres.shape(0);
  if (members.shape(1) != k || centres.shape(1) != k || order.shape(0) != refs || member_d.shape(0) != refs ||
      starts.shape(0) != groups + 1 || margin.shape(0) != n)
    throw std::invalid_argument("rows, members, order, starts, centres, member_d and margin do not match in shape");
  if (refs == 0) throw std::invalid_argument("no references");
  const int64_t *start = starts.data(), *index = order.data();
  if (start[0] != 0 || start[groups] != refs)
    throw std::invalid_argument("starts must run from 0 to the number of references");
  for (long g = 0; g < groups; ++g)
    if (start[g + 1] < start[g]) throw std::invalid_argument("starts must not decrease");
  py::array_t<int64_t> winner(n);
  py::array_t<bool> unsure(n);
  int64_t *best_of = winner.mutable_data();
  bool *unsure_of = unsure.mutable_data();
  const double *a = rows.data(), *b = members.data(), *cen = centres.data(), *md = member_d.data();
  const double *slack = margin.data();
  {
    py::gil_scoped_release release;
    std::vector<std::pair<double, long>> queue;    // (lower bound, group)
    std::vector<double> to_centre(groups);
    for (long r = 0; r < n; ++r) {
      const double *row = a + r * k;
      bool finite = true;
      for (long c = 0; c < k; ++c) finite = finite && std::fabs(row[c]) < 1e150;
      if (!finite) {
        best_of[r] = 0;
        unsure_of[r] = true;
        continue;
      }
      // the groups' lower bounds; the group of the smallest is read first (it sets a tight best), the others
      // in their order where their bound still allows (sorting them all cost more than it saved)
      queue.clear();
      long first = -1;
      double first_bound = std::numeric_limits<double>::infinity();
      for (long g = 0; g < groups; ++g) {
        if (start[g + 1] == start[g]) continue;
        to_centre[g] = std::sqrt(squared_distance(row, cen + g * k, k));
        const double bound = to_centre[g] - md[start[g + 1] - 1];
        queue.emplace_back(bound, g);
        if (bound < first_bound || first < 0) {
          first_bound = bound;
          first = (long) queue.size() - 1;
        }
      }
      if (first > 0) std::swap(queue[0], queue[first]);
      double low = std::numeric_limits<double>::infinity(), second = low;
      long best = -1;
      // distance beyond which nothing can come within the margin of the best
      auto reach = [&]() { return std::sqrt(low + slack[r]) * (1.0 + INDEX_SLACK) + INDEX_SLACK; };
      auto visit = [&](long m) {
        const double s = squared_distance(row, b + m * k, k);
        if (s < low) {
          second = low;
          low = s;
          best = m;
        } else if (s < second) {
          second = s;
        }
      };
      for (const auto &[bound, g] : queue) {
        if (bound > reach()) continue;
        // members sorted by member_d: start where member_d meets |row - centre| and walk out both ways
        const double dc = to_centre[g];
        const long lo = start[g], hi = start[g + 1];
        long up = std::lower_bound(md + lo, md + hi, dc) - md, down = up - 1;
        while (up < hi || down >= lo) {
          const double limit = reach();
          const bool go_up = up < hi && md[up] - dc <= limit, go_down = down >= lo && dc - md[down] <= limit;
          if (!go_up && !go_down) break;
          if (go_up) visit(up++);
          if (go_down) visit(down--);
          if (!go_up) up = hi;
          if (!go_down) down = lo - 1;
        }
      }
      best_of[r] = best < 0 ? 0 : index[best];
      unsure_of[r] = best < 0 || second <= low + slack[r];
    }
  }
  return py::make_tuple(winner, unsure);
}

// The ring census's smallest rings (ring_census.smallest_rings, which says how; this is its loop written out):
// for each centre, the halves (paths of up to `reach` bonds beyond each of its first four bonds' far ends, never
// straight back, never through the centre) of every bond, then for each pair of bonds the smallest ring closed by
// two halves that end on the same molecule in the same periodic image, and whether all such smallest rings pass
// through `crystal` molecules only. Returns (sizes (C, 4, 4) int8, 0: none up to 2 * reach + 2 members; clean
// (C, 4, 4) bool).
py::tuple smallest_rings(Indices neighbours, Indices images,
                         py::array_t<bool, py::array::c_style | py::array::forcecast> crystal, Indices centres,
                         int reach)
{
  if (neighbours.ndim() != 2 || images.ndim() != 2 || neighbours.shape(0) != images.shape(0) ||
      neighbours.shape(1) != images.shape(1))
    throw std::invalid_argument("neighbours and images must be (n, slots) alike");
  const long n = neighbours.shape(0), slots = neighbours.shape(1), c = centres.shape(0);
  if (crystal.ndim() != 1 || crystal.shape(0) != n) throw std::invalid_argument("crystal must be (n,)");
  if (reach < 0 || reach > 3) throw std::invalid_argument("reach must be 0..3");
  const int64_t *nb = neighbours.data(), *im = images.data(), *ce = centres.data();
  const bool *cr = crystal.data();
  for (long k = 0; k < n * slots; ++k)
    if (nb[k] >= n) throw std::invalid_argument("a neighbour index is out of range");
  for (long k = 0; k < c; ++k)
    if (ce[k] < 0 || ce[k] >= n) throw std::invalid_argument("a centre index is out of range");
  py::array_t<int8_t> sizes({c, 4L, 4L});
  py::array_t<bool> clean({c, 4L, 4L});
  int8_t *size_out = sizes.mutable_data();
  bool *clean_out = clean.mutable_data();
  {
    py::gil_scoped_release release;
    struct Half {
      int64_t node, image;
      int length;
      bool clean;
    };
    std::array<std::vector<Half>, 4> halves;
    const int none = 2 * reach + 3;    // larger than any ring the halves can close
    for (long k = 0; k < c; ++k) {
      const int64_t centre = ce[k];
      for (int a = 0; a < 4; ++a) {
        std::vector<Half> &h = halves[a];
        h.clear();
        const int64_t first = a < slots ? nb[centre * slots + a] : -1;
        if (first < 0) continue;
        h.push_back({first, im[centre * slots + a], 0, cr[centre] && cr[first]});
        std::vector<int64_t> previous{centre};
        for (int step = 1, begin = 0; step <= reach; ++step) {
          const int end = (int) h.size();
          for (int q = begin; q < end; ++q) {
            const Half from = h[q];
            for (long t = 0; t < slots; ++t) {
              const int64_t next = nb[from.node * slots + t];
              if (next < 0 || next == previous[q] || next == centre) continue;
              h.push_back({next, from.image + im[from.node * slots + t], step, from.clean && cr[next]});
              previous.push_back(from.node);
            }
          }
          begin = end;
        }
      }
      for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b) {
          size_out[(k * 4 + a) * 4 + b] = 0;
          clean_out[(k * 4 + a) * 4 + b] = true;
        }
      for (int a = 0; a < 4; ++a)
        for (int b = a + 1; b < 4; ++b) {
          int best = none;
          bool ok = true;
          for (const Half &x : halves[a])
            for (const Half &y : halves[b]) {
              if (x.node != y.node || x.image != y.image) continue;
              const int size = x.length + y.length + 2;
              if (size < best) {
                best = size;
                ok = x.clean && y.clean;
              } else if (size == best) {
                ok = ok && x.clean && y.clean;
              }
            }
          if (best == none) continue;
          size_out[(k * 4 + a) * 4 + b] = size_out[(k * 4 + b) * 4 + a] = (int8_t) best;
          clean_out[(k * 4 + a) * 4 + b] = clean_out[(k * 4 + b) * 4 + a] = ok;
        }
    }
  }
  return py::make_tuple(sizes, clean);
}

}    // namespace


PYBIND11_MODULE(_soap_kernel, m)
{
  m.doc() = "SOAP power spectrum from a spline table of DScribe's GTO radial basis, the neighbour searches it and the "
            "denoiser use, the other-crystal step's repeat count and the classifier's nearest-reference searches (see soap.py)";
  m.attr("MAX_N") = 4 * BLOCK;
  m.def("power_spectrum", &power_spectrum, py::arg("points"), py::arg("centres"), py::arg("reach"), py::arg("table"),
        py::arg("spacing"), py::arg("n_max"), py::arg("self_term"), py::arg("prel"),
        "Power spectra of the points with indices `centres` among all `points` (an open cloud; neighbours "
        "closer than `reach`).");
  m.def("pairs_within", &pairs_within, py::arg("points"), py::arg("centres"), py::arg("cutoff"),
        "(i, j): every point j != i closer than `cutoff` to a centre i, in centre order, then by j.");
  m.def("any_within", &any_within, py::arg("points"), py::arg("centres"), py::arg("cutoff"),
        "(n,) bool: whether another point lies closer than `cutoff` to each centre.");
  m.def("repeat_counts", &repeat_counts, py::arg("reduced"), py::arg("i"), py::arg("j"), py::arg("threshold"),
        py::arg("metric"), py::arg("n_centres"),
        "Per centre, its pairs whose reduced vectors are closer than `threshold` (metric 0 euclidean, 1 cosine).");
  m.def("nearest_scores", &nearest_scores, py::arg("rows"), py::arg("weights_t"), py::arg("offsets"),
        py::arg("margin"),
        "(winner (n,), unsure (n,)): per row, the reference with the smallest float32 score offsets + rows @ "
        "weights_t, and whether another scores within margin of it (or a score is NaN).");
  m.def("nearest_indexed", &nearest_indexed, py::arg("rows"), py::arg("members"), py::arg("order"),
        py::arg("starts"), py::arg("centres"), py::arg("member_d"), py::arg("margin"),
        "(winner (n,), unsure (n,)): per row, the reference (its index in `order`) with the smallest float64 squared "
        "distance, found through groups of references around centres, and whether another lies within margin of it "
        "(or the row is not finite).");
  m.def("periodic_pairs", &periodic_pairs, py::arg("positions"), py::arg("cell"), py::arg("cutoff"),
        py::arg("half") = false,
        "(index (2, E), shift (E, 3)): every directed pair of a fully periodic box closer than `cutoff`, with the "
        "Cartesian image shift of j (with half, each pair once, i < j); the box must hold 3 bins of `cutoff` "
        "along each cell vector.");
  m.def("smallest_rings", &smallest_rings, py::arg("neighbours"), py::arg("images"), py::arg("crystal"),
        py::arg("centres"), py::arg("reach"),
        "(sizes (C, 4, 4) int8, clean (C, 4, 4) bool): the smallest ring through each pair of the first four bonds "
        "of each centre, and whether all such rings pass through crystal molecules only (ring_census).");
}
