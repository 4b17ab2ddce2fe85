/* ----------------------------------------------------------------------
   icephase: LAMMPS compute style "icephase" (plugin)
   SPDX-License-Identifier: GPL-2.0-or-later

   Per-oxygen ice phase: iterative denoising r <- r - eps(r) with a
   TorchScript network (libtorch), then a SOAP classifier run in an
   embedded Python interpreter (icephase_lmp.lammps_bridge).

   Parallel scheme: each rank denoises an open cloud made of its local
   oxygens and its ghost oxygens (periodic images included), keeps the
   result of its local atoms only, and refreshes the ghosts with a forward
   communication of the displacement (denoised minus original position)
   after every iteration. A displacement needs no periodic image shift,
   so ghost denoised position = ghost x + displacement is image-safe.
   Local results are exact when the ghost cutoff covers the network's
   receptive field (num_layers * r_max) and the SOAP reach.

   Every failure path is collective: each rank computes a local error
   message, an MPI_Allreduce finds the first failing rank, its message is
   broadcast and all ranks call error->all() together (no deadlock when
   only one rank fails, e.g. in Python or libtorch).
------------------------------------------------------------------------- */

#include "compute_icephase.h"

#include "icephase_python.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "group.h"
#include "json.h"
#include "memory.h"
#include "neighbor.h"
#include "pair.h"
#include "update.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

using namespace LAMMPS_NS;

namespace {
constexpr double OXYGEN_MASS = 15.9994;    // g/mol
constexpr double OXYGEN_MASS_TOL = 0.1;
constexpr int NCOLS = 5;    // code, distance, dx, dy, dz

const std::set<std::string> KEYWORDS = {"iterations", "tolerance", "device", "types",
                                        "metric",     "threshold", "threads"};

bool is_keyword(const char *arg)
{
  return KEYWORDS.count(arg) > 0;
}
}    // namespace

/* ---------------------------------------------------------------------- */

struct ComputeIcephase::Denoiser {
  torch::jit::Module module;
  torch::Device device{torch::kCPU};
};

/* ---------------------------------------------------------------------- */

