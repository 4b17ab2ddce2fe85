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
// SPDX-License-Identifier: GPL-2.0-or-later

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace py = pybind11;

// The hot loops are compiled twice, plain x86-64 and with AVX+FMA, and the loader picks the one this CPU
// runs (GCC function multiversioning); on other compilers or CPUs there is one portable version.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ICEPHASE_HOT __attribute__((target_clones("fma", "default")))
#else
#define ICEPHASE_HOT
#endif

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
ICEPHASE_HOT
void solid_harmonics(const SolidHarmonics &h, int K, const double *x, const double *y, const double *z,
                     const double *r2, double *Y, double *cm, double *sm, double *Q)
{
  const int L = h.L;
  for (int p = 0; p < K; ++p) {
    cm[p] = 1.0;
    sm[p] = 0.0;
  }
  for (int m = 1; m < L; ++m) {
    const double *c0 = cm + (m - 1) * K, *s0 = sm + (m - 1) * K;
    double *c1 = cm + m * K, *s1 = sm + m * K;
    for (int p = 0; p < K; ++p) {
      c1[p] = c0[p] * x[p] - s0[p] * y[p];
      s1[p] = c0[p] * y[p] + s0[p] * x[p];
    }
  }
  double double_factorial = 1.0;    // (2m - 1)!!
  for (int m = 0; m < L; ++m) {
    if (m > 0) double_factorial *= (2 * m - 1);
    const double qmm = (m % 2) ? -double_factorial : double_factorial;
    double *q0 = Q + (m * L + m) * K;
    for (int p = 0; p < K; ++p) q0[p] = qmm;
    if (m + 1 < L) {
      double *q1 = Q + ((m + 1) * L + m) * K;
      for (int p = 0; p < K; ++p) q1[p] = (2 * m + 1) * z[p] * qmm;
    }
    for (int l = m + 2; l < L; ++l) {
      const double a = h.ca[l * L + m], b = h.cb[l * L + m];
      const double *q1 = Q + ((l - 1) * L + m) * K, *q2 = Q + ((l - 2) * L + m) * K;
      double *q = Q + (l * L + m) * K;
      for (int p = 0; p < K; ++p) q[p] = a * z[p] * q1[p] - b * r2[p] * q2[p];
    }
  }
  for (int l = 0; l < L; ++l) {
    const double n0 = h.norm[l * L];
    const double *q0 = Q + (l * L) * K;
    double *y0 = Y + (l * l + l) * K;
    for (int p = 0; p < K; ++p) y0[p] = n0 * q0[p];
    for (int m = 1; m <= l; ++m) {
      const double nm = h.norm[l * L + m];
      const double *q = Q + (l * L + m) * K, *c = cm + m * K, *s = sm + m * K;
      double *yp = Y + (l * l + l + m) * K, *ym = Y + (l * l + l - m) * K;
      for (int p = 0; p < K; ++p) {
        const double v = nm * q[p];
        yp[p] = v * c[p];
        ym[p] = v * s[p];
      }
    }
  }
}

// R[(l * K + p) * NP + n] from the table (G cells, each L x 4 coefficients x NP functions)
template <int NP>
ICEPHASE_HOT void radial(int L, int K, int G, const double *r, const double *table, double inv_h, double *R)
{
  for (int p = 0; p < K; ++p) {
    const double u = r[p] * inv_h;
    const int g = std::min(int(u), G - 1);
    const double t = u - g;
    const double *cell = table + (long) g * L * 4 * NP;
    for (int l = 0; l < L; ++l) {
      const double *c0 = cell + l * 4 * NP, *c1 = c0 + NP, *c2 = c1 + NP, *c3 = c2 + NP;
      double *out = R + ((long) l * K + p) * NP;
      for (int n = 0; n < NP; ++n) out[n] = c0[n] + t * (c1[n] + t * (c2[n] + t * c3[n]));
    }
  }
}

