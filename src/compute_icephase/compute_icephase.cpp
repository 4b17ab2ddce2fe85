/* ----------------------------------------------------------------------
   icephase: LAMMPS compute style "icephase" (plugin)
   SPDX-License-Identifier: GPL-2.0-or-later

   Per-oxygen ice phase: iterative denoising r <- r - eps(r) with a
   TorchScript network (libtorch), then a SOAP classifier run in an
   embedded Python interpreter (icephase_lmp.lammps_bridge).

   Parallel scheme: each rank sees a cloud made of its local oxygens and
   its ghost oxygens (periodic images included). The denoiser graph holds
   the local oxygens and only those ghosts whose owner is on another rank:
   a ghost that is a periodic image of one of this rank's own atoms is
   folded onto that atom (an edge to the ghost becomes an edge to its
   owner, with the image offset x_ghost - x_owner as the edge shift), so
   on one rank the graph is exactly the periodic system, without ghosts.
   Ghost nodes farther than num_layers - 1 graph hops from every local
   oxygen cannot influence a local result within the network's layers:
   their own edges are left out. Each rank keeps the result of its local
   atoms only and refreshes its ghost nodes with a forward communication
   of the displacement (denoised minus original position) after every
   iteration. A displacement needs no periodic image shift, so ghost
   denoised position = ghost x + displacement of its owner is image-safe.
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
#include <climits>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

using namespace LAMMPS_NS;

namespace {
constexpr double OXYGEN_MASS = 15.9994;    // g/mol
constexpr double OXYGEN_MASS_TOL = 0.1;
constexpr int NCOLS = 5;    // code, distance, dx, dy, dz
constexpr int COMM_DISP = 0;     // forward communication of the displacements (3 values)
constexpr int COMM_CLOSE = 1;    // forward communication of the too-close flags (1 value)
constexpr int COMM_LABEL = 2;    // forward communication of the phase codes (boundary step, 1 value)

const std::set<std::string> KEYWORDS = {"iterations", "tolerance", "device",
                                        "types",      "metric",    "threshold",
                                        "threads",    "timing",    "boundary"};

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
    Compute(lmp, narg, arg), threshold(0.0), soap_reach(0.0), malloc_tuned(false),
    lone_known(false), lone_code(0), lone_distance(0.0), diverged_warned(false),
    min_oxygen_distance(0.0), too_close_distance(-1.0), max_step(0.0), runaway_step(0.0),
    max_neighbours(0), close_warned(false),
    config_valid(false), config_step(-1), iterations(-1), tolerance(-1.0), nthreads(1),
    timing(false), boundary_rounds(-1), r_max(0.0), ghost_cutoff(0.0), receptive_field(0.0),
    num_layers(0), max_code(0), default_iterations(0), default_tolerance(0.0),
    default_boundary_rounds(0), boundary_shell(0.0), logged(false), graph_logged(false), nmax(0),
    disp(nullptr), label(nullptr), close_flag(nullptr), comm_mode(COMM_DISP), counts(nullptr),
    nremote(0), nfolded(0), graph_nlocal(0), graph_nghost(0), graph_nedges(0)
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
    } else if (kw == "timing") {
      timing = utils::logical(FLERR, val, false, lmp) == 1;
    } else if (kw == "boundary") {
      boundary_rounds = utils::inumeric(FLERR, val, false, lmp);
      if (boundary_rounds < 0)
        error->all(FLERR, "Compute icephase boundary must be >= 0 (rounds; 0: off), got {}",
                   boundary_rounds);
    } else {
      error->all(FLERR,
                 "Unknown compute icephase keyword: {} (known: iterations, tolerance, device, "
                 "types, metric, threshold, threads, timing, boundary)",
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

  // the classifier's reach: ghosts farther than this from every local
  // oxygen are left out of the SOAP input (DScribe's cost grows with every
  // atom it is given, centre or not); unknown: no ghost is left out
  if (!IcephasePython::soap_reach(model_path, soap_reach, err) || !(soap_reach > 0.0)) {
    soap_reach = 0.0;
    soap_reach_note = "all ghost oxygens (the SOAP reach is unknown: " + err + ")";
    err.clear();
  } else {
    soap_reach_note = fmt::format("ghost oxygens within {:.4g} A of a local one", soap_reach);
  }

  // settings the user left out come from the model

  if (metric.empty()) metric = default_metric;
  if (iterations < 0) iterations = default_iterations;
  if (tolerance < 0.0) tolerance = default_tolerance;
  if (boundary_rounds < 0) boundary_rounds = default_boundary_rounds;
  // the boundary step was tuned on denoised positions (as offline: off without the denoiser)
  if (iterations == 0) boundary_rounds = 0;
  if (!threshold_set) {
    // iterations 0 classifies the raw positions: that pipeline has its own calibrated threshold
    const std::string key = (iterations == 0 ? "raw/" : "denoised/") + metric;
    auto it = default_thresholds.find(key);
    if (it == default_thresholds.end())
      error->all(FLERR,
                 "Compute icephase: model file {} has no calibrated threshold for {}; "
                 "give one with the threshold keyword (or calibrate the model with "
                 "`icephase calibrate`)",
                 model_path, key);
    threshold = it->second;
  }

  // Each invocation allocates and frees hundreds of MB (libtorch's edge
  // tensors, DScribe's and numpy's arrays). glibc returns freed blocks above
  // its mmap/trim thresholds to the system, and every invocation then pays
  // the page faults and the zeroing of that memory again (half the time of
  // an 8000-oxygen invocation on one core). Keep freed memory for reuse:
  // blocks up to 32 MB from the heap, no trimming of the heap below 2 GB.
  // (Process-wide; the memory is the peak that every invocation needs.)
#if defined(__GLIBC__)
  malloc_tuned = mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1 &&
      mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#endif

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
  memory->destroy(label);
  memory->destroy(close_flag);
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
  // without the layer count, no ghost node is pruned (the graph is still exact)
  num_layers = meta.contains("num_layers") ? meta.at("num_layers").get<int>() : 0;
  default_iterations = meta.at("iterations").get<int>();
  default_tolerance = meta.at("tolerance").get<double>();
  default_metric = meta.at("metric").get<std::string>();
  for (auto &item : meta.at("thresholds").items())
    default_thresholds[item.key()] = item.value().get<double>();
  if (meta.contains("boundary")) {
    default_boundary_rounds = meta.at("boundary").at("rounds").get<int>();
    boundary_shell = meta.at("boundary").at("shell").get<double>();
  }

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

  // added by icephase_lmp.lammps_bridge from the package's own constants
  const auto &policy = meta.at("policy");
  min_oxygen_distance = policy.at("min_oxygen_distance").get<double>();
  too_close_distance = policy.at("too_close_distance").get<double>();
  max_step = policy.at("max_step").get<double>();
  runaway_step = policy.at("runaway_step").get<double>();
  max_neighbours = policy.at("max_neighbours").get<int>();
  if (!(min_oxygen_distance > 0.0) || !(max_step > 0.0) || !(runaway_step >= max_step) ||
      max_neighbours < 1)
    throw std::runtime_error("the policy limits of icephase_lmp are not usable");
}

/* ---------------------------------------------------------------------- */