ComputeIcephase::ComputeIcephase(LAMMPS *lmp, int narg, char **arg) :
    Compute(lmp, narg, arg), threshold(0.0), iterations(-1), tolerance(-1.0), nthreads(1),
    r_max(0.0), ghost_cutoff(0.0), receptive_field(0.0), max_code(0), default_iterations(0),
    default_tolerance(0.0), logged(false), nmax(0), disp(nullptr), counts(nullptr)
{
  if (narg < 4) utils::missing_cmd_args(FLERR, "compute icephase", error);

  model_path = arg[3];
  device_request = "auto";
  bool threshold_set = false;

  int iarg = 4;
  while (iarg < narg) {
    const std::string kw = arg[iarg];
    if (kw == "types") {
      if (iarg + 2 > narg) utils::missing_cmd_args(FLERR, "compute icephase types", error);
      int jarg = iarg + 1;
      while (jarg < narg && !is_keyword(arg[jarg])) {
        if (utils::is_integer(arg[jarg])) {
          const int t = utils::inumeric(FLERR, arg[jarg], false, lmp);
          if (t < 1 || t > atom->ntypes)
            error->all(FLERR,
                       "Compute icephase types: atom type {} does not exist (this system has "
                       "types 1 to {})",
                       t, atom->ntypes);
        }
        int lo, hi;
        utils::bounds_typelabel(FLERR, arg[jarg], 1, atom->ntypes, lo, hi, lmp, Atom::ATOM);
        for (int t = lo; t <= hi; t++) user_types.push_back(t);
        jarg++;
      }
      if (jarg == iarg + 1)
        error->all(FLERR, "Compute icephase types needs at least one atom type, got {}", arg[jarg]);
      iarg = jarg;
      continue;
    }
    if (iarg + 2 > narg) utils::missing_cmd_args(FLERR, "compute icephase " + kw, error);
    const char *val = arg[iarg + 1];
    if (kw == "iterations") {
      iterations = utils::inumeric(FLERR, val, false, lmp);
      if (iterations < 0)
        error->all(FLERR, "Compute icephase iterations must be >= 0, got {}", iterations);
    } else if (kw == "tolerance") {
      tolerance = utils::numeric(FLERR, val, false, lmp);
      if (!(tolerance >= 0.0))
        error->all(FLERR, "Compute icephase tolerance must be >= 0 (Angstrom), got {}", val);
    } else if (kw == "device") {
      device_request = val;
      if (device_request != "auto" && device_request != "cpu" && device_request != "cuda")
        error->all(FLERR, "Compute icephase device must be auto, cpu or cuda, got {}", val);
    } else if (kw == "metric") {
      metric = val;
      if (metric != "euclidean" && metric != "cosine")
        error->all(FLERR, "Compute icephase metric must be euclidean or cosine, got {}", val);
    } else if (kw == "threshold") {
      threshold = utils::numeric(FLERR, val, false, lmp);
      if (!(threshold > 0.0) || !std::isfinite(threshold))
        error->all(FLERR, "Compute icephase threshold must be a positive number, got {}", val);
      threshold_set = true;
    } else if (kw == "threads") {
      nthreads = utils::inumeric(FLERR, val, false, lmp);
      if (nthreads < 1)
        error->all(FLERR, "Compute icephase threads must be >= 1, got {}", nthreads);
    } else {
      error->all(FLERR,
                 "Unknown compute icephase keyword: {} (known: iterations, tolerance, device, "
                 "types, metric, threshold, threads)",
                 kw);
    }
    iarg += 2;
  }

  const std::string units = update->unit_style;
  if (units != "real" && units != "metal")
    error->all(FLERR,
               "Compute icephase needs units real or metal (lengths in Angstrom, as the model "
               "was trained); this input uses units {}",
               units);
  if (domain->dimension != 3) error->all(FLERR, "Compute icephase needs a 3d system");

  // the embedded Python validates the model file and reads its metadata

  std::string err, json;
  IcephasePython::start(err);
  all_or_error(err.empty() ? err : "Compute icephase: " + err);
  if (!IcephasePython::model_metadata_json(model_path, json, err))
    err = "Compute icephase cannot use model file " + model_path + ": " + err;
  all_or_error(err);
  try {
    parse_metadata(json);
  } catch (std::exception &e) {
    err = "Compute icephase: model file " + model_path + " has unusable metadata (" + e.what() +
        "); re-export it with `icephase export`";
  }
  all_or_error(err);

  // settings the user left out come from the model

  if (metric.empty()) metric = default_metric;
  if (iterations < 0) iterations = default_iterations;
  if (tolerance < 0.0) tolerance = default_tolerance;
  if (!threshold_set) {
    auto it = default_thresholds.find("denoised/" + metric);
    if (it == default_thresholds.end())
      error->all(FLERR,
                 "Compute icephase: model file {} has no calibrated threshold for denoised/{}; "
                 "give one with the threshold keyword (or calibrate the model with "
                 "`icephase calibrate`)",
                 model_path, metric);
    threshold = it->second;
  }

  // libtorch denoiser

  bool cuda = torch::cuda::is_available();
  if (device_request == "cuda" && !cuda)
    error->all(FLERR,
               "Compute icephase: device cuda requested, but libtorch finds no usable CUDA "
               "device (a CPU-only torch build, or no GPU visible): use device cpu or auto");
  denoiser = std::make_unique<Denoiser>();
  if (device_request == "cuda" || (device_request == "auto" && cuda)) {
    // one GPU per rank on a node, round robin
    MPI_Comm node;
    int node_rank = 0;
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &node_rank);
    MPI_Comm_free(&node);
    const int ngpu = std::max(1, (int) torch::cuda::device_count());
    denoiser->device = torch::Device(torch::kCUDA, node_rank % ngpu);
  }
  device_name = denoiser->device.str();
  err.clear();
  try {
    denoiser->module = torch::jit::load(model_path, denoiser->device);
    denoiser->module.eval();
  } catch (const c10::Error &e) {
    err = "Compute icephase: libtorch cannot load the denoiser from " + model_path + ": " +
        e.what_without_backtrace();
  } catch (const std::exception &e) {
    err = "Compute icephase: libtorch cannot load the denoiser from " + model_path + ": " +
        e.what();
  }
  all_or_error(err);

  peratom_flag = 1;
  size_peratom_cols = NCOLS;
  vector_flag = 1;
  size_vector = max_code + 1;
  extvector = 1;    // atom counts grow with the system
  comm_forward = 3;
  dynamic_group_allow = 0;

  memory->create(counts, size_vector, "icephase:counts");
  for (int k = 0; k < size_vector; k++) counts[k] = 0.0;
  vector = counts;
}