// C[lm * NP + n] += sum_p Y[lm][p] R[l][p][n]; four lm rows at a time share each load of R[l][p][:]
template <int NP>
ICEPHASE_HOT void expand(int L, int K, const double *Y, const double *R, double *C)
{
  for (int l = 0; l < L; ++l) {
    const double *Rl = R + (long) l * K * NP;
    const int end = (l + 1) * (l + 1);
    int lm = l * l;
    for (; lm + 4 <= end; lm += 4) {
      double a0[NP] = {}, a1[NP] = {}, a2[NP] = {}, a3[NP] = {};
      const double *y0 = Y + (long) lm * K, *y1 = y0 + K, *y2 = y1 + K, *y3 = y2 + K;
      for (int p = 0; p < K; ++p) {
        const double *rp = Rl + (long) p * NP;
        const double v0 = y0[p], v1 = y1[p], v2 = y2[p], v3 = y3[p];
        for (int n = 0; n < NP; ++n) {
          const double rv = rp[n];
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
      double acc[NP] = {};
      const double *ylm = Y + (long) lm * K;
      for (int p = 0; p < K; ++p) {
        const double *rp = Rl + (long) p * NP;
        for (int n = 0; n < NP; ++n) acc[n] += ylm[p] * rp[n];
      }
      for (int n = 0; n < NP; ++n) C[lm * NP + n] += acc[n];
    }
  }
}

struct Inputs {
  long n_centres;
  int L, N, G;
  double spacing;
  const double *vectors, *table, *self_term, *prel;
  const int64_t *offsets;
  double *out;
};

template <int NP> void power_spectra(const Inputs &in)
{
  const int L = in.L, N = in.N, nlm = L * L;
  const long n_features = (long) L * N * (N + 1) / 2;
  const SolidHarmonics harmonics(L - 1);
  std::vector<double> x, y, z, r, r2, Y, cm, sm, Q, R;
  std::vector<double> C((long) nlm * NP);
  const double inv_h = 1.0 / in.spacing;
  for (long c = 0; c < in.n_centres; ++c) {
    const int K = int(in.offsets[c + 1] - in.offsets[c]);
    if ((int) x.size() < K) {
      x.resize(K), y.resize(K), z.resize(K), r.resize(K), r2.resize(K);
      Y.resize((long) nlm * K), cm.resize((long) L * K), sm.resize((long) L * K), Q.resize((long) L * L * K);
      R.resize((long) L * K * NP);
    }
    const double *v = in.vectors + 3 * in.offsets[c];
    for (int p = 0; p < K; ++p) {
      x[p] = v[3 * p], y[p] = v[3 * p + 1], z[p] = v[3 * p + 2];
      r2[p] = x[p] * x[p] + y[p] * y[p] + z[p] * z[p];
      r[p] = std::sqrt(r2[p]);
    }
    std::fill(C.begin(), C.end(), 0.0);
    for (int n = 0; n < N; ++n) C[n] = in.self_term[n];    // l = m = 0
    if (K > 0) {
      solid_harmonics(harmonics, K, x.data(), y.data(), z.data(), r2.data(), Y.data(), cm.data(), sm.data(),
                      Q.data());
      radial<NP>(L, K, in.G, r.data(), in.table, inv_h, R.data());
      expand<NP>(L, K, Y.data(), R.data(), C.data());
    }
    double *o = in.out + c * n_features;
    for (int l = 0; l < L; ++l)
      for (int n = 0; n < N; ++n)
        for (int n2 = n; n2 < N; ++n2) {
          double s = 0.0;
          for (int lm = l * l; lm < (l + 1) * (l + 1); ++lm) s += C[lm * NP + n] * C[lm * NP + n2];
          *o++ = in.prel[l] * s;
        }
  }
}

py::array_t<double> power_spectrum(py::array_t<double, py::array::c_style | py::array::forcecast> vectors,
                                   py::array_t<int64_t, py::array::c_style | py::array::forcecast> offsets,
                                   py::array_t<double, py::array::c_style | py::array::forcecast> table,
                                   double spacing, int n_max,
                                   py::array_t<double, py::array::c_style | py::array::forcecast> self_term,
                                   py::array_t<double, py::array::c_style | py::array::forcecast> prel)
{
  if (vectors.ndim() != 2 || vectors.shape(1) != 3) throw std::invalid_argument("vectors must have shape (P, 3)");
  if (offsets.ndim() != 1 || offsets.shape(0) < 1) throw std::invalid_argument("offsets must have shape (n + 1,)");
  if (table.ndim() != 4 || table.shape(2) != 4) throw std::invalid_argument("table must have shape (G, L, 4, NP)");
  Inputs in;
  in.n_centres = offsets.shape(0) - 1;
  in.G = int(table.shape(0));
  in.L = int(table.shape(1));
  in.N = n_max;
  const int NP = int(table.shape(3));
  if (n_max < 1 || n_max > NP || NP % BLOCK != 0 || NP > 4 * BLOCK)
    throw std::invalid_argument("n_max must be 1..16 and the table padded to a multiple of 4 functions");
  if (self_term.size() < n_max || prel.size() < in.L) throw std::invalid_argument("self_term or prel too short");
  const int64_t *off = offsets.data();
  for (long c = 0; c < in.n_centres; ++c)
    if (off[c + 1] < off[c]) throw std::invalid_argument("offsets must not decrease");
  if (off[0] != 0 || off[in.n_centres] != vectors.shape(0))
    throw std::invalid_argument("offsets must run from 0 to the number of vectors");
  in.spacing = spacing;
  in.vectors = vectors.data();
  in.offsets = off;
  in.table = table.data();
  in.self_term = self_term.data();
  in.prel = prel.data();
  py::array_t<double> out({(py::ssize_t) in.n_centres, (py::ssize_t) (in.L * n_max * (n_max + 1) / 2)});
  in.out = out.mutable_data();
  {
    py::gil_scoped_release release;    // dask's threads may run several frames at once
    switch (NP) {
      case 4: power_spectra<4>(in); break;
      case 8: power_spectra<8>(in); break;
      case 12: power_spectra<12>(in); break;
      default: power_spectra<16>(in); break;
    }
  }
  return out;
}

}    // namespace

PYBIND11_MODULE(_soap_kernel, m)
{
  m.doc() = "SOAP power spectrum from a spline table of DScribe's GTO radial basis (see soap.py)";
  m.attr("MAX_N") = 4 * BLOCK;
  m.def("power_spectrum", &power_spectrum, py::arg("vectors"), py::arg("offsets"), py::arg("table"),
        py::arg("spacing"), py::arg("n_max"), py::arg("self_term"), py::arg("prel"),
        "Power spectra of n centres from their neighbour vectors (rows offsets[c]:offsets[c+1]).");
}