void ComputeIcephase::init()
{
  config_valid = false;    // a new run, or rerun's next snapshot: compute afresh
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
  mesg += fmt::format("  classifier: metric {}, threshold {}; SOAP environment: {}\n", metric,
                      threshold, soap_reach_note);
  if (boundary_rounds > 0)
    mesg += fmt::format("  boundary step: {} round(s): a liquid-labelled oxygen with an ordered "
                        "first shell ({} A) next to ice takes its neighbour's phase\n",
                        boundary_rounds, boundary_shell);
  else
    mesg += "  boundary step: off\n";
  mesg += fmt::format("  ghost cutoff needed: {} A (receptive field {} A + SOAP reach)\n",
                      ghost_cutoff, receptive_field);
  mesg += fmt::format("  embedded Python: {}\n", IcephasePython::executable());
  if (malloc_tuned)
    mesg += "  memory: glibc malloc keeps freed memory for the next invocation (mmap threshold "
            "32 MB, no trimming)\n";
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
  memory->destroy(label);
  memory->destroy(close_flag);
  memory->destroy(array_atom);
  memory->create(disp, nmax, 3, "icephase:disp");
  memory->create(label, nmax, "icephase:label");
  memory->create(close_flag, nmax, "icephase:close_flag");
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
   oxygens closer than min_oxygen_distance to another oxygen are not
   water (phases.py in icephase_lmp says why): the offline pipeline and this
   compute both label them liquid and leave them out of the others'
   denoising and SOAP. Each rank flags its local oxygens (their neighbours
   within that distance are all in its cloud), a forward communication
   gives every ghost its owner's flag, and flagged atoms leave the cloud.
   Returns the number of such oxygens on all ranks; first: the smallest of
   their atom IDs (all ranks). Without any, nothing is communicated.
------------------------------------------------------------------------- */

bigint ComputeIcephase::exclude_close(int &nlocal_cloud, tagint &first)
{
  double **x = atom->x;
  const int n = (int) cloud.size();
  const int nall = atom->nlocal + atom->nghost;
  excluded.clear();
  for (int i = 0; i < nall; i++) close_flag[i] = 0.0;

  // cubic bins one distance wide, hashed (the cloud may be sparse and wide);
  // a scan stops at the first close atom, so a pile of atoms on one spot
  // costs no more than one bin's worth per atom
  const double cut = min_oxygen_distance, cutsq = cut * cut;
  auto key_of = [&](const double *p, int dx, int dy, int dz) {
    const int64_t bx = (int64_t) std::floor(p[0] / cut) + dx;
    const int64_t by = (int64_t) std::floor(p[1] / cut) + dy;
    const int64_t bz = (int64_t) std::floor(p[2] / cut) + dz;
    return ((bx & 0x1fffff) << 42) | ((by & 0x1fffff) << 21) | (bz & 0x1fffff);
  };
  std::unordered_map<int64_t, int> head;
  head.reserve(2 * (size_t) n);
  std::vector<int> next(n, -1);
  for (int k = 0; k < n; k++) {
    auto it = head.emplace(key_of(x[cloud[k]], 0, 0, 0), -1).first;
    next[k] = it->second;
    it->second = k;
  }
  bigint nclose = 0;
  first = MAXTAGINT;
  for (int k = 0; k < nlocal_cloud; k++) {
    const double *p = x[cloud[k]];
    bool close = false;
    for (int dz = -1; dz <= 1 && !close; dz++)
      for (int dy = -1; dy <= 1 && !close; dy++)
        for (int dx = -1; dx <= 1 && !close; dx++) {
          auto it = head.find(key_of(p, dx, dy, dz));
          if (it == head.end()) continue;
          for (int j = it->second; j >= 0; j = next[j]) {
            if (j == k) continue;
            const double *q = x[cloud[j]];
            const double ex = q[0] - p[0], ey = q[1] - p[1], ez = q[2] - p[2];
            if (ex * ex + ey * ey + ez * ez < cutsq) {
              close = true;
              break;
            }
          }
        }
    if (!close) continue;
    close_flag[cloud[k]] = 1.0;
    nclose++;
    first = std::min(first, atom->tag[cloud[k]]);
  }

  bigint nclose_all = 0;
  MPI_Allreduce(&nclose, &nclose_all, 1, MPI_LMP_BIGINT, MPI_SUM, world);
  if (nclose_all == 0) return 0;
  tagint first_all = MAXTAGINT;
  MPI_Allreduce(&first, &first_all, 1, MPI_LMP_TAGINT, MPI_MIN, world);
  first = first_all;
  comm_mode = COMM_CLOSE;
  comm->forward_comm(this);
  comm_mode = COMM_DISP;

  // the cloud without them: local oxygens first, then ghosts, as before
  int kept = 0, kept_local = 0;
  for (int k = 0; k < n; k++) {
    const int i = cloud[k];
    if (close_flag[i] != 0.0) {
      if (k < nlocal_cloud) excluded.push_back(i);
      continue;
    }
    cloud[kept++] = i;
    if (k < nlocal_cloud) kept_local++;
  }
  cloud.resize(kept);
  nlocal_cloud = kept_local;
  return nclose_all;
}

/* ----------------------------------------------------------------------
   which cloud atom stands for each ghost in the denoiser graph: a ghost
   whose atom ID belongs to a local oxygen of this rank is that oxygen
   (shifted by the periodic image offset); any other ghost is a node of
   its own, refreshed by forward communication
------------------------------------------------------------------------- */

void ComputeIcephase::find_owners(int nlocal_cloud)
{
  const int n = (int) cloud.size();
  double **x = atom->x;
  const tagint *tag = atom->tag;

  owner.resize(n);
  for (int k = 0; k < n; k++) owner[k] = k;
  image.assign(3 * (size_t) n, 0.0);

  // the bins of the graph search span the cloud before denoising: an atom
  // that the denoiser throws far away (it happens to overlapping atoms)
  // then lands in an edge bin instead of stretching every bin
  for (int d = 0; d < 3; d++) bin_lo[d] = bin_hi[d] = 0.0;
  for (int k = 0; k < n; k++)
    for (int d = 0; d < 3; d++) {
      const double v = x[cloud[k]][d];
      if (k == 0 || v < bin_lo[d]) bin_lo[d] = v;
      if (k == 0 || v > bin_hi[d]) bin_hi[d] = v;
    }
  nfolded = 0;
  nremote = n - nlocal_cloud;
  if (!atom->tag_enable || nlocal_cloud == 0 || n == nlocal_cloud) return;

  // atom ID -> cloud index of this rank's local oxygens. (Not atom->map():
  // it may not exist, e.g. for atom_style atomic, and it may return a
  // ghost copy rather than the local atom.)
  std::unordered_map<tagint, int> local_of;
  local_of.reserve(2 * (size_t) nlocal_cloud);
  for (int k = 0; k < nlocal_cloud; k++) local_of.emplace(tag[cloud[k]], k);

  for (int k = nlocal_cloud; k < n; k++) {
    auto it = local_of.find(tag[cloud[k]]);
    if (it == local_of.end()) continue;
    const int i = cloud[k], o = cloud[it->second];
    owner[k] = it->second;
    // from the positions before denoising: both copies move by the same
    // displacement, so the shift stays the periodic image offset
    for (int d = 0; d < 3; d++) image[3 * k + d] = x[i][d] - x[o][d];
    nfolded++;
  }
  nremote -= nfolded;
}

/* ----------------------------------------------------------------------
   the denoiser graph at the current cloud positions: every directed pair
   (centre node, cloud atom) closer than r_max, found with a binned search
   over the cloud; the neighbour is replaced by the node that stands for
   it, with its image offset as the edge shift, so the edge vector
   x(node) + shift - x(centre) is the neighbour's own position.
   With prune: the edges of ghost nodes num_layers or more graph hops away
   from every local oxygen are left out, and so are the ghost nodes more
   than num_layers hops away. A network of num_layers message-passing
   layers cannot carry their information to a local oxygen, so the local
   results do not change; the ghost nodes' own results are discarded
   anyway (forward communication replaces them).
   Output: graph_nodes (local oxygens first), graph_x32 [N][3], edges
   [2][E] (centres, then neighbours), edge_shift32 [E][3].
------------------------------------------------------------------------- */

bool ComputeIcephase::build_graph(int nlocal_cloud, bool prune, std::string &err)
{
  const int n = (int) cloud.size();
  graph_nodes.clear();
  graph_x32.clear();
  edges.clear();
  edge_shift32.clear();
  pair_neighbour.clear();
  graph_nlocal = graph_nghost = 0;
  graph_nedges = 0;
  if (n == 0 || nlocal_cloud == 0) return true;

  const double *x = cloud_x.data();
  const double cut = r_max, cutsq = r_max * r_max;
  const double *lo = bin_lo, *hi = bin_hi;

  // bins at least one cutoff wide, so neighbours are in the 27 adjacent bins
  // (also for atoms outside lo..hi, clamped into the edge bins: clamping
  // keeps two atoms closer than a bin width in the same or adjacent bins);
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
    for (int d = 0; d < 3; d++) {
      const double t = (p[d] - lo[d]) / binsize[d];
      b[d] = t < 1.0 ? 0 : (t >= nb[d] - 1 ? nb[d] - 1 : (int) t);
    }
  };

  const long nbins = (long) nb[0] * nb[1] * nb[2];
  bin_head.assign(nbins, -1);
  bin_next.assign(n, -1);
  for (int k = n - 1; k >= 0; k--) {
    int b[3];
    bin_of(&x[3 * k], b);
    const long ib = ((long) b[2] * nb[1] + b[1]) * nb[0] + b[0];
    bin_next[k] = bin_head[ib];
    bin_head[ib] = k;
  }

  // candidate edges of every node, as cloud indices: centre k's neighbours
  // are pair_neighbour[centre_first[k] .. centre_first[k + 1])
  // (at most max_neighbours per atom: more means the denoiser has collapsed
  // atoms together, and the graph would grow without bound)
  centre_first.assign(n + 1, 0);
  pair_neighbour.reserve((size_t) n * 16);
  const size_t max_pairs = (size_t) max_neighbours * (size_t) n;
  for (int k = 0; k < n; k++) {
    centre_first[k] = (int) pair_neighbour.size();
    if (pair_neighbour.size() > max_pairs) {
      err = fmt::format("Compute icephase: the denoised oxygens have more than {} neighbours each "
                        "within {} A (water has at most ~25): the denoiser has collapsed them "
                        "together; the model file is damaged or not an icephase denoiser",
                        max_neighbours, r_max);
      pair_neighbour.clear();
      return false;
    }
    if (owner[k] != k) continue;    // folded ghost: its owner is the node
    const double *p = &x[3 * k];
    int b[3];
    bin_of(p, b);
    for (int bz = std::max(0, b[2] - 1); bz <= std::min(nb[2] - 1, b[2] + 1); bz++)
      for (int by = std::max(0, b[1] - 1); by <= std::min(nb[1] - 1, b[1] + 1); by++)
        for (int bx = std::max(0, b[0] - 1); bx <= std::min(nb[0] - 1, b[0] + 1); bx++)
          for (int j = bin_head[((long) bz * nb[1] + by) * nb[0] + bx]; j >= 0; j = bin_next[j]) {
            if (j == k) continue;
            const double dx = x[3 * j] - p[0];
            const double dy = x[3 * j + 1] - p[1];
            const double dz = x[3 * j + 2] - p[2];
            if (dx * dx + dy * dy + dz * dz < cutsq) pair_neighbour.push_back(j);
          }
  }
  centre_first[n] = (int) pair_neighbour.size();

  // graph distance from the local oxygens (breadth first, centre to
  // neighbour: the direction in which a layer gathers its messages);
  // without pruning every node takes part with all its edges
  hop.assign(n, -1);
  const bool bfs = prune && num_layers > 0;
  if (bfs) {
    std::vector<int> &queue = bfs_queue;
    queue.clear();
    for (int k = 0; k < nlocal_cloud; k++) {
      hop[k] = 0;
      queue.push_back(k);
    }
    for (size_t q = 0; q < queue.size(); q++) {
      const int u = queue[q];
      if (hop[u] >= num_layers) continue;    // its edges are left out
      for (int e = centre_first[u]; e < centre_first[u + 1]; e++) {
        const int v = owner[pair_neighbour[e]];
        if (hop[v] < 0) {
          hop[v] = hop[u] + 1;
          queue.push_back(v);
        }
      }
    }
  } else {
    for (int k = 0; k < n; k++)
      if (owner[k] == k) hop[k] = 0;
  }
  auto keeps_edges = [&](int k) { return hop[k] >= 0 && (!bfs || hop[k] < num_layers); };

  graph_index.assign(n, -1);
  for (int k = 0; k < n; k++)
    if (owner[k] == k && hop[k] >= 0) {
      graph_index[k] = (int) graph_nodes.size();
      graph_nodes.push_back(k);
    }
  const int ngraph = (int) graph_nodes.size();

  size_t nedge = 0;
  for (int g = 0; g < ngraph; g++) {
    const int k = graph_nodes[g];
    if (keeps_edges(k)) nedge += centre_first[k + 1] - centre_first[k];
  }
  edges.resize(2 * nedge);
  edge_shift32.resize(3 * nedge);
  size_t e = 0;
  for (int g = 0; g < ngraph; g++) {
    const int k = graph_nodes[g];
    if (!keeps_edges(k)) continue;
    for (int c = centre_first[k]; c < centre_first[k + 1]; c++, e++) {
      const int m = pair_neighbour[c];
      edges[e] = g;
      edges[nedge + e] = graph_index[owner[m]];
      for (int d = 0; d < 3; d++) edge_shift32[3 * e + d] = (float) image[3 * m + d];
    }
  }

  graph_x32.resize(3 * (size_t) ngraph);
  for (int g = 0; g < ngraph; g++)
    for (int d = 0; d < 3; d++) graph_x32[3 * g + d] = (float) x[3 * graph_nodes[g] + d];

  graph_nlocal = nlocal_cloud;
  graph_nghost = ngraph - nlocal_cloud;
  graph_nedges = (bigint) nedge;
  return true;
}