/* ---------------------------------------------------------------------- */

ComputeIcephase::~ComputeIcephase()
{
  memory->destroy(disp);
  memory->destroy(array_atom);
  memory->destroy(counts);
}

/* ----------------------------------------------------------------------
   metadata.json of the model file (already validated by Python)
------------------------------------------------------------------------- */

void ComputeIcephase::parse_metadata(const std::string &text)
{
  auto meta = json::parse(text);
  r_max = meta.at("r_max").get<double>();
  ghost_cutoff = meta.at("ghost_cutoff").get<double>();
  receptive_field = meta.at("receptive_field").get<double>();
  default_iterations = meta.at("iterations").get<int>();
  default_tolerance = meta.at("tolerance").get<double>();
  default_metric = meta.at("metric").get<std::string>();
  for (auto &item : meta.at("thresholds").items())
    default_thresholds[item.key()] = item.value().get<double>();

  std::map<int, std::string> table;
  for (auto &phase : meta.at("phases"))
    table[phase.at("code").get<int>()] = phase.at("name").get<std::string>();
  if (table.empty() || table.begin()->first != -1 || table.count(0) == 0)
    throw std::runtime_error("the phase table must hold codes -1 (not analysed) and 0 (liquid)");
  max_code = table.rbegin()->first;
  if ((int) table.size() != max_code + 2)
    throw std::runtime_error("the phase codes must run -1, 0, 1, ... without gaps");
  phase_names.clear();
  for (auto &entry : table) phase_names.push_back(entry.second);
  if (!(r_max > 0.0) || !(ghost_cutoff >= r_max))
    throw std::runtime_error("r_max and ghost_cutoff must be positive with ghost_cutoff >= r_max");
}

/* ---------------------------------------------------------------------- */

void ComputeIcephase::init()
{
  resolve_types();
  check_ghost_cutoff();
  log_settings();
}

/* ----------------------------------------------------------------------
   which atom types are oxygen: the types keyword, else the types present
   in the group with the mass of oxygen, else the group's only type
------------------------------------------------------------------------- */

void ComputeIcephase::resolve_types()
{
  const int ntypes = atom->ntypes;
  const int nlocal = atom->nlocal;
  const int *type = atom->type;
  const int *mask = atom->mask;

  // types present in the group, and whether each has the mass of oxygen

  std::vector<int> mine(2 * (ntypes + 1), 0), all(2 * (ntypes + 1), 0);
  for (int i = 0; i < nlocal; i++) {
    if (!(mask[i] & groupbit)) continue;
    const int t = type[i];
    mine[t] = 1;
    double m = -1.0;
    if (atom->rmass)
      m = atom->rmass[i];
    else if (atom->mass && atom->mass_setflag && atom->mass_setflag[t])
      m = atom->mass[t];
    if (std::fabs(m - OXYGEN_MASS) < OXYGEN_MASS_TOL) mine[ntypes + 1 + t] = 1;
  }
  MPI_Allreduce(mine.data(), all.data(), (int) mine.size(), MPI_INT, MPI_MAX, world);

  std::vector<int> present, heavy;
  for (int t = 1; t <= ntypes; t++) {
    if (!all[t]) continue;
    present.push_back(t);
    if (all[ntypes + 1 + t]) heavy.push_back(t);
  }
  auto join = [](const std::vector<int> &v) {
    std::string s;
    for (int t : v) s += (s.empty() ? "" : " ") + std::to_string(t);
    return s.empty() ? std::string("none") : s;
  };

  std::vector<int> chosen;
  std::string how;
  if (!user_types.empty()) {
    chosen = user_types;
    how = "from the types keyword";
    bool any = false;
    for (int t : chosen) any = any || all[t];
    if (!any)
      error->all(FLERR,
                 "Compute icephase: no atom of group {} has an oxygen type ({}, from the types "
                 "keyword); the group holds atom types: {}",
                 group->names[igroup], join(chosen), join(present));
  } else if (!heavy.empty()) {
    chosen = heavy;
    how = "group types with the mass of oxygen";
  } else if (present.size() == 1) {
    chosen = present;
    how = "the group's only atom type";
  } else if (present.empty()) {
    error->all(FLERR, "Compute icephase: group {} holds no atoms", group->names[igroup]);
  } else {
    error->all(FLERR,
               "Compute icephase cannot tell which atom types of group {} are oxygen (types {} "
               "present, none with mass {}): name them with the types keyword, "
               "e.g. types {}",
               group->names[igroup], join(present), OXYGEN_MASS, present[0]);
  }

  is_oxygen.assign(ntypes + 1, 0);
  for (int t : chosen) is_oxygen[t] = 1;
  const std::string summary = join(chosen) + " (" + how + ")";
  if (summary != types_logged) logged = false;
  types_logged = summary;
}

