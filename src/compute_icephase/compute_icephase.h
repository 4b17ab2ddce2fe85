/* -*- c++ -*- ----------------------------------------------------------
   icephase: LAMMPS compute style "icephase" (plugin)
   SPDX-License-Identifier: GPL-2.0-or-later

   compute ID group-ID icephase model.pth keyword value ...

   Per oxygen: iterative score-based denoising with a TorchScript E(3)-
   equivariant network (libtorch), then a SOAP classifier (embedded Python)
   gives the ice phase. Per-atom array (5 columns) and a global vector of
   phase counts. See docs/compute_icephase.md.
------------------------------------------------------------------------- */

#ifdef COMPUTE_CLASS
// clang-format off
ComputeStyle(icephase,ComputeIcephase);
// clang-format on
#else

#ifndef LMP_COMPUTE_ICEPHASE_H
#define LMP_COMPUTE_ICEPHASE_H

#include "compute.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace LAMMPS_NS {

class ComputeIcephase : public Compute {
 public:
  ComputeIcephase(class LAMMPS *, int, char **);
  ~ComputeIcephase() override;
  void init() override;
  void compute_peratom() override;
  void compute_vector() override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  double memory_usage() override;

  // libtorch lives behind this pointer so that this header (also compiled
  // into the plugin entry point) does not pull in the torch headers
  struct Denoiser;

 private:
  // settings
  std::string model_path;
  std::string device_request;    // auto, cpu, cuda
  std::string metric;
  double threshold;
  int iterations;
  double tolerance;
  int nthreads;
  std::vector<int> user_types;    // from the types keyword (empty: automatic)

  // from the model's metadata
  double r_max;              // denoiser cutoff (A)
  double ghost_cutoff;       // ghost region needed (A)
  double receptive_field;    // num_layers * r_max (A)
  int max_code;              // phase codes run 0..max_code
  std::vector<std::string> phase_names;    // index = code + 1 (code -1 = not analysed)
  std::string default_metric;
  int default_iterations;
  double default_tolerance;
  std::map<std::string, double> default_thresholds;    // "denoised/euclidean" -> value

  std::unique_ptr<Denoiser> denoiser;
  std::string device_name;

  // state
  std::vector<int> is_oxygen;    // per atom type 1..ntypes
  std::string types_logged;      // what init() last logged, to log only changes
  bool logged;
  int nmax;
  double **disp;     // per atom (local + ghost): denoised minus original position
  double *counts;    // global vector

  // work buffers
  std::vector<int> cloud;    // atom indices of analysed locals, then ghosts
  std::vector<double> cloud_x;
  std::vector<float> cloud_x32;
  std::vector<int64_t> edges;    // [2][E]: centres then neighbours
  std::vector<int> codes;
  std::vector<double> distances;

  void parse_metadata(const std::string &json);
  void resolve_types();
  void check_ghost_cutoff();
  void log_settings();
  void collect_cloud(int &nlocal_cloud);
  void build_edges(int n);
  bool denoise_step(int n, int nlocal_cloud, double &maxstep, std::string &err);
  void all_or_error(const std::string &local_error);
  void grow_arrays();
};

}    // namespace LAMMPS_NS

#endif
#endif