/* ----------------------------------------------------------------------
   one denoising step: disp of the local cloud atoms -= eps(graph)
------------------------------------------------------------------------- */

bool ComputeIcephase::denoise_step(int nlocal_cloud, double &maxstep, std::string &err)
{
  maxstep = 0.0;
  if (nlocal_cloud == 0) return true;
  const int64_t ngraph = (int64_t) graph_nodes.size();
  const int64_t nedge = (int64_t) edges.size() / 2;
  try {
    c10::InferenceMode guard;
    at::set_num_threads(nthreads);
    const auto dev = denoiser->device;
    const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
    const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
    auto pos = torch::from_blob(graph_x32.data(), {ngraph, 3}, f32).to(dev);
    torch::Tensor edge_index, shift;
    if (nedge > 0) {
      edge_index = torch::from_blob(edges.data(), {2, nedge}, i64).to(dev);
      shift = torch::from_blob(edge_shift32.data(), {nedge, 3}, f32).to(dev);
    } else {    // isolated atoms only
      edge_index = torch::zeros({2, 0}, i64.device(dev));
      shift = torch::zeros({0, 3}, f32.device(dev));
    }
    auto eps = denoiser->module.forward({pos, edge_index, shift}).toTensor();
    eps = eps.to(torch::kCPU, torch::kFloat64).contiguous();
    if (eps.dim() != 2 || eps.size(0) != ngraph || eps.size(1) != 3) {
      std::string shape;
      for (auto s : eps.sizes()) shape += (shape.empty() ? "" : ", ") + std::to_string(s);
      err = fmt::format("Compute icephase: the denoiser returned shape [{}] for {} atoms (expected "
                        "[{}, 3]): this is not an icephase denoiser",
                        shape, ngraph, ngraph);
      return false;
    }
    // graph nodes 0 .. nlocal_cloud - 1 are cloud atoms 0 .. nlocal_cloud - 1.
    // As offline (icephase_lmp.denoise): a step longer than max_step is
    // shortened to it; a non-finite one, or one beyond runaway_step, stops.
    const double *e = eps.data_ptr<double>();
    const char *advice =
        "the model file is damaged or not an icephase denoiser, or the input is far from water; "
        "check the model with `icephase inspect` and the input's oxygens";
    for (int k = 0; k < nlocal_cloud; k++) {
      const int i = cloud[k];
      const double *s = &e[3 * k];
      const double norm = std::sqrt(s[0] * s[0] + s[1] * s[1] + s[2] * s[2]);
      if (!std::isfinite(norm)) {
        err = fmt::format("Compute icephase: the denoiser returned NaN or Inf for atom ID {}: {}",
                          atom->tag[i], advice);
        return false;
      }
      if (norm > runaway_step) {
        err = fmt::format("Compute icephase: the denoiser returned a step of {:.4g} A (the limit "
                          "is {:g} A; thermal motion is a fraction of an Angstrom) for atom ID {}: "
                          "{}",
                          norm, runaway_step, atom->tag[i], advice);
        return false;
      }
      const double scale = norm > max_step ? max_step / norm : 1.0;
      disp[i][0] -= scale * s[0];
      disp[i][1] -= scale * s[1];
      disp[i][2] -= scale * s[2];
      maxstep = std::max(maxstep, scale * norm);
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

/* ----------------------------------------------------------------------
   the configuration the last results belong to: the step, the box, and
   every local atom's ID, type, mask and position (all must be identical,
   on every rank, for the results to be reused)
------------------------------------------------------------------------- */

void ComputeIcephase::remember_configuration()
{
  const int nlocal = atom->nlocal;
  config_step = update->ntimestep;
  config_box = {domain->boxlo[0], domain->boxlo[1], domain->boxlo[2], domain->boxhi[0],
                domain->boxhi[1], domain->boxhi[2], domain->xy,        domain->xz,
                domain->yz};
  config_atoms.resize(6 * (size_t) nlocal);
  for (int i = 0; i < nlocal; i++) {
    double *c = &config_atoms[6 * (size_t) i];
    c[0] = (double) atom->tag[i];
    c[1] = atom->type[i];
    c[2] = atom->mask[i];
    c[3] = atom->x[i][0];
    c[4] = atom->x[i][1];
    c[5] = atom->x[i][2];
  }
  config_valid = true;
}

bool ComputeIcephase::same_configuration()
{
  const int nlocal = atom->nlocal;
  int same = config_valid && config_step == update->ntimestep && atom->nmax <= nmax &&
      config_atoms.size() == 6 * (size_t) nlocal;
  if (same) {
    const std::vector<double> box = {domain->boxlo[0], domain->boxlo[1], domain->boxlo[2],
                                     domain->boxhi[0], domain->boxhi[1], domain->boxhi[2],
                                     domain->xy,       domain->xz,       domain->yz};
    same = box == config_box;
  }
  for (int i = 0; same && i < nlocal; i++) {
    const double *c = &config_atoms[6 * (size_t) i];
    same = c[0] == (double) atom->tag[i] && c[1] == atom->type[i] && c[2] == atom->mask[i] &&
        c[3] == atom->x[i][0] && c[4] == atom->x[i][1] && c[5] == atom->x[i][2];
  }
  int all_same = 0;
  MPI_Allreduce(&same, &all_same, 1, MPI_INT, MPI_MIN, world);
  return all_same == 1;
}

/* ----------------------------------------------------------------------
   keep in soap_index (local centres [0, nlocal_soap), then ghosts) only
   the ghosts within the SOAP reach of a centre, at the denoised positions
   (cloud_x): the others change no centre's SOAP vector. Binned search
   over the centres, bins one reach (plus a margin) wide.
------------------------------------------------------------------------- */

void ComputeIcephase::select_environment(int nlocal_soap)
{
  const int nsoap = (int) soap_index.size();
  if (!(soap_reach > 0.0) || nsoap == nlocal_soap) return;
  if (nlocal_soap == 0) {
    soap_index.clear();
    return;
  }
  // the margin only adds atoms that DScribe ignores: the result is the same
  const double cut = soap_reach + 0.5, cutsq = cut * cut;
  const double *x = cloud_x.data();

  double lo[3], hi[3];
  for (int d = 0; d < 3; d++) lo[d] = hi[d] = x[3 * soap_index[0] + d];
  for (int s = 1; s < nlocal_soap; s++)
    for (int d = 0; d < 3; d++) {
      lo[d] = std::min(lo[d], x[3 * soap_index[s] + d]);
      hi[d] = std::max(hi[d], x[3 * soap_index[s] + d]);
    }
  int nb[3];
  double binsize[3];
  for (int d = 0; d < 3; d++) {
    nb[d] = std::max(1, std::min(1000, (int) std::floor((hi[d] - lo[d]) / cut)));
    binsize[d] = std::max(cut, (hi[d] - lo[d]) / nb[d]);
  }
  // (a centre lies in bin 0..nb-1; a ghost more than one bin outside is out of reach)
  auto bin_of = [&](const double *p, int *b) {
    for (int d = 0; d < 3; d++) {
      const double t = std::floor((p[d] - lo[d]) / binsize[d]);
      b[d] = t < -1.0 ? -2 : (t > nb[d] ? nb[d] + 1 : (int) t);
    }
  };
  const long nbins = (long) nb[0] * nb[1] * nb[2];
  env_head.assign(nbins, -1);
  env_next.assign(nlocal_soap, -1);
  for (int s = nlocal_soap - 1; s >= 0; s--) {
    int b[3];
    bin_of(&x[3 * soap_index[s]], b);
    for (int d = 0; d < 3; d++) b[d] = std::max(0, std::min(nb[d] - 1, b[d]));
    const long ib = ((long) b[2] * nb[1] + b[1]) * nb[0] + b[0];
    env_next[s] = env_head[ib];
    env_head[ib] = s;
  }

  int kept = nlocal_soap;
  for (int s = nlocal_soap; s < nsoap; s++) {
    const double *p = &x[3 * soap_index[s]];
    int b[3];
    bin_of(p, b);
    bool near = false;
    for (int bz = std::max(0, b[2] - 1); !near && bz <= std::min(nb[2] - 1, b[2] + 1); bz++)
      for (int by = std::max(0, b[1] - 1); !near && by <= std::min(nb[1] - 1, b[1] + 1); by++)
        for (int bx = std::max(0, b[0] - 1); !near && bx <= std::min(nb[0] - 1, b[0] + 1); bx++)
          for (int c = env_head[((long) bz * nb[1] + by) * nb[0] + bx]; c >= 0; c = env_next[c]) {
            const double *q = &x[3 * soap_index[c]];
            const double dx = p[0] - q[0], dy = p[1] - q[1], dz = p[2] - q[2];
            if (dx * dx + dy * dy + dz * dz < cutsq) {
              near = true;
              break;
            }
          }
    if (near) soap_index[kept++] = soap_index[s];
  }
  soap_index.resize(kept);
}

/* ----------------------------------------------------------------------
   boundary step (icephase_lmp.boundary): in each round, every analysed
   atom's code goes to its ghost copies (forward communication), then the
   Python side gives each liquid-labelled local centre with an ordered first
   shell the phase of its nearest ice-labelled first-shell neighbour. All
   centres decide on the previous round's codes, so the result does not
   depend on how the atoms are spread over the ranks. The cloud reaches the
   SOAP reach (> two first shells) beyond the centres, which the ordered-shell
   test of a centre needs.
------------------------------------------------------------------------- */

void ComputeIcephase::extend_ice(int nlocal_cloud, int nlocal_soap, const double *soap_positions)
{
  const int nall = atom->nlocal + atom->nghost;
  const int nsoap = (int) soap_index.size();
  for (int i = 0; i < nall; i++) label[i] = -1.0;
  for (int k = 0; k < nlocal_cloud; k++) label[cloud[k]] = lone_code;    // diverged ones keep it
  for (int s = 0; s < nlocal_soap; s++) label[cloud[soap_index[s]]] = codes[s];
  cloud_codes.resize(nsoap);
  grown.resize(nlocal_soap);

  std::string err;
  for (int round = 0; round < boundary_rounds; round++) {
    comm_mode = COMM_LABEL;
    comm->forward_comm(this);
    comm_mode = COMM_DISP;
    for (int s = 0; s < nsoap; s++) cloud_codes[s] = (int) label[cloud[soap_index[s]]];
    if (nlocal_soap > 0 &&
        !IcephasePython::grow(model_path, soap_positions, nsoap, nlocal_soap, cloud_codes.data(),
                              ordered.data(), grown.data(), err))
      err = "Compute icephase: the boundary step failed: " + err;
    all_or_error(err);
    for (int s = 0; s < nlocal_soap; s++) {
      codes[s] = grown[s];
      label[cloud[soap_index[s]]] = grown[s];
    }
  }
}

/* ----------------------------------------------------------------------
   at the setup of the first run: log the size of the denoiser graph that
   the first iteration of an invocation on this configuration uses (here,
   not at the first invocation, whose log line would split the thermo
   header from its first row)
------------------------------------------------------------------------- */

void ComputeIcephase::setup()
{
  if (graph_logged) return;
  int nlocal_cloud;
  collect_cloud(nlocal_cloud);
  double **x = atom->x;
  int bad = 0, anybad = 0;
  for (int k = 0; k < nlocal_cloud; k++) {
    const int i = cloud[k];
    if (!std::isfinite(x[i][0]) || !std::isfinite(x[i][1]) || !std::isfinite(x[i][2])) bad = 1;
  }
  MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, world);
  if (anybad) return;    // the invocation reports it
  find_owners(nlocal_cloud);
  cloud_x.resize(3 * cloud.size());
  for (size_t k = 0; k < cloud.size(); k++)
    for (int d = 0; d < 3; d++) cloud_x[3 * k + d] = x[cloud[k]][d];
  std::string ignored;    // an invocation reports it
  build_graph(nlocal_cloud, nremote > 0, ignored);
  log_graph();
}

/* ----------------------------------------------------------------------
   the size of the last graph built, summed over the ranks (rank 0 logs it)
------------------------------------------------------------------------- */

void ComputeIcephase::log_graph()
{
  graph_logged = true;
  double mine[5] = {(double) graph_nlocal, (double) graph_nghost, (double) graph_nedges,
                    (double) nfolded, (double) nremote};
  double all[5];
  MPI_Allreduce(mine, all, 5, MPI_DOUBLE, MPI_SUM, world);
  if (comm->me != 0) return;
  utils::logmesg(lmp,
                 "icephase: denoiser graph {:.0f} nodes ({:.0f} local, {:.0f} ghost) and {:.0f} "
                 "edges on {} MPI rank(s) (compute {}); {:.0f} ghost oxygens enter as periodic "
                 "images of local ones (edge shifts), {:.0f} are owned by other ranks\n",
                 all[0] + all[1], all[0], all[1], all[2], comm->nprocs, id, all[3], all[4]);
}

/* ---------------------------------------------------------------------- */

void ComputeIcephase::compute_peratom()
{
  const double t_begin = MPI_Wtime();
  double t_graph = 0.0, t_denoise = 0.0, t_classify = 0.0, t_boundary = 0.0, t_comm = 0.0;
  invoked_peratom = update->ntimestep;

  // LAMMPS clears the invoked flags before each output on a step (each
  // dump, thermo), so a dump and thermo output of the same step ask twice:
  // the second time, with nothing changed, the results are still valid
  if (same_configuration()) return;
  grow_arrays();

  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  double **x = atom->x;

  double t0 = MPI_Wtime();
  int nlocal_cloud;
  collect_cloud(nlocal_cloud);
  t_graph += MPI_Wtime() - t0;

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

  // oxygens closer than min_oxygen_distance to another one leave the cloud
  // (labelled below), on every rank that sees them

  t0 = MPI_Wtime();
  tagint first_close = MAXTAGINT;
  const bigint nclose_all = exclude_close(nlocal_cloud, first_close);
  const int n = (int) cloud.size();
  find_owners(nlocal_cloud);
  t_graph += MPI_Wtime() - t0;

  // ghost nodes (owned by another rank) follow their owners through a
  // forward communication after every iteration; where no rank has any
  // (one rank), every ghost follows its local owner directly
  t0 = MPI_Wtime();
  int mine_remote = nremote > 0 ? 1 : 0, any_remote = 0;
  MPI_Allreduce(&mine_remote, &any_remote, 1, MPI_INT, MPI_MAX, world);
  t_comm += MPI_Wtime() - t0;

  for (int i = 0; i < nall; i++) disp[i][0] = disp[i][1] = disp[i][2] = 0.0;
  cloud_x.resize(3 * (size_t) n);
  auto fill_positions = [&]() {
    for (int k = 0; k < n; k++) {
      const int i = cloud[k], o = cloud[owner[k]];
      for (int d = 0; d < 3; d++) cloud_x[3 * k + d] = x[i][d] + disp[o][d];
    }
  };

  // denoise: locals step, ghosts follow their owners

  std::string err;
  int done = 0;
  for (int iter = 0; iter < iterations; iter++) {
    t0 = MPI_Wtime();
    fill_positions();
    err.clear();
    const bool graph_ok = build_graph(nlocal_cloud, nremote > 0, err);
    const double t1 = MPI_Wtime();
    double maxstep = 0.0, maxstep_all = 0.0;
    if (graph_ok) denoise_step(nlocal_cloud, maxstep, err);
    const double t2 = MPI_Wtime();
    all_or_error(err);
    if (any_remote) comm->forward_comm(this);
    MPI_Allreduce(&maxstep, &maxstep_all, 1, MPI_DOUBLE, MPI_MAX, world);
    t_graph += t1 - t0;
    t_denoise += t2 - t1;
    t_comm += MPI_Wtime() - t2;
    done++;
    if (tolerance > 0.0 && maxstep_all < tolerance) break;
  }

  // folded ghosts take their owner's displacement; where the forward
  // communication ran, it must have brought them exactly that value

  bigint nmismatch = 0;
  for (int k = nlocal_cloud; k < n; k++) {
    if (owner[k] == k) continue;
    const int i = cloud[k], o = cloud[owner[k]];
    for (int d = 0; d < 3; d++) {
      if (any_remote && disp[i][d] != disp[o][d]) nmismatch++;
      disp[i][d] = disp[o][d];
    }
  }
  err.clear();
  if (nmismatch)
    err = fmt::format("Compute icephase: internal error: the forward communication gave {} ghost "
                      "coordinates another displacement than their local owner's",
                      nmismatch);

  // oxygens that the denoiser threw farther than the ghost cutoff (it can
  // diverge on overlapping atoms) have left every neighbourhood a rank can
  // see: they are in no environment, and each is classified as a lone
  // oxygen. (Kept in the cloud, a cloud thousands of Angstrom wide would
  // make the SOAP neighbour search allocate memory without bound.)

  fill_positions();
  const double limitsq = ghost_cutoff * ghost_cutoff;
  auto diverged = [&](int k) {
    const double *dk = disp[cloud[k]];
    return dk[0] * dk[0] + dk[1] * dk[1] + dk[2] * dk[2] > limitsq;
  };
  soap_index.clear();
  bigint ndiverged = 0;
  double maxdisp = 0.0;
  tagint first_diverged = MAXTAGINT;
  for (int k = 0; k < nlocal_cloud; k++) {
    if (!diverged(k)) {
      soap_index.push_back(k);
      continue;
    }
    const int i = cloud[k];
    ndiverged++;
    maxdisp = std::max(maxdisp, std::sqrt(disp[i][0] * disp[i][0] + disp[i][1] * disp[i][1] +
                                          disp[i][2] * disp[i][2]));
    first_diverged = std::min(first_diverged, atom->tag[i]);
  }
  const int nlocal_soap = (int) soap_index.size();
  for (int k = nlocal_cloud; k < n; k++)
    if (!diverged(k)) soap_index.push_back(k);
  select_environment(nlocal_soap);
  const int nsoap = (int) soap_index.size();
  const double *soap_positions = cloud_x.data();
  if (nsoap < n) {
    soap_x.resize(3 * (size_t) nsoap);
    for (int s = 0; s < nsoap; s++)
      for (int d = 0; d < 3; d++) soap_x[3 * s + d] = cloud_x[3 * soap_index[s] + d];
    soap_positions = soap_x.data();
  }

  // classify the denoised cloud (Python: DScribe SOAP + nearest reference)

  codes.assign(nlocal_soap, 0);
  distances.assign(nlocal_soap, 0.0);
  ordered.assign(nlocal_soap, 0);
  t0 = MPI_Wtime();
  if (err.empty() && nlocal_soap > 0 &&
      !IcephasePython::classify(model_path, soap_positions, nsoap, nlocal_soap, metric, threshold,
                                iterations > 0, codes.data(), distances.data(), ordered.data(),
                                err))
    err = "Compute icephase: the classifier failed: " + err;
  if (err.empty() && ndiverged > 0 && !lone_known) {
    const double origin[3] = {0.0, 0.0, 0.0};
    int lone_ordered = 0;
    if (IcephasePython::classify(model_path, origin, 1, 1, metric, threshold, iterations > 0,
                                 &lone_code, &lone_distance, &lone_ordered, err))
      lone_known = true;
    else
      err = "Compute icephase: the classifier failed: " + err;
  }
  t_classify += MPI_Wtime() - t0;
  for (int s = 0; s < nlocal_soap && err.empty(); s++)
    if (codes[s] < 0 || codes[s] > max_code)
      err = fmt::format("Compute icephase: the classifier returned phase code {} outside 0..{}",
                        codes[s], max_code);
  if (err.empty() && ndiverged > 0 && (lone_code < 0 || lone_code > max_code))
    err = fmt::format("Compute icephase: the classifier returned phase code {} outside 0..{}",
                      lone_code, max_code);
  t0 = MPI_Wtime();
  all_or_error(err);
  t_comm += MPI_Wtime() - t0;

  // boundary step: the first ice layer next to liquid, which the classifier
  // (reach ~9 A) calls liquid, joins the ice of its neighbours

  if (boundary_rounds > 0) {
    t0 = MPI_Wtime();
    extend_ice(nlocal_cloud, nlocal_soap, soap_positions);
    t_boundary += MPI_Wtime() - t0;
  }

  // per-atom output and phase counts (+ the number of diverged oxygens)

  std::vector<double> mine(size_vector + 1, 0.0), all(size_vector + 1, 0.0);
  for (int i = 0; i < nlocal; i++) {
    array_atom[i][0] = -1.0;
    for (int c = 1; c < NCOLS; c++) array_atom[i][c] = 0.0;
  }
  for (int k = 0; k < nlocal_cloud; k++) {
    const int i = cloud[k];
    array_atom[i][0] = lone_code;    // diverged; the others are set below
    array_atom[i][1] = lone_distance;
    array_atom[i][2] = disp[i][0];
    array_atom[i][3] = disp[i][1];
    array_atom[i][4] = disp[i][2];
  }
  for (int s = 0; s < nlocal_soap; s++) {
    const int i = cloud[soap_index[s]];
    array_atom[i][0] = codes[s];
    array_atom[i][1] = distances[s];
    mine[codes[s]] += 1.0;
  }
  if (ndiverged > 0) mine[lone_code] += (double) ndiverged;
  // too close to another oxygen: liquid, with the marker distance, not moved
  for (int i : excluded) {
    array_atom[i][0] = 0.0;
    array_atom[i][1] = too_close_distance;
    mine[0] += 1.0;
  }
  mine[size_vector] = (double) ndiverged;
  t0 = MPI_Wtime();
  MPI_Allreduce(mine.data(), all.data(), size_vector + 1, MPI_DOUBLE, MPI_SUM, world);
  t_comm += MPI_Wtime() - t0;
  for (int c = 0; c < size_vector; c++) counts[c] = all[c];
  if (all[size_vector] > 0.0 && !diverged_warned) {
    diverged_warned = true;
    double maxdisp_all = 0.0;
    tagint first_all = MAXTAGINT;
    MPI_Allreduce(&maxdisp, &maxdisp_all, 1, MPI_DOUBLE, MPI_MAX, world);
    MPI_Allreduce(&first_diverged, &first_all, 1, MPI_LMP_TAGINT, MPI_MIN, world);
    if (comm->me == 0)
      error->warning(FLERR,
                     "Compute icephase {} step {}: the denoiser moved {:.0f} oxygens farther than "
                     "the ghost cutoff {} A (up to {:.4g} A; first: atom ID {}; overlapping "
                     "atoms?): each is classified as a lone oxygen and is in no other oxygen's "
                     "environment (reported once)",
                     id, update->ntimestep, all[size_vector], ghost_cutoff, maxdisp_all,
                     first_all);
  }
  if (nclose_all > 0 && !close_warned) {
    close_warned = true;
    if (comm->me == 0)
      error->warning(FLERR,
                     "Compute icephase {} step {}: {} oxygens are closer than {:g} A to another "
                     "one (first: atom ID {}): not water; each is labelled liquid (code 0) with "
                     "distance {:g} and is left out of the other oxygens' denoising and SOAP "
                     "(reported once)",
                     id, update->ntimestep, nclose_all, min_oxygen_distance, first_close,
                     too_close_distance);
  }
  remember_configuration();

  // timing yes: the split of this invocation, slowest rank for each part

  if (timing) {
    const double total = MPI_Wtime() - t_begin;
    const double other = total - t_graph - t_denoise - t_classify - t_boundary - t_comm;
    double tmine[7] = {t_graph, t_denoise, t_classify, t_comm, other, total, t_boundary}, tmax[7];
    MPI_Allreduce(tmine, tmax, 7, MPI_DOUBLE, MPI_MAX, world);
    double nmine[2] = {(double) nlocal_cloud, (double) (graph_nlocal + graph_nghost)}, nsum[2];
    MPI_Allreduce(nmine, nsum, 2, MPI_DOUBLE, MPI_SUM, world);
    if (comm->me == 0)
      utils::logmesg(lmp,
                     "icephase timing: compute {} step {}: {:.0f} oxygens, {:.0f} graph nodes, "
                     "{} iterations, {} ranks; graph {:.6f} s, denoise {:.6f} s, classify {:.6f} "
                     "s, boundary {:.6f} s, comm {:.6f} s, other {:.6f} s, total {:.6f} s\n",
                     id, update->ntimestep, nsum[0], nsum[1], done, comm->nprocs, tmax[0],
                     tmax[1], tmax[2], tmax[6], tmax[3], tmax[4], tmax[5]);
  }
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
  int m = 0;
  if (comm_mode == COMM_CLOSE) {
    for (int k = 0; k < n; k++) buf[m++] = close_flag[list[k]];
    return m;
  }
  if (comm_mode == COMM_LABEL) {
    for (int k = 0; k < n; k++) buf[m++] = label[list[k]];
    return m;
  }
  // displacements are the same for every periodic image: no pbc shift
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
  if (comm_mode == COMM_CLOSE) {
    for (int i = first; i < last; i++) close_flag[i] = buf[m++];
    return;
  }
  if (comm_mode == COMM_LABEL) {
    for (int i = first; i < last; i++) label[i] = buf[m++];
    return;
  }
  for (int i = first; i < last; i++) {
    disp[i][0] = buf[m++];
    disp[i][1] = buf[m++];
    disp[i][2] = buf[m++];
  }
}

/* ---------------------------------------------------------------------- */

double ComputeIcephase::memory_usage()
{
  double bytes = (double) nmax * (5 + NCOLS) * sizeof(double);    // disp, close_flag, label
  for (const auto *v : {&cloud, &owner, &graph_nodes, &graph_index, &hop, &bfs_queue,
                        &pair_neighbour, &centre_first, &soap_index, &bin_head, &bin_next,
                        &env_head, &env_next, &codes, &ordered, &cloud_codes, &grown})
    bytes += (double) v->capacity() * sizeof(int);
  for (const auto *v : {&image, &cloud_x, &soap_x, &config_box, &config_atoms, &distances})
    bytes += (double) v->capacity() * sizeof(double);
  bytes += (double) (graph_x32.capacity() + edge_shift32.capacity()) * sizeof(float);
  bytes += (double) edges.capacity() * sizeof(int64_t);
  return bytes;
}