/* ----------------------------------------------------------------------
   ghost atoms must reach the receptive field of the network and of SOAP
------------------------------------------------------------------------- */

void ComputeIcephase::check_ghost_cutoff()
{
  if (comm->mode != Comm::SINGLE)
    error->all(FLERR, "Compute icephase needs comm_modify mode single (one ghost cutoff)");

  // what Comm::get_comm_cutoff() will use for this run: the user's ghost
  // cutoff or the neighbor list cutoff, whichever is larger (the neighbor
  // cutoff is only final after Neighbor::init(), which runs after us)
  double pair_cut = force->pair ? force->pair->cutforce : 0.0;
  double have = std::max(comm->cutghostuser, pair_cut + neighbor->skin);
  if (have < ghost_cutoff) {
    // round up, so that the suggested value itself passes this check
    const double need = std::ceil(ghost_cutoff * 100.0 - 1e-6) / 100.0;
    error->all(FLERR,
               "Compute icephase needs a ghost cutoff of {} A: add `comm_modify cutoff {}` to the "
               "input (the ghost cutoff of this run is only {} A)",
               need, need, have);
  }
}

/* ---------------------------------------------------------------------- */

void ComputeIcephase::log_settings()
{
  if (logged) return;
  logged = true;
  if (comm->me != 0) return;

  std::string table, columns;
  for (int code = -1; code <= max_code; code++) {
    table += fmt::format("{}{} = {}", code == -1 ? "" : ", ", code, phase_names[code + 1]);
    if (code >= 0)
      columns += fmt::format("{}[{}] = {}", code == 0 ? "" : ", ", code + 1, phase_names[code + 1]);
  }
  std::string mesg = fmt::format("Compute icephase {}: model {}\n", id, model_path);
  mesg += fmt::format("  phase codes (per-atom column 1): {}\n", table);
  mesg += fmt::format("  global vector (atom counts): {}\n", columns);
  mesg += fmt::format("  oxygen types: {}\n", types_logged);
  mesg += fmt::format("  denoising: {} iterations, tolerance {} A, cutoff {} A, device {}, "
                      "{} torch thread(s)\n",
                      iterations, tolerance, r_max, device_name, nthreads);
  mesg += fmt::format("  classifier: metric {}, threshold {}\n", metric, threshold);
  mesg += fmt::format("  ghost cutoff needed: {} A (receptive field {} A + SOAP reach)\n",
                      ghost_cutoff, receptive_field);
  mesg += fmt::format("  embedded Python: {}\n", IcephasePython::executable());
  utils::logmesg(lmp, mesg);
}

/* ----------------------------------------------------------------------
   collective error: every rank passes its own message (empty = fine);
   if any rank failed, all ranks stop with the first failing rank's message
------------------------------------------------------------------------- */

void ComputeIcephase::all_or_error(const std::string &local_error)
{
  const int nprocs = comm->nprocs;
  int mine = local_error.empty() ? nprocs : comm->me;
  int first;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, world);
  if (first == nprocs) return;

  int len = (comm->me == first) ? (int) local_error.size() : 0;
  MPI_Bcast(&len, 1, MPI_INT, first, world);
  std::string mesg(len, ' ');
  if (comm->me == first) mesg = local_error;
  MPI_Bcast(&mesg[0], len, MPI_CHAR, first, world);
  if (nprocs > 1 && first != 0) mesg += fmt::format(" (on MPI rank {})", first);
  error->all(FLERR, mesg);
}

/* ---------------------------------------------------------------------- */

void ComputeIcephase::grow_arrays()
{
  if (atom->nmax <= nmax) return;
  nmax = atom->nmax;
  memory->destroy(disp);
  memory->destroy(array_atom);
  memory->create(disp, nmax, 3, "icephase:disp");
  memory->create(array_atom, nmax, NCOLS, "icephase:array_atom");
}

/* ----------------------------------------------------------------------
   the atoms this rank denoises: analysed local atoms first, then ghosts
   (both: in the group, with an oxygen type)
------------------------------------------------------------------------- */

void ComputeIcephase::collect_cloud(int &nlocal_cloud)
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int *type = atom->type;
  const int *mask = atom->mask;

  cloud.clear();
  for (int i = 0; i < nlocal; i++)
    if ((mask[i] & groupbit) && is_oxygen[type[i]]) cloud.push_back(i);
  nlocal_cloud = (int) cloud.size();
  for (int i = nlocal; i < nall; i++)
    if ((mask[i] & groupbit) && is_oxygen[type[i]]) cloud.push_back(i);
}

/* ----------------------------------------------------------------------
   all directed pairs of cloud atoms closer than r_max (binned search);
   edges = [centres..., neighbours...], the [2, E] layout of the model
------------------------------------------------------------------------- */

void ComputeIcephase::build_edges(int n)
{
  edges.clear();
  if (n == 0) return;
  const double *x = cloud_x.data();
  const double cut = r_max, cutsq = r_max * r_max;

  double lo[3], hi[3];
  for (int d = 0; d < 3; d++) lo[d] = hi[d] = x[d];
  for (int k = 1; k < n; k++)
    for (int d = 0; d < 3; d++) {
      lo[d] = std::min(lo[d], x[3 * k + d]);
      hi[d] = std::max(hi[d], x[3 * k + d]);
    }

  // bins at least one cutoff wide, so neighbours are in the 27 adjacent bins;
  // a sparse cloud gets wider bins (the bin count stays near the atom count)
  double size = cut;
  const double limit = 2.0 * n + 1000.0;
  auto count_bins = [&](double s) {
    double c = 1.0;
    for (int d = 0; d < 3; d++) c *= std::max(1.0, std::floor((hi[d] - lo[d]) / s));
    return c;
  };
  while (count_bins(size) > limit) size *= 1.5;
  int nb[3];
  double binsize[3];
  for (int d = 0; d < 3; d++) {
    nb[d] = std::max(1, (int) std::floor((hi[d] - lo[d]) / size));
    binsize[d] = (hi[d] - lo[d]) / nb[d];
    if (binsize[d] <= 0.0) binsize[d] = 1.0;
  }
  auto bin_of = [&](const double *p, int *b) {
    for (int d = 0; d < 3; d++) b[d] = std::min(nb[d] - 1, (int) ((p[d] - lo[d]) / binsize[d]));
  };

  const long nbins = (long) nb[0] * nb[1] * nb[2];
  std::vector<int> head(nbins, -1), next(n, -1);
  for (int k = n - 1; k >= 0; k--) {
    int b[3];
    bin_of(&x[3 * k], b);
    const long ib = ((long) b[2] * nb[1] + b[1]) * nb[0] + b[0];
    next[k] = head[ib];
    head[ib] = k;
  }

  std::vector<int64_t> src, dst;
  src.reserve((size_t) n * 16);
  dst.reserve((size_t) n * 16);
  for (int k = 0; k < n; k++) {
    const double *p = &x[3 * k];
    int b[3];
    bin_of(p, b);
    for (int bz = std::max(0, b[2] - 1); bz <= std::min(nb[2] - 1, b[2] + 1); bz++)
      for (int by = std::max(0, b[1] - 1); by <= std::min(nb[1] - 1, b[1] + 1); by++)
        for (int bx = std::max(0, b[0] - 1); bx <= std::min(nb[0] - 1, b[0] + 1); bx++)
          for (int j = head[((long) bz * nb[1] + by) * nb[0] + bx]; j >= 0; j = next[j]) {
            if (j == k) continue;
            const double dx = x[3 * j] - p[0];
            const double dy = x[3 * j + 1] - p[1];
            const double dz = x[3 * j + 2] - p[2];
            if (dx * dx + dy * dy + dz * dz < cutsq) {
              src.push_back(k);
              dst.push_back(j);
            }
          }
  }
  edges.resize(2 * src.size());
  std::copy(src.begin(), src.end(), edges.begin());
  std::copy(dst.begin(), dst.end(), edges.begin() + src.size());
}

/* ----------------------------------------------------------------------
   one denoising step: disp of the local cloud atoms -= eps(cloud)
------------------------------------------------------------------------- */

bool ComputeIcephase::denoise_step(int n, int nlocal_cloud, double &maxstep, std::string &err)
{
  maxstep = 0.0;
  if (nlocal_cloud == 0) return true;
  try {
    c10::InferenceMode guard;
    at::set_num_threads(nthreads);
    const int64_t nedge = (int64_t) edges.size() / 2;
    cloud_x32.resize(3 * (size_t) n);
    for (size_t k = 0; k < cloud_x32.size(); k++) cloud_x32[k] = (float) cloud_x[k];

    const auto dev = denoiser->device;
    auto pos = torch::from_blob(cloud_x32.data(), {n, 3}, torch::kFloat32).to(dev);
    auto edge_index = torch::from_blob(edges.data(), {2, nedge}, torch::kInt64).to(dev);
    auto shift = torch::zeros({nedge, 3}, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
    auto eps = denoiser->module.forward({pos, edge_index, shift}).toTensor();
    eps = eps.to(torch::kCPU, torch::kFloat64).contiguous();
    if (eps.dim() != 2 || eps.size(0) != n || eps.size(1) != 3) {
      std::string shape;
      for (auto s : eps.sizes()) shape += (shape.empty() ? "" : ", ") + std::to_string(s);
      err = fmt::format("Compute icephase: the denoiser returned shape [{}] for {} atoms (expected "
                        "[{}, 3]): this is not an icephase denoiser",
                        shape, n, n);
      return false;
    }
    const double *e = eps.data_ptr<double>();
    for (int k = 0; k < nlocal_cloud; k++) {
      const int i = cloud[k];
      const double *s = &e[3 * k];
      if (!std::isfinite(s[0]) || !std::isfinite(s[1]) || !std::isfinite(s[2])) {
        err = fmt::format("Compute icephase: the denoiser returned NaN or Inf for atom ID {}",
                          atom->tag[i]);
        return false;
      }
      disp[i][0] -= s[0];
      disp[i][1] -= s[1];
      disp[i][2] -= s[2];
      maxstep = std::max(maxstep, std::sqrt(s[0] * s[0] + s[1] * s[1] + s[2] * s[2]));
    }
  } catch (const c10::Error &e) {
    err = std::string("Compute icephase: the denoiser failed in libtorch: ") +
        e.what_without_backtrace();
    return false;
  } catch (const std::exception &e) {
    err = std::string("Compute icephase: the denoiser failed: ") + e.what();
    return false;
  }
  return true;
}

/* ---------------------------------------------------------------------- */

void ComputeIcephase::compute_peratom()
{
  invoked_peratom = update->ntimestep;
  grow_arrays();

  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  double **x = atom->x;

  int nlocal_cloud;
  collect_cloud(nlocal_cloud);
  const int n = (int) cloud.size();

  // NaN or Inf coordinates: stop on all ranks together

  bigint nbad = 0, nbad_all = 0;
  tagint first_bad = MAXTAGINT, first_bad_all = MAXTAGINT;
  for (int k = 0; k < nlocal_cloud; k++) {
    const int i = cloud[k];
    if (!std::isfinite(x[i][0]) || !std::isfinite(x[i][1]) || !std::isfinite(x[i][2])) {
      nbad++;
      first_bad = std::min(first_bad, atom->tag[i]);
    }
  }
  MPI_Allreduce(&nbad, &nbad_all, 1, MPI_LMP_BIGINT, MPI_SUM, world);
  if (nbad_all) {
    MPI_Allreduce(&first_bad, &first_bad_all, 1, MPI_LMP_TAGINT, MPI_MIN, world);
    error->all(FLERR,
               "Compute icephase: {} analysed atoms have NaN or Inf coordinates (first: atom ID "
               "{}): the simulation has blown up or the input is corrupt",
               nbad_all, first_bad_all);
  }

  for (int i = 0; i < nall; i++) disp[i][0] = disp[i][1] = disp[i][2] = 0.0;
  cloud_x.resize(3 * (size_t) n);
  auto fill_positions = [&]() {
    for (int k = 0; k < n; k++) {
      const int i = cloud[k];
      for (int d = 0; d < 3; d++) cloud_x[3 * k + d] = x[i][d] + disp[i][d];
    }
  };

  // denoise: locals step, ghosts follow their owners through forward comm

  std::string err;
  for (int iter = 0; iter < iterations; iter++) {
    fill_positions();
    build_edges(n);
    double maxstep = 0.0, maxstep_all = 0.0;
    err.clear();
    denoise_step(n, nlocal_cloud, maxstep, err);
    all_or_error(err);
    comm->forward_comm(this);
    MPI_Allreduce(&maxstep, &maxstep_all, 1, MPI_DOUBLE, MPI_MAX, world);
    if (tolerance > 0.0 && maxstep_all < tolerance) break;
  }

  // classify the denoised cloud (Python: DScribe SOAP + nearest reference)

  fill_positions();
  codes.assign(nlocal_cloud, 0);
  distances.assign(nlocal_cloud, 0.0);
  err.clear();
  if (nlocal_cloud > 0 &&
      !IcephasePython::classify(model_path, cloud_x.data(), n, nlocal_cloud, metric, threshold,
                                codes.data(), distances.data(), err))
    err = "Compute icephase: the classifier failed: " + err;
  for (int k = 0; k < nlocal_cloud && err.empty(); k++)
    if (codes[k] < 0 || codes[k] > max_code)
      err = fmt::format("Compute icephase: the classifier returned phase code {} outside 0..{}",
                        codes[k], max_code);
  all_or_error(err);

  // per-atom output and phase counts

  std::vector<double> mine(size_vector, 0.0);
  for (int i = 0; i < nlocal; i++) {
    array_atom[i][0] = -1.0;
    for (int c = 1; c < NCOLS; c++) array_atom[i][c] = 0.0;
  }
  for (int k = 0; k < nlocal_cloud; k++) {
    const int i = cloud[k];
    array_atom[i][0] = codes[k];
    array_atom[i][1] = distances[k];
    array_atom[i][2] = disp[i][0];
    array_atom[i][3] = disp[i][1];
    array_atom[i][4] = disp[i][2];
    mine[codes[k]] += 1.0;
  }
  MPI_Allreduce(mine.data(), counts, size_vector, MPI_DOUBLE, MPI_SUM, world);
}

/* ----------------------------------------------------------------------
   phase counts; computed with the per-atom data, once per output step
------------------------------------------------------------------------- */

void ComputeIcephase::compute_vector()
{
  invoked_vector = update->ntimestep;
  if (!(invoked_flag & INVOKED_PERATOM)) {
    compute_peratom();
    invoked_flag |= INVOKED_PERATOM;
  }
}

/* ---------------------------------------------------------------------- */

int ComputeIcephase::pack_forward_comm(int n, int *list, double *buf, int /*pbc_flag*/,
                                       int * /*pbc*/)
{
  // displacements are the same for every periodic image: no pbc shift
  int m = 0;
  for (int k = 0; k < n; k++) {
    const int j = list[k];
    buf[m++] = disp[j][0];
    buf[m++] = disp[j][1];
    buf[m++] = disp[j][2];
  }
  return m;
}

/* ---------------------------------------------------------------------- */

void ComputeIcephase::unpack_forward_comm(int n, int first, double *buf)
{
  int m = 0;
  const int last = first + n;
  for (int i = first; i < last; i++) {
    disp[i][0] = buf[m++];
    disp[i][1] = buf[m++];
    disp[i][2] = buf[m++];
  }
}

/* ---------------------------------------------------------------------- */

double ComputeIcephase::memory_usage()
{
  double bytes = (double) nmax * (3 + NCOLS) * sizeof(double);
  bytes += (double) cloud.capacity() * sizeof(int);
  bytes += (double) cloud_x.capacity() * sizeof(double) + cloud_x32.capacity() * sizeof(float);
  bytes += (double) edges.capacity() * sizeof(int64_t);
  return bytes;
}
