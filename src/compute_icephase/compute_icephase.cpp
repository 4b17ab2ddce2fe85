/* ----------------------------------------------------------------------
   icephase: LAMMPS compute style "icephase" (plugin)
   SPDX-License-Identifier: GPL-2.0-or-later

   Per-oxygen ice phase: iterative denoising r <- r - eps(r) with the
   model file's network (libtorch: on CPU its layers with compiled message
   sums, icephase_compact_layers.h; on a GPU, or for a file without the
   compact constants, the TorchScript module), then a SOAP classifier run
   in an embedded Python interpreter (icephase_lmp.lammps_bridge).

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
   Layer by layer (model files whose denoiser offers the layer methods,
   compact_denoiser.py, and ghost nodes owned by other ranks): the graph
   then holds only the ghosts within r_max of a local oxygen, each rank
   runs a layer for its local oxygens only, and a forward communication
   of the new node features gives every ghost node its owner's before the
   next layer. A rank then computes no ghost node at all, instead of
   every ghost within the receptive field, which on a few ranks is most
   of the box.

   The steps of one invocation (compute_peratom), each a function below:
   collect the cloud, check its coordinates, exclude oxygens too close to
   another one, find the owner of each ghost, denoise (build the graph,
   the network, forward communication; repeated), fold the ghosts
   onto their owners, select the classifier's input, classify (Python),
   the boundary step (Python, forward communication of the codes), store
   the per-atom results and counts, warn once, log the timing. The three
   neighbour searches (graph, too close, SOAP environment) share one
   binned search, IcephaseBins (icephase_bins.h says why it is ours and
   not a LAMMPS neighbour list). The work buffers of each step sit in a
   struct of their own in compute_icephase.h.

   Every failure path is collective: each rank computes a local error
   message, an MPI_Allreduce finds the first failing rank, its message is
   broadcast and all ranks call error->all() together (no deadlock when
   only one rank fails, e.g. in Python or libtorch).
------------------------------------------------------------------------- */

#include "compute_icephase.h"

#include "icephase_compact_layers.h"
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
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <limits>
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
constexpr int COMM_LABEL = 2;    // forward communication of the phase codes (boundary step)
constexpr int COMM_REDUCED = 3;    // forward communication of the reduced SOAP vectors (other crystal)
constexpr int COMM_FEATURES = 4;    // forward communication of node features (denoising layer by layer)
constexpr int COMM_NEED = 5;    // reverse communication: which copies are ghost nodes (features go to them)

const std::set<std::string> KEYWORDS = {"iterations", "tolerance", "device",
                                        "types",      "metric",    "threshold",
                                        "threads",    "timing",    "boundary", "other",
                                        "vote"};

bool is_keyword(const char *arg)
{
  return KEYWORDS.count(arg) > 0;
}

// dst[3s .. 3s + 2] = src[3 index[s] .. 3 index[s] + 2], s = 0 .. n - 1
void gather_positions(const std::vector<double> &src, const std::vector<int> &index, int n,
                      std::vector<double> &dst)
{
  dst.resize(3 * (size_t) n);
  for (int s = 0; s < n; s++)
    for (int d = 0; d < 3; d++) dst[3 * s + d] = src[3 * index[s] + d];
}
}    // namespace

/* ---------------------------------------------------------------------- */

struct ComputeIcephase::Denoiser {
  torch::jit::Module module;
  torch::Device device{torch::kCPU};
  bool layerwise = false;    // offers edge_terms, initial_features, layer_step, eps_from_features
  int width = 0;             // node features per oxygen between layers (floats)
  // on CPU, where the model file stores the compact constants: the layers with compiled message sums,
  // in place of the module's layer_step (icephase_compact_layers.h); else empty
  IcephaseCompact::Layers compiled;
  bool use_compiled = false;
  std::string why_not_compiled;    // for the log, where the module's layers run on CPU
};

namespace {
// node features travel as floats, two to each double of the communication buffer
int doubles_for(int nfloats)
{
  return (nfloats + 1) / 2;
}
}    // namespace

/* ----------------------------------------------------------------------
   compute ID group icephase model.pth keyword value ...
   settings the user leaves out come from the model file's metadata
------------------------------------------------------------------------- */

ComputeIcephase::ComputeIcephase(LAMMPS *lmp, int narg, char **arg) :
    Compute(lmp, narg, arg), threshold(0.0), soap_reach(0.0), malloc_tuned(false),
    lone_known(false), lone_code(0), lone_distance(0.0), diverged_warned(false),
    min_oxygen_distance(0.0), too_close_distance(-1.0), max_step(0.0), runaway_step(0.0),
    max_neighbours(0), close_warned(false),
    config_valid(false), config_step(-1), iterations(-1), tolerance(-1.0), nthreads(1),
    timing(false), boundary_rounds(-1), other_crystal(true), phase_vote(true), r_max(0.0), ghost_cutoff(0.0),
    receptive_field(0.0), num_layers(0), max_code(0), other_code(-2), nreduced(0), repeat_iterations(0),
    default_iterations(0), default_tolerance(0.0),
    default_boundary_rounds(0), boundary_shell(0.0), support_radius(0.0), min_support(0.5),
    small_cluster_rounds(0), small_cluster_size(0), small_cluster_share(0.0), convex_support(false),
    hold_spanning(false), phase_vote_radius(0.0),
    logged(false), graph_logged(false), nmax(0),
    disp(nullptr), label(nullptr), close_flag(nullptr), reduced(nullptr), comm_mode(COMM_DISP),
    counts(nullptr)
{
  if (narg < 4) utils::missing_cmd_args(FLERR, "compute icephase", error);
  model_path = arg[3];
  device_request = "auto";

  bool threshold_set = false;
  parse_keywords(narg, arg, threshold_set);
  check_units();
  read_metadata();
  complete_settings(threshold_set);
  tune_malloc();
  load_denoiser();

  peratom_flag = 1;
  size_peratom_cols = NCOLS;
  vector_flag = 1;
  size_vector = max_code + 2;    // liquid, the model's phases, then other crystal
  extvector = 1;    // atom counts grow with the system
  comm_forward = std::max({3, nreduced, 1 + doubles_for(denoiser->width)});
  comm_reverse = 1;    // COMM_NEED
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
  memory->destroy(reduced);
  memory->destroy(array_atom);
  memory->destroy(counts);
}

/* ----------------------------------------------------------------------
   the keywords after the model file; types takes a list of types or
   type ranges, every other keyword one value
------------------------------------------------------------------------- */

void ComputeIcephase::parse_keywords(int narg, char **arg, bool &threshold_set)
{
  int iarg = 4;
  while (iarg < narg) {
    const std::string kw = arg[iarg];
    if (kw == "types") {
      iarg = parse_types(iarg, narg, arg);
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
    } else if (kw == "other") {
      other_crystal = utils::logical(FLERR, val, false, lmp) == 1;
    } else if (kw == "vote") {
      phase_vote = utils::logical(FLERR, val, false, lmp) == 1;
    } else if (kw == "boundary") {
      boundary_rounds = utils::inumeric(FLERR, val, false, lmp);
      if (boundary_rounds < 0)
        error->all(FLERR, "Compute icephase boundary must be >= 0 (rounds; 0: off), got {}",
                   boundary_rounds);
    } else {
      error->all(FLERR,
                 "Unknown compute icephase keyword: {} (known: iterations, tolerance, device, "
                 "types, metric, threshold, threads, timing, boundary, other, vote)",
                 kw);
    }
    iarg += 2;
  }
}

/* ----------------------------------------------------------------------
   types t1 t2 ... (numbers, ranges such as 1*3, or type labels) up to the
   next keyword; returns the index of that keyword
------------------------------------------------------------------------- */

int ComputeIcephase::parse_types(int iarg, int narg, char **arg)
{
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
  return jarg;
}

/* ---------------------------------------------------------------------- */

void ComputeIcephase::check_units()
{
  const std::string units = update->unit_style;
  if (units != "real" && units != "metal")
    error->all(FLERR,
               "Compute icephase needs units real or metal (lengths in Angstrom, as the model "
               "was trained); this input uses units {}",
               units);
  if (domain->dimension != 3) error->all(FLERR, "Compute icephase needs a 3d system");
}

/* ----------------------------------------------------------------------
   the embedded Python validates the model file and reads its metadata,
   and the classifier's reach: ghosts farther than this from every local
   oxygen are left out of the SOAP input (DScribe's cost grows with every
   atom it is given, centre or not); unknown: no ghost is left out
------------------------------------------------------------------------- */

void ComputeIcephase::read_metadata()
{
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

  if (!IcephasePython::soap_reach(model_path, soap_reach, err) || !(soap_reach > 0.0)) {
    soap_reach = 0.0;
    soap_reach_note = "all ghost oxygens (the SOAP reach is unknown: " + err + ")";
  } else {
    soap_reach_note = fmt::format("ghost oxygens within {:.4g} A of a local one", soap_reach);
  }
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
    // lammps_bridge.model_metadata_json fills in every setting (for files from before the support
    // check: radius 0, off)
    support_radius = meta.at("boundary").at("support_radius").get<double>();
    min_support = meta.at("boundary").at("min_support").get<double>();
    small_cluster_rounds = meta.at("boundary").at("small_cluster_rounds").get<int>();
    small_cluster_size = meta.at("boundary").at("small_cluster_size").get<int>();
    small_cluster_share = meta.at("boundary").at("small_cluster_share").get<double>();
    convex_support = meta.at("boundary").at("convex_support").get<bool>();
    hold_spanning = meta.at("boundary").at("hold_spanning").get<bool>();
  }
  phase_vote_radius = meta.at("phase_vote").at("radius").get<double>();

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
  other_code = policy.at("other_crystal_code").get<int>();
  repeat_iterations = policy.at("repeat_test_iterations").get<int>();
  nreduced = policy.at("reduced_features").get<int>();
  census_phases = policy.at("census_phases").get<std::vector<std::string>>();
  ring_phases = policy.at("ring_census_phases").get<std::vector<std::string>>();
  ring_codes = policy.at("ring_census_codes").get<std::vector<int>>();
  if (other_code >= -1 || nreduced < 1)
    throw std::runtime_error("the other-crystal code and the reduced SOAP size of icephase_lmp are "
                             "not usable");
  if (!(min_oxygen_distance > 0.0) || !(max_step > 0.0) || !(runaway_step >= max_step) ||
      max_neighbours < 1)
    throw std::runtime_error("the policy limits of icephase_lmp are not usable");
}

/* ----------------------------------------------------------------------
   settings the user left out come from the model
------------------------------------------------------------------------- */

void ComputeIcephase::complete_settings(bool threshold_set)
{
  if (metric.empty()) metric = default_metric;
  if (iterations < 0) iterations = default_iterations;
  if (tolerance < 0.0) tolerance = default_tolerance;
  if (boundary_rounds < 0) boundary_rounds = default_boundary_rounds;
  // the boundary step was tuned on denoised positions (as offline: off without the denoiser), and
  // the other-crystal step measured on them
  if (iterations == 0) boundary_rounds = 0;
  if (iterations == 0) other_crystal = false;
  if (iterations == 0 || phase_vote_radius <= 0.0) phase_vote = false;
  if (threshold_set) return;

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

/* ----------------------------------------------------------------------
   Each invocation allocates and frees hundreds of MB (libtorch's edge
   tensors, DScribe's and numpy's arrays). glibc returns freed blocks above
   its mmap/trim thresholds to the system, and every invocation then pays
   the page faults and the zeroing of that memory again (half the time of
   an 8000-oxygen invocation on one core). Keep freed memory for reuse:
   blocks up to 32 MB from the heap, no trimming of the heap below 2 GB.
   (Process-wide; the memory is the peak that every invocation needs.)
------------------------------------------------------------------------- */

void ComputeIcephase::tune_malloc()
{
#if defined(__GLIBC__)
  malloc_tuned = mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1 &&
      mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#endif
}

/* ----------------------------------------------------------------------
   the libtorch denoiser, on the CPU or (device cuda/auto) one GPU per
   rank of a node, round robin
------------------------------------------------------------------------- */

void ComputeIcephase::load_denoiser()
{
  bool cuda = torch::cuda::is_available();
  if (device_request == "cuda" && !cuda)
    error->all(FLERR,
               "Compute icephase: device cuda requested, but libtorch finds no usable CUDA "
               "device (a CPU-only torch build, or no GPU visible): use device cpu or auto");
  denoiser = std::make_unique<Denoiser>();
  if (device_request == "cuda" || (device_request == "auto" && cuda)) {
    MPI_Comm node;
    int node_rank = 0;
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &node_rank);
    MPI_Comm_free(&node);
    const int ngpu = std::max(1, (int) torch::cuda::device_count());
    denoiser->device = torch::Device(torch::kCUDA, node_rank % ngpu);
  }
  device_name = denoiser->device.str();
  std::string err;
  try {
    denoiser->module = torch::jit::load(model_path, denoiser->device);
    // model files store the denoiser frozen (it loads ~6x faster): a frozen module is an inference
    // graph without the "training" attribute that eval() sets, so only older, scripted files need it
    if (denoiser->module.hasattr("training")) denoiser->module.eval();
    probe_layers();
    if (!denoiser->device.is_cuda()) load_compiled_layers();
  } catch (const c10::Error &e) {
    err = "Compute icephase: libtorch cannot load the denoiser from " + model_path + ": " +
        e.what_without_backtrace();
  } catch (const std::exception &e) {
    err = "Compute icephase: libtorch cannot load the denoiser from " + model_path + ": " +
        e.what();
  }
  all_or_error(err);
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
  table += fmt::format(", {} = other crystal", other_code);
  columns += fmt::format(", [{}] = other crystal", max_code + 2);
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
    mesg += fmt::format("  boundary step: {} round(s): a liquid-labelled oxygen next to ice that "
                        "continues its crystal (first shell {} A) takes its neighbour's phase{}{}\n",
                        boundary_rounds, boundary_shell,
                        support_radius > 0.0
                            ? fmt::format("; it stays ice only where at least {}% of the oxygens "
                                          "within {} A are ice", 100.0 * min_support, support_radius)
                            : "",
                        small_cluster_rounds > 0
                            ? fmt::format("; ice clusters of fewer than {} oxygens and {}% of all{} get {} "
                                          "more round(s){}", small_cluster_size, 100.0 * small_cluster_share,
                                          hold_spanning ? " that do not reach across the box" : "",
                                          small_cluster_rounds,
                                          convex_support && support_radius > 0.0
                                              ? ", checked with the share of ice a convex surface has"
                                              : "")
                            : "");
  else
    mesg += "  boundary step: off\n";
  mesg += phase_vote ? fmt::format("  phase vote: an ice-labelled oxygen takes the phase most ice-labelled "
                                    "oxygens within {} A carry\n", phase_vote_radius)
                      : "  phase vote: off\n";
  const std::string second_look = repeat_iterations < iterations
      ? fmt::format(" (at the denoised positions, or after {} iterations)", repeat_iterations)
      : "";
  mesg += other_crystal ? fmt::format("  other crystal: a liquid-labelled oxygen whose environment "
                                      "repeats among its neighbours{}, or whose first shell is mostly "
                                      "such oxygens, is labelled {}, and so is an ice-labelled oxygen whose "
                                      "crystal-labelled neighbours are mostly such oxygens; "
                                      "crystal-labelled oxygens isolated "
                                      "in liquid (one, or a pair) become liquid\n", second_look, other_code)
                        : "  other crystal: off\n";
  if (other_crystal && !census_phases.empty())
    mesg += fmt::format("  site census: the {} of an ice cluster that holds that phase's sites in other "
                        "proportions than the phase's are labelled {}\n",
                        utils::join_words(census_phases, ", "), other_code);
  if (other_crystal && !ring_phases.empty())
    mesg += fmt::format("  ring census: the {} of an ice cluster whose molecules away from liquid sit on "
                        "rings that phase has not are labelled {}\n",
                        utils::join_words(ring_phases, ", "), other_code);
  mesg += fmt::format("  ghost cutoff needed: {} A (receptive field {} A + SOAP reach)\n",
                      ghost_cutoff, receptive_field);
  mesg += fmt::format("  embedded Python: {}\n", IcephasePython::executable());
  if (malloc_tuned)
    mesg += "  memory: glibc malloc keeps freed memory for the next invocation (mmap threshold "
            "32 MB, no trimming)\n";
  utils::logmesg(lmp, mesg);
}

/* ----------------------------------------------------------------------
   whether the denoiser can run layer by layer, and its feature width:
   the four methods are there and chain on one oxygen without edges
   (an older model file has forward only, and runs whole on every rank)
------------------------------------------------------------------------- */

void ComputeIcephase::probe_layers()
{
  auto &m = denoiser->module;
  if (num_layers <= 0) return;
  for (const char *name : {"edge_terms", "initial_features", "layer_step", "eps_from_features"})
    if (!m.find_method(name)) return;
  c10::InferenceMode guard;
  const auto dev = denoiser->device;
  auto pos = torch::zeros({1, 3}, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
  auto edges = torch::zeros({2, 0}, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  auto shift = torch::zeros({0, 3}, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
  auto terms = m.get_method("edge_terms")({pos, edges, shift}).toTuple();
  auto features = m.get_method("initial_features")({(int64_t) 1, pos}).toTensor();
  int width = 0;
  for (int64_t k = 0; k < num_layers; k++) {
    features = m.get_method("layer_step")({k, features, terms->elements()[0], terms->elements()[1], edges})
                   .toTensor();
    if (features.dim() != 2 || features.size(0) != 1) return;
    width = std::max(width, (int) features.size(1));
  }
  auto eps = m.get_method("eps_from_features")({features}).toTensor();
  if (eps.dim() != 2 || eps.size(0) != 1 || eps.size(1) != 3) return;
  denoiser->layerwise = true;
  denoiser->width = width;
}

/* ----------------------------------------------------------------------
   on CPU, the layers with compiled message sums from the model file's
   compact constants (the TorchScript layers cost ~2x more there); a file
   without them, or a module without the layer methods, keeps TorchScript
------------------------------------------------------------------------- */

void ComputeIcephase::load_compiled_layers()
{
  auto &d = *denoiser;
  if (!d.layerwise) {
    d.why_not_compiled = "the denoiser has no layer methods (an older model file)";
    return;
  }
  std::map<std::string, IcephasePython::Array> arrays;
  std::string err;
  if (!IcephasePython::compact_constants(model_path, arrays, err)) {
    d.why_not_compiled = "its compact constants cannot be read: " + err;
    return;
  }
  if (arrays.empty()) {
    d.why_not_compiled = "the model file stores no compact constants (a file from before 2026-12-02)";
    return;
  }
  if (!d.compiled.load(arrays, err)) {
    d.why_not_compiled = "its compact constants are not a compact denoiser's: " + err;
    return;
  }
  if (d.compiled.size() != num_layers) {
    d.why_not_compiled = fmt::format("its compact constants hold {} layers, the metadata {}", d.compiled.size(),
                                     num_layers);
    return;
  }
  d.use_compiled = true;
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

/* ----------------------------------------------------------------------
   whether a condition holds on at least one rank. Collective.
------------------------------------------------------------------------- */

bool ComputeIcephase::on_any_rank(bool mine)
{
  int flag = mine ? 1 : 0, any = 0;
  MPI_Allreduce(&flag, &any, 1, MPI_INT, MPI_MAX, world);
  return any != 0;
}

/* ----------------------------------------------------------------------
   whether one of this rank's classified centres is labelled liquid
------------------------------------------------------------------------- */

bool ComputeIcephase::has_liquid_centre() const
{
  for (int s = 0; s < soap.nlocal; s++)
    if (soap.codes[s] == LIQUID) return true;
  return false;
}

/* ---------------------------------------------------------------------- */

void ComputeIcephase::grow_arrays()
{
  if (atom->nmax <= nmax) return;
  nmax = atom->nmax;
  memory->destroy(disp);
  memory->destroy(label);
  memory->destroy(close_flag);
  memory->destroy(reduced);
  memory->destroy(array_atom);
  memory->create(disp, nmax, 3, "icephase:disp");
  memory->create(reduced, nmax, nreduced, "icephase:reduced");
  memory->create(label, nmax, "icephase:label");
  memory->create(close_flag, nmax, "icephase:close_flag");
  memory->create(array_atom, nmax, NCOLS, "icephase:array_atom");
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
  collect_cloud();
  tagint first_bad;
  if (count_nonfinite(first_bad) > 0) return;    // the invocation reports it
  find_owners();    // (cloud.x: the positions before denoising)
  std::string ignored;    // an invocation reports it
  build_graph(cloud.nremote > 0, denoiser->layerwise ? 1 : num_layers, ignored);
  log_graph();
}

/* ----------------------------------------------------------------------
   the size of the last graph built, summed over the ranks (rank 0 logs it)
------------------------------------------------------------------------- */

void ComputeIcephase::log_graph()
{
  graph_logged = true;
  double mine[5] = {(double) graph.nlocal, (double) graph.nghost, (double) graph.nedges,
                    (double) cloud.nfolded, (double) cloud.nremote};
  double all[5];
  MPI_Allreduce(mine, all, 5, MPI_DOUBLE, MPI_SUM, world);
  if (comm->me != 0) return;
  utils::logmesg(lmp,
                 "icephase: denoiser graph {:.0f} nodes ({:.0f} local, {:.0f} ghost) and {:.0f} "
                 "edges on {} MPI rank(s) (compute {}); {:.0f} ghost oxygens enter as periodic "
                 "images of local ones (edge shifts), {:.0f} are owned by other ranks\n",
                 all[0] + all[1], all[0], all[1], all[2], comm->nprocs, id, all[3], all[4]);
  if (denoiser->use_compiled)
    utils::logmesg(lmp, "icephase: the denoiser's layers run on CPU with compiled message sums\n");
  else if (!denoiser->device.is_cuda())
    utils::logmesg(lmp, "icephase: the denoiser's layers run as TorchScript on CPU: {}\n",
                   denoiser->why_not_compiled);
  if (all[4] > 0)
    utils::logmesg(lmp, "icephase: the denoiser runs {} on each rank\n",
                   denoiser->layerwise
                       ? "layer by layer, ghost features from their owners (ghost nodes within r_max)"
                       : "whole (ghost nodes within its receptive field; an older model file)");
}

/* ----------------------------------------------------------------------
   one invocation: the steps below, in this order
------------------------------------------------------------------------- */

void ComputeIcephase::compute_peratom()
{
  timer = Timing();
  timer.begin = MPI_Wtime();
  invoked_peratom = update->ntimestep;

  // LAMMPS clears the invoked flags before each output on a step (each
  // dump, thermo), so a dump and thermo output of the same step ask twice:
  // the second time, with nothing changed, the results are still valid

  if (same_configuration()) return;
  grow_arrays();

  // the analysed oxygens this rank sees; NaN or Inf coordinates stop all ranks together

  double t0 = MPI_Wtime();
  collect_cloud();
  timer.graph += MPI_Wtime() - t0;
  tagint first_bad;
  const bigint nbad = count_nonfinite(first_bad);
  if (nbad > 0)
    error->all(FLERR,
               "Compute icephase: {} analysed atoms have NaN or Inf coordinates (first: atom ID "
               "{}): the simulation has blown up or the input is corrupt",
               nbad, first_bad);

  // oxygens closer than min_oxygen_distance to another one leave the cloud
  // (labelled in store_results), on every rank that sees them; each ghost
  // finds the graph node that stands for it

  t0 = MPI_Wtime();
  exclude_close();
  find_owners();
  timer.graph += MPI_Wtime() - t0;

  // denoise: local oxygens step, ghosts follow their owners

  denoise();

  // classify the denoised cloud (Python: DScribe SOAP + nearest reference)

  select_soap_input();
  classify();

  // phase vote: the phase most ice-labelled neighbours carry (where two
  // references share their local motifs, single molecules swap phases)

  if (phase_vote) {
    t0 = MPI_Wtime();
    vote_phases();
    timer.boundary += MPI_Wtime() - t0;
  }

  // boundary step: the first ice layer next to liquid, which the classifier
  // (reach ~9 A) calls liquid, joins the ice of its neighbours

  if (boundary_rounds > 0) {
    t0 = MPI_Wtime();
    extend_ice();
    timer.boundary += MPI_Wtime() - t0;
  }

  // crystals without a reference: "other crystal" instead of liquid

  if (other_crystal) {
    t0 = MPI_Wtime();
    census_sites();
    find_other_crystal();
    census_rings();
    timer.classify += MPI_Wtime() - t0;
  }

  // per-atom output and phase counts; the first invocation that meets
  // diverged or too-close oxygens says so

  const double ndiverged_all = store_results();
  warn_once(ndiverged_all);
  remember_configuration();
  if (timing) log_timing();
}

/* ----------------------------------------------------------------------
   the atoms this rank denoises: analysed local atoms first, then ghosts
   (both: in the group, with an oxygen type)
------------------------------------------------------------------------- */

void ComputeIcephase::collect_cloud()
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int *type = atom->type;
  const int *mask = atom->mask;

  cloud.analysed.resize(nall);
  for (int i = 0; i < nall; i++) cloud.analysed[i] = (mask[i] & groupbit) && is_oxygen[type[i]];
  cloud.atoms.clear();
  for (int i = 0; i < nlocal; i++)
    if (cloud.analysed[i]) cloud.atoms.push_back(i);
  cloud.nlocal = (int) cloud.atoms.size();
  for (int i = nlocal; i < nall; i++)
    if (cloud.analysed[i]) cloud.atoms.push_back(i);
}

/* ----------------------------------------------------------------------
   the number of local cloud oxygens with NaN or Inf coordinates on all
   ranks; first: the smallest of their atom IDs (all ranks)
------------------------------------------------------------------------- */

bigint ComputeIcephase::count_nonfinite(tagint &first)
{
  double **x = atom->x;
  bigint nbad = 0, nbad_all = 0;
  first = MAXTAGINT;
  for (int k = 0; k < cloud.nlocal; k++) {
    const int i = cloud.atoms[k];
    if (!std::isfinite(x[i][0]) || !std::isfinite(x[i][1]) || !std::isfinite(x[i][2])) {
      nbad++;
      first = std::min(first, atom->tag[i]);
    }
  }
  MPI_Allreduce(&nbad, &nbad_all, 1, MPI_LMP_BIGINT, MPI_SUM, world);
  if (nbad_all > 0) {
    tagint first_all = MAXTAGINT;
    MPI_Allreduce(&first, &first_all, 1, MPI_LMP_TAGINT, MPI_MIN, world);
    first = first_all;
  }
  return nbad_all;
}

/* ----------------------------------------------------------------------
   cloud.x = the cloud atoms' positions before denoising
------------------------------------------------------------------------- */

void ComputeIcephase::load_raw_positions()
{
  double **x = atom->x;
  const int n = (int) cloud.atoms.size();
  cloud.x.resize(3 * (size_t) n);
  for (int k = 0; k < n; k++)
    for (int d = 0; d < 3; d++) cloud.x[3 * k + d] = x[cloud.atoms[k]][d];
}

/* ----------------------------------------------------------------------
   oxygens closer than min_oxygen_distance to another oxygen are not
   water (phases.py in icephase_lmp says why): the offline pipeline and this
   compute both label them liquid and leave them out of the others'
   denoising and SOAP. Each rank flags its local oxygens (their neighbours
   within that distance are all in its cloud), a forward communication
   gives every ghost its owner's flag, and flagged atoms leave the cloud.
   too_close.count: the number of such oxygens on all ranks;
   too_close.first: the smallest of their atom IDs (all ranks). Without
   any, nothing is communicated.
------------------------------------------------------------------------- */

void ComputeIcephase::exclude_close()
{
  const int n = (int) cloud.atoms.size();
  const int nall = atom->nlocal + atom->nghost;
  too_close.excluded.clear();
  for (int i = 0; i < nall; i++) close_flag[i] = 0.0;

  // a search stops at the first close atom, so a pile of atoms on one spot
  // costs no more than a few bins' worth per atom
  load_raw_positions();
  double lo[3], hi[3];
  IcephaseBins::extent(cloud.x.data(), n, lo, hi);
  too_close.bins.setup(lo, hi, min_oxygen_distance, n);
  too_close.bins.fill(cloud.x.data(), n);
  bigint nclose = 0;
  tagint first = MAXTAGINT;
  for (int k = 0; k < cloud.nlocal; k++) {
    if (!too_close.bins.find_within(&cloud.x[3 * k], [k](int j) { return j != k; })) continue;
    close_flag[cloud.atoms[k]] = 1.0;
    nclose++;
    first = std::min(first, atom->tag[cloud.atoms[k]]);
  }

  MPI_Allreduce(&nclose, &too_close.count, 1, MPI_LMP_BIGINT, MPI_SUM, world);
  if (too_close.count == 0) return;
  MPI_Allreduce(&first, &too_close.first, 1, MPI_LMP_TAGINT, MPI_MIN, world);
  comm_mode = COMM_CLOSE;
  comm->forward_comm(this);
  comm_mode = COMM_DISP;

  // the cloud without them: local oxygens first, then ghosts, as before
  int kept = 0, kept_local = 0;
  for (int k = 0; k < n; k++) {
    const int i = cloud.atoms[k];
    if (close_flag[i] != 0.0) {
      if (k < cloud.nlocal) too_close.excluded.push_back(i);
      continue;
    }
    cloud.atoms[kept++] = i;
    if (k < cloud.nlocal) kept_local++;
  }
  cloud.atoms.resize(kept);
  cloud.nlocal = kept_local;
}

/* ----------------------------------------------------------------------
   which cloud atom stands for each ghost in the denoiser graph: a ghost
   whose atom ID belongs to a local oxygen of this rank is that oxygen
   (shifted by the periodic image offset); any other ghost is a node of
   its own, refreshed by forward communication. Also the extent of the
   cloud before denoising, and cloud.x = those positions.
------------------------------------------------------------------------- */

void ComputeIcephase::find_owners()
{
  const int n = (int) cloud.atoms.size();
  const int nlocal_cloud = cloud.nlocal;
  double **x = atom->x;
  const tagint *tag = atom->tag;

  cloud.owner.resize(n);
  for (int k = 0; k < n; k++) cloud.owner[k] = k;
  cloud.image.assign(3 * (size_t) n, 0.0);

  // the bins of the graph search span the cloud before denoising: an atom
  // that the denoiser throws far away (it happens to overlapping atoms)
  // then lands in an edge bin instead of stretching every bin
  load_raw_positions();
  IcephaseBins::extent(cloud.x.data(), n, cloud.lo, cloud.hi);
  cloud.nfolded = 0;
  cloud.nremote = n - nlocal_cloud;
  if (!atom->tag_enable || nlocal_cloud == 0 || n == nlocal_cloud) return;

  // atom ID -> cloud index of this rank's local oxygens. (Not atom->map():
  // it may not exist, e.g. for atom_style atomic, and it may return a
  // ghost copy rather than the local atom.)
  std::unordered_map<tagint, int> local_of;
  local_of.reserve(2 * (size_t) nlocal_cloud);
  for (int k = 0; k < nlocal_cloud; k++) local_of.emplace(tag[cloud.atoms[k]], k);

  for (int k = nlocal_cloud; k < n; k++) {
    auto it = local_of.find(tag[cloud.atoms[k]]);
    if (it == local_of.end()) continue;
    const int i = cloud.atoms[k], o = cloud.atoms[it->second];
    cloud.owner[k] = it->second;
    // from the positions before denoising: both copies move by the same
    // displacement, so the shift stays the periodic image offset
    for (int d = 0; d < 3; d++) cloud.image[3 * k + d] = x[i][d] - x[o][d];
    cloud.nfolded++;
  }
  cloud.nremote -= cloud.nfolded;
}

/* ----------------------------------------------------------------------
   cloud.x = the current (denoised) positions: every cloud atom moves by
   the displacement of the node that stands for it
------------------------------------------------------------------------- */

void ComputeIcephase::fill_positions()
{
  double **x = atom->x;
  const int n = (int) cloud.atoms.size();
  cloud.x.resize(3 * (size_t) n);
  for (int k = 0; k < n; k++) {
    const int i = cloud.atoms[k], o = cloud.atoms[cloud.owner[k]];
    for (int d = 0; d < 3; d++) cloud.x[3 * k + d] = x[i][d] + disp[o][d];
  }
}

/* ----------------------------------------------------------------------
   the denoising iterations: each builds the graph at the current
   positions, takes one step of the local oxygens (libtorch), and brings
   the ghost nodes their owners' displacements. Ghost nodes owned by
   another rank follow them through a forward communication after every
   iteration; where no rank has any (one rank), every ghost follows its
   local owner directly. Ends with cloud.x at the denoised positions.
------------------------------------------------------------------------- */

void ComputeIcephase::denoise()
{
  double t0 = MPI_Wtime();
  int mine_remote = cloud.nremote > 0 ? 1 : 0, any_remote = 0;
  MPI_Allreduce(&mine_remote, &any_remote, 1, MPI_INT, MPI_MAX, world);
  timer.comm += MPI_Wtime() - t0;

  const int nall = atom->nlocal + atom->nghost;
  for (int i = 0; i < nall; i++) disp[i][0] = disp[i][1] = disp[i][2] = 0.0;

  // layer by layer where other ranks own ghost nodes (with none, the graph has no ghost node anyway)
  const bool layerwise = denoiser->layerwise && any_remote;
  if (layerwise) {
    graph.cloud_of.assign(nall, -1);
    for (int k = 0; k < (int) cloud.atoms.size(); k++) graph.cloud_of[cloud.atoms[k]] = k;
    graph.stage.assign(cloud.atoms.size() * (size_t) denoiser->width, 0.0f);
  }

  std::string err;
  cloud.has_repeat_x = false;
  for (int iter = 0; iter < iterations; iter++) {
    t0 = MPI_Wtime();
    fill_positions();
    err.clear();
    const bool graph_ok = build_graph(cloud.nremote > 0, layerwise ? 1 : num_layers, err);
    const double t1 = MPI_Wtime();
    double maxstep = 0.0, maxstep_all = 0.0;
    timer.layer_comm = 0.0;
    if (layerwise) {
      denoise_by_layers(maxstep, err);
    } else if (graph_ok) {
      denoise_step(maxstep, err);
    }
    const double t2 = MPI_Wtime() - timer.layer_comm;    // the layers' communication counts as comm
    all_or_error(err);
    if (any_remote) comm->forward_comm(this);
    // (only an early stop needs the largest step of all ranks: one synchronisation less per iteration)
    if (tolerance > 0.0) MPI_Allreduce(&maxstep, &maxstep_all, 1, MPI_DOUBLE, MPI_MAX, world);
    timer.graph += t1 - t0;
    timer.denoise += t2 - t1;
    timer.comm += MPI_Wtime() - t2;
    timer.iterations++;
    // the other-crystal repeat test reads the positions after the first iterations
    // (icephase_lmp.other_crystal.REPEAT_TEST_ITERATIONS says why), where more follow
    if (other_crystal && iter + 1 == repeat_iterations && repeat_iterations < iterations) {
      fill_positions();
      cloud.repeat_x = cloud.x;
      cloud.has_repeat_x = true;
    }
    if (tolerance > 0.0 && maxstep_all < tolerance) break;
  }
  fold_ghosts(any_remote);
  fill_positions();
}

/* ----------------------------------------------------------------------
   folded ghosts take their owner's displacement; where the forward
   communication ran, it must have brought them exactly that value
------------------------------------------------------------------------- */

void ComputeIcephase::fold_ghosts(bool any_remote)
{
  bigint nmismatch = 0;
  for (int k = cloud.nlocal; k < (int) cloud.atoms.size(); k++) {
    if (cloud.owner[k] == k) continue;
    const int i = cloud.atoms[k], o = cloud.atoms[cloud.owner[k]];
    for (int d = 0; d < 3; d++) {
      if (any_remote && disp[i][d] != disp[o][d]) nmismatch++;
      disp[i][d] = disp[o][d];
    }
  }
  std::string err;
  if (nmismatch)
    err = fmt::format("Compute icephase: internal error: the forward communication gave {} ghost "
                      "coordinates another displacement than their local owner's",
                      nmismatch);
  all_or_error(err);
}

/* ----------------------------------------------------------------------
   the denoiser graph at the current cloud positions: every directed pair
   (centre node, cloud atom) closer than r_max, found with a binned search
   over the cloud; the neighbour is replaced by the node that stands for
   it, with its image offset as the edge shift, so the edge vector
   x(node) + shift - x(centre) is the neighbour's own position.
   With prune: the edges of ghost nodes depth or more graph hops away
   from every local oxygen are left out, and so are the ghost nodes more
   than depth hops away. With depth = num_layers, a network of num_layers
   message-passing layers cannot carry their information to a local
   oxygen, so the local results do not change; the ghost nodes' own
   results are discarded anyway (forward communication replaces them).
   With depth 1 (layer by layer) only the local oxygens keep their edges,
   and the ghost nodes are their neighbours, whose features come from
   their owners before every layer.
   Output: graph.nodes (local oxygens first), graph.x32 [N][3],
   graph.edges [2][E] (centres, then neighbours), graph.shift32 [E][3].
------------------------------------------------------------------------- */

bool ComputeIcephase::build_graph(bool prune, int depth, std::string &err)
{
  graph.nodes.clear();
  graph.x32.clear();
  graph.edges.clear();
  graph.shift32.clear();
  graph.neighbour.clear();
  graph.nlocal = graph.nghost = 0;
  graph.nedges = 0;
  if (cloud.atoms.empty() || cloud.nlocal == 0) return true;

  const bool bfs = prune && depth > 0;
  // at depth 1 only the local oxygens keep edges: the ghosts' own neighbours are never used
  if (!find_candidate_edges(bfs && depth == 1, err)) return false;
  measure_hops(bfs, depth);
  assemble_graph(bfs, depth);
  return true;
}

/* ----------------------------------------------------------------------
   candidate edges of every node (or of the local ones only), as cloud
   indices: centre k's neighbours
   are graph.neighbour[graph.first_neighbour[k] .. [k + 1]) (at most
   max_neighbours per atom: more means the denoiser has collapsed atoms
   together, and the graph would grow without bound)
------------------------------------------------------------------------- */

bool ComputeIcephase::find_candidate_edges(bool locals_only, std::string &err)
{
  const int n = (int) cloud.atoms.size();
  graph.bins.setup(cloud.lo, cloud.hi, r_max, n);
  graph.bins.fill(cloud.x.data(), n);

  std::vector<int> &neighbour = graph.neighbour;
  graph.first_neighbour.assign(n + 1, 0);
  neighbour.reserve((size_t) n * 16);
  const size_t max_pairs = (size_t) max_neighbours * (size_t) n;
  for (int k = 0; k < n; k++) {
    graph.first_neighbour[k] = (int) neighbour.size();
    if (neighbour.size() > max_pairs) {
      err = fmt::format("Compute icephase: the denoised oxygens have more than {} neighbours each "
                        "within {} A (water has at most ~25): the denoiser has collapsed them "
                        "together; the model file is damaged or not an icephase denoiser",
                        max_neighbours, r_max);
      neighbour.clear();
      return false;
    }
    if (cloud.owner[k] != k) continue;    // folded ghost: its owner is the node
    if (locals_only && k >= cloud.nlocal) continue;
    graph.bins.find_within(&cloud.x[3 * k], [&neighbour, k](int j) {
      if (j != k) neighbour.push_back(j);
      return false;
    });
  }
  graph.first_neighbour[n] = (int) neighbour.size();
  return true;
}

/* ----------------------------------------------------------------------
   graph.hop: the graph distance from the local oxygens (breadth first,
   centre to neighbour: the direction in which a layer gathers its
   messages); without bfs every node takes part with all its edges
------------------------------------------------------------------------- */

void ComputeIcephase::measure_hops(bool bfs, int depth)
{
  const int n = (int) cloud.atoms.size();
  std::vector<int> &hop = graph.hop;
  hop.assign(n, -1);
  if (!bfs) {
    for (int k = 0; k < n; k++)
      if (cloud.owner[k] == k) hop[k] = 0;
    return;
  }
  std::vector<int> &queue = graph.queue;
  queue.clear();
  for (int k = 0; k < cloud.nlocal; k++) {
    hop[k] = 0;
    queue.push_back(k);
  }
  for (size_t q = 0; q < queue.size(); q++) {
    const int u = queue[q];
    if (hop[u] >= depth) continue;    // its edges are left out
    for (int e = graph.first_neighbour[u]; e < graph.first_neighbour[u + 1]; e++) {
      const int v = cloud.owner[graph.neighbour[e]];
      if (hop[v] < 0) {
        hop[v] = hop[u] + 1;
        queue.push_back(v);
      }
    }
  }
}

/* ----------------------------------------------------------------------
   the graph's nodes (the reached ones), edges (those of the nodes that
   keep theirs), edge shifts and float positions, as libtorch takes them
------------------------------------------------------------------------- */

void ComputeIcephase::assemble_graph(bool bfs, int depth)
{
  const int n = (int) cloud.atoms.size();
  const std::vector<int> &hop = graph.hop, &first = graph.first_neighbour;
  auto keeps_edges = [&](int k) { return hop[k] >= 0 && (!bfs || hop[k] < depth); };

  graph.index.assign(n, -1);
  for (int k = 0; k < n; k++)
    if (cloud.owner[k] == k && hop[k] >= 0) {
      graph.index[k] = (int) graph.nodes.size();
      graph.nodes.push_back(k);
    }
  const int ngraph = (int) graph.nodes.size();

  size_t nedge = 0;
  for (int g = 0; g < ngraph; g++) {
    const int k = graph.nodes[g];
    if (keeps_edges(k)) nedge += first[k + 1] - first[k];
  }
  graph.edges.resize(2 * nedge);
  graph.shift32.resize(3 * nedge);
  size_t e = 0;
  for (int g = 0; g < ngraph; g++) {
    const int k = graph.nodes[g];
    if (!keeps_edges(k)) continue;
    for (int c = first[k]; c < first[k + 1]; c++, e++) {
      const int m = graph.neighbour[c];
      graph.edges[e] = g;
      graph.edges[nedge + e] = graph.index[cloud.owner[m]];
      for (int d = 0; d < 3; d++) graph.shift32[3 * e + d] = (float) cloud.image[3 * m + d];
    }
  }

  graph.x32.resize(3 * (size_t) ngraph);
  for (int g = 0; g < ngraph; g++)
    for (int d = 0; d < 3; d++) graph.x32[3 * g + d] = (float) cloud.x[3 * graph.nodes[g] + d];

  graph.nlocal = cloud.nlocal;
  graph.nghost = ngraph - cloud.nlocal;
  graph.nedges = (bigint) nedge;
}

/* ----------------------------------------------------------------------
   one denoising step: disp of the local cloud atoms -= eps(graph)
------------------------------------------------------------------------- */

void ComputeIcephase::denoise_step(double &maxstep, std::string &err)
{
  maxstep = 0.0;
  if (cloud.nlocal == 0) return;
  run_denoiser(
      [&] {
        torch::Tensor pos, edge_index, shift;
        graph_tensors(pos, edge_index, shift);
        if (!denoiser->use_compiled) {
          apply_steps(denoiser->module.forward({pos, edge_index, shift}).toTensor(), maxstep, err);
          return;
        }
        // the module's forward() with the compiled layers in place of its own, each pair once
        auto &m = denoiser->module;
        at::Tensor pairs, pair_shift;
        const bool paired = pair_edges(edge_index, shift, pairs, pair_shift);
        at::Tensor lengths, unit;
        IcephaseCompact::Layers::edge_geometry(pos, pairs, pair_shift, lengths, unit);
        auto features = m.get_method("initial_features")({pos.size(0), pos}).toTensor();
        for (int k = 0; k < num_layers; k++)
          features = denoiser->compiled.forward(k, features, lengths, unit, pairs, paired);
        apply_steps(m.get_method("eps_from_features")({features}).toTensor(), maxstep, err);
      },
      err);
}

/* ----------------------------------------------------------------------
   the edges for the compiled layers (true: paired). Each edge between two
   local oxygens is in the list in both directions: one goes, and the
   kernel adds the other's message as well, so the radial MLP (about half
   of a layer) runs once per pair, as offline. An edge from a ghost node
   stays (a ghost keeps no edges of its own, so its reverse is not in the
   list); the message the kernel also adds to the ghost's row is never
   read (a ghost's features come from its owner, and only local rows give
   a step). With an oxygen next to its own image (an edge from a node to
   itself, in a box narrower than 2 r_max) the full list goes, unpaired.
------------------------------------------------------------------------- */

bool ComputeIcephase::pair_edges(const at::Tensor &edge_index, const at::Tensor &shift, at::Tensor &pairs,
                                 at::Tensor &pair_shift) const
{
  pairs = edge_index;
  pair_shift = shift;
  if (edge_index.size(1) == 0 || (edge_index[0] == edge_index[1]).any().item<bool>()) return false;
  // graph nodes 0 .. nlocal - 1 are the local oxygens; every centre is one of them
  const auto keep = (edge_index[0] < edge_index[1]) | (edge_index[1] >= (int64_t) cloud.nlocal);
  const auto kept = keep.nonzero().squeeze(1);
  pairs = edge_index.index_select(1, kept);
  pair_shift = shift.index_select(0, kept);
  return true;
}

/* ----------------------------------------------------------------------
   libtorch work of this rank: in inference mode, on the compute's
   threads, and on CPU with the plain interpreter (TorchScript's
   optimising executor spends seconds profiling and re-optimising the
   first two calls and is no faster afterwards, denoise.py has the
   figures; on CUDA its kernel fusion may pay, not measured; per thread,
   restored on return). An exception becomes err.
------------------------------------------------------------------------- */

void ComputeIcephase::run_denoiser(const std::function<void()> &work, std::string &err)
{
  try {
    c10::InferenceMode guard;
    at::set_num_threads(nthreads);
    torch::jit::GraphOptimizerEnabledGuard optimise(denoiser->device.is_cuda());
    work();
  } catch (const c10::Error &e) {
    err = std::string("Compute icephase: the denoiser failed in libtorch: ") + e.what_without_backtrace();
  } catch (const std::exception &e) {
    err = std::string("Compute icephase: the denoiser failed: ") + e.what();
  }
}

/* ----------------------------------------------------------------------
   the same step, one layer at a time: every rank runs each layer for its
   local oxygens (the graph's only centres), then a forward communication
   brings every ghost node its owner's new features. Collective: every
   rank takes part in every communication, also one without local
   oxygens or one where something failed (it skips its own work from then
   on), so no rank waits for another that stopped; the caller's
   all_or_error then stops all of them with the first error.
------------------------------------------------------------------------- */

void ComputeIcephase::denoise_by_layers(double &maxstep, std::string &err)
{
  maxstep = 0.0;
  auto &m = denoiser->module;
  const int width = denoiser->width;
  const int ngraph = (int) graph.nodes.size();
  // per edge: its radial basis (TorchScript layers) or its length (compiled layers), and its unit vector
  torch::Tensor pos, edge_index, shift, radial, lengths, unit, features;
  bool paired = false;
  // the work of this rank, if it has local oxygens and nothing failed yet; errors go to err
  auto local_work = [&](const std::function<void()> &work) {
    if (cloud.nlocal > 0 && err.empty()) run_denoiser(work, err);
  };

  mark_needed_features();
  local_work([&] {
    graph_tensors(pos, edge_index, shift);
    if (denoiser->use_compiled) {
      at::Tensor all_edges = edge_index, all_shifts = shift;
      paired = pair_edges(all_edges, all_shifts, edge_index, shift);
      IcephaseCompact::Layers::edge_geometry(pos, edge_index, shift, lengths, unit);
    } else {
      auto terms = m.get_method("edge_terms")({pos, edge_index, shift}).toTuple();
      radial = terms->elements()[0].toTensor();
      unit = terms->elements()[1].toTensor();
    }
    features = m.get_method("initial_features")({(int64_t) ngraph, pos}).toTensor();
  });
  for (int64_t k = 0; k < num_layers; k++) {
    // the last layer's features are read for the local oxygens only: no exchange after it
    const bool exchange = k + 1 < num_layers;
    local_work([&] {
      // the compiled layers compute the local rows only: the ghosts' rows come from their owners next
      features = denoiser->use_compiled
          ? denoiser->compiled.forward((int) k, features, lengths, unit, edge_index, paired, cloud.nlocal)
          : m.get_method("layer_step")({k, features, radial, unit, edge_index}).toTensor();
      if (!exchange) return;
      features = features.to(torch::kCPU, torch::kFloat32).contiguous();
      if (features.dim() != 2 || features.size(0) != ngraph || features.size(1) != width)
        throw std::runtime_error(fmt::format("layer {} gave node features of another shape than "
                                             "[{}, {}]: the model file is damaged",
                                             k, ngraph, width));
      // graph nodes 0 .. nlocal - 1 are cloud atoms 0 .. nlocal - 1
      std::memcpy(graph.stage.data(), features.data_ptr<float>(),
                  sizeof(float) * (size_t) cloud.nlocal * width);
    });
    if (!exchange) break;
    const double t0 = MPI_Wtime();
    comm_mode = COMM_FEATURES;
    comm->forward_comm(this, 1 + doubles_for(width));
    comm_mode = COMM_DISP;
    timer.layer_comm += MPI_Wtime() - t0;
    local_work([&] {
      float *f = features.data_ptr<float>();
      for (int g = cloud.nlocal; g < ngraph; g++)
        std::memcpy(f + (size_t) g * width, &graph.stage[(size_t) graph.nodes[g] * width],
                    sizeof(float) * width);
      features = features.to(denoiser->device);
    });
  }
  local_work([&] {
    apply_steps(m.get_method("eps_from_features")({features}).toTensor(), maxstep, err);
  });
}

/* ----------------------------------------------------------------------
   which copies need node features: each rank marks its ghost nodes, and a
   reverse communication takes every mark back along the swaps that made
   the copy (graph.sends: per send list, the entries whose copy is a ghost
   node or is sent on to one). The node features then travel only to
   those copies: of the ghosts within the communication cutoff (which SOAP
   needs) only the ones within r_max of another rank's oxygens are graph
   nodes, and of the periodic images a rank makes of its own oxygens only
   the ones it passes on to another rank need features. Collective.
------------------------------------------------------------------------- */

void ComputeIcephase::mark_needed_features()
{
  const double t0 = MPI_Wtime();
  graph.need.assign(atom->nlocal + atom->nghost, 0.0);
  for (size_t g = cloud.nlocal; g < graph.nodes.size(); g++) graph.need[cloud.atoms[graph.nodes[g]]] = 1.0;
  graph.sends.clear();
  comm_mode = COMM_NEED;
  comm->reverse_comm(this);
  comm_mode = COMM_DISP;
  timer.layer_comm += MPI_Wtime() - t0;
}

/* ----------------------------------------------------------------------
   the graph as libtorch tensors on the denoiser's device
------------------------------------------------------------------------- */

void ComputeIcephase::graph_tensors(at::Tensor &pos, at::Tensor &edge_index, at::Tensor &shift)
{
  const int64_t ngraph = (int64_t) graph.nodes.size();
  const int64_t nedge = (int64_t) graph.edges.size() / 2;
  const auto dev = denoiser->device;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  pos = torch::from_blob(graph.x32.data(), {ngraph, 3}, f32).to(dev);
  if (nedge > 0) {
    edge_index = torch::from_blob(graph.edges.data(), {2, nedge}, i64).to(dev);
    shift = torch::from_blob(graph.shift32.data(), {nedge, 3}, f32).to(dev);
  } else {    // isolated atoms only
    edge_index = torch::zeros({2, 0}, i64.device(dev));
    shift = torch::zeros({0, 3}, f32.device(dev));
  }
}

/* ----------------------------------------------------------------------
   disp of the local cloud atoms -= eps (one row per graph node). As
   offline (icephase_lmp.denoise): a step longer than max_step is
   shortened to it; a non-finite one, or one beyond runaway_step, stops.
------------------------------------------------------------------------- */

bool ComputeIcephase::apply_steps(const at::Tensor &eps_any, double &maxstep, std::string &err)
{
  const int64_t ngraph = (int64_t) graph.nodes.size();
  auto eps = eps_any.to(torch::kCPU, torch::kFloat64).contiguous();
  if (eps.dim() != 2 || eps.size(0) != ngraph || eps.size(1) != 3) {
    std::string shape;
    for (auto s : eps.sizes()) shape += (shape.empty() ? "" : ", ") + std::to_string(s);
    err = fmt::format("Compute icephase: the denoiser returned shape [{}] for {} atoms (expected "
                      "[{}, 3]): this is not an icephase denoiser",
                      shape, ngraph, ngraph);
    return false;
  }
  // graph nodes 0 .. nlocal - 1 are cloud atoms 0 .. nlocal - 1
  const double *e = eps.data_ptr<double>();
  const char *advice =
      "the model file is damaged or not an icephase denoiser, or the input is far from water; "
      "check the model with `icephase inspect` and the input's oxygens";
  for (int k = 0; k < cloud.nlocal; k++) {
    const int i = cloud.atoms[k];
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
  return true;
}

/* ----------------------------------------------------------------------
   the classifier's input: the local centres (soap.index[0 .. nlocal)),
   then the ghosts within reach, at the denoised positions.
   Oxygens that the denoiser threw farther than the ghost cutoff (it can
   diverge on overlapping atoms) have left every neighbourhood a rank can
   see: they are in no environment, and each is classified as a lone
   oxygen. (Kept in the cloud, a cloud thousands of Angstrom wide would
   make the SOAP neighbour search allocate memory without bound.)
------------------------------------------------------------------------- */

void ComputeIcephase::select_soap_input()
{
  const int n = (int) cloud.atoms.size();
  const double limitsq = ghost_cutoff * ghost_cutoff;
  auto diverged = [&](int k) {
    const double *dk = disp[cloud.atoms[k]];
    return dk[0] * dk[0] + dk[1] * dk[1] + dk[2] * dk[2] > limitsq;
  };
  soap.index.clear();
  soap.ndiverged = 0;
  soap.maxdisp = 0.0;
  soap.first_diverged = MAXTAGINT;
  for (int k = 0; k < cloud.nlocal; k++) {
    if (!diverged(k)) {
      soap.index.push_back(k);
      continue;
    }
    const int i = cloud.atoms[k];
    soap.ndiverged++;
    soap.maxdisp = std::max(soap.maxdisp, std::sqrt(disp[i][0] * disp[i][0] +
                                                    disp[i][1] * disp[i][1] +
                                                    disp[i][2] * disp[i][2]));
    soap.first_diverged = std::min(soap.first_diverged, atom->tag[i]);
  }
  soap.nlocal = (int) soap.index.size();
  for (int k = cloud.nlocal; k < n; k++)
    if (!diverged(k)) soap.index.push_back(k);
  select_environment();

  const int nsoap = (int) soap.index.size();
  soap.positions = cloud.x.data();
  if (nsoap < n) {
    gather_positions(cloud.x, soap.index, nsoap, soap.x);
    soap.positions = soap.x.data();
  }
}

/* ----------------------------------------------------------------------
   keep in soap.index (local centres first, then ghosts) only the ghosts
   within the SOAP reach of a centre, at the denoised positions: the
   others change no centre's SOAP vector. Binned search over the centres.
------------------------------------------------------------------------- */

void ComputeIcephase::select_environment()
{
  const int nsoap = (int) soap.index.size();
  if (!(soap_reach > 0.0) || nsoap == soap.nlocal) return;
  if (soap.nlocal == 0) {
    soap.index.clear();
    return;
  }
  // the margin only adds atoms that DScribe ignores: the result is the same
  const double cut = soap_reach + 0.5;
  gather_positions(cloud.x, soap.index, soap.nlocal, soap.centres_x);
  double lo[3], hi[3];
  IcephaseBins::extent(soap.centres_x.data(), soap.nlocal, lo, hi);
  soap.bins.setup(lo, hi, cut, soap.nlocal);
  soap.bins.fill(soap.centres_x.data(), soap.nlocal);

  // a ghost farther than cut from the centres' extent has no centre within cut: most
  // ghosts of a small box or subdomain (the communication cutoff is ~1.6x the SOAP
  // reach) are, and each would otherwise search 18-27 bins in vain
  const double cutsq = cut * cut;
  auto beyond_extent = [&](const double *p) {
    double rsq = 0.0;
    for (int d = 0; d < 3; d++) {
      const double out = std::max({lo[d] - p[d], 0.0, p[d] - hi[d]});
      rsq += out * out;
    }
    return rsq >= cutsq;
  };
  int kept = soap.nlocal;
  for (int s = soap.nlocal; s < nsoap; s++) {
    const double *p = &cloud.x[3 * soap.index[s]];
    if (!beyond_extent(p) && soap.bins.find_within(p, [](int) { return true; }))
      soap.index[kept++] = soap.index[s];
  }
  soap.index.resize(kept);
}

/* ----------------------------------------------------------------------
   SOAP + nearest reference (Python) for the local centres, and once for a
   lone oxygen when some diverged; a code outside 0..max_code stops
------------------------------------------------------------------------- */

void ComputeIcephase::classify()
{
  const int nsoap = (int) soap.index.size(), nlocal = soap.nlocal;
  soap.codes.assign(nlocal, 0);
  soap.distances.assign(nlocal, 0.0);
  soap.reduced.assign((size_t) nlocal * nreduced, 0.0);
  std::string err;
  double t0 = MPI_Wtime();
  if (nlocal > 0 &&
      !IcephasePython::classify(model_path, soap.positions, nsoap, nlocal, metric, threshold,
                                iterations > 0, soap.codes.data(), soap.distances.data(),
                                soap.reduced.data(), nreduced, err))
    err = "Compute icephase: the classifier failed: " + err;
  if (err.empty() && soap.ndiverged > 0 && !lone_known) {
    const double origin[3] = {0.0, 0.0, 0.0};
    std::vector<double> lone_reduced(nreduced);
    if (IcephasePython::classify(model_path, origin, 1, 1, metric, threshold, iterations > 0,
                                 &lone_code, &lone_distance, lone_reduced.data(), nreduced,
                                 err))
      lone_known = true;
    else
      err = "Compute icephase: the classifier failed: " + err;
  }
  timer.classify += MPI_Wtime() - t0;

  auto check_code = [&](int code) {
    if (err.empty() && (code < 0 || code > max_code))
      err = fmt::format("Compute icephase: the classifier returned phase code {} outside 0..{}",
                        code, max_code);
  };
  for (int s = 0; s < nlocal; s++) check_code(soap.codes[s]);
  if (soap.ndiverged > 0) check_code(lone_code);
  soap.first_codes = soap.codes;
  t0 = MPI_Wtime();
  all_or_error(err);
  timer.comm += MPI_Wtime() - t0;
}

/* ----------------------------------------------------------------------
   label[] of the local atoms from their codes (diverged atoms: the code of a
   lone oxygen); ghosts -1 until share_labels
------------------------------------------------------------------------- */

void ComputeIcephase::local_labels()
{
  const int nall = atom->nlocal + atom->nghost;
  for (int i = 0; i < nall; i++) label[i] = -1.0;
  for (int k = 0; k < cloud.nlocal; k++) label[cloud.atoms[k]] = lone_code;    // diverged keep it
  for (int s = 0; s < soap.nlocal; s++) label[cloud.atoms[soap.index[s]]] = soap.codes[s];
}

/* ----------------------------------------------------------------------
   every ghost gets its owner's label[] (forward communication); then
   cloud_values = label[] of every atom of the classifier's cloud
------------------------------------------------------------------------- */

void ComputeIcephase::forward_labels(std::vector<int> &cloud_values)
{
  comm_mode = COMM_LABEL;
  comm->forward_comm(this);
  comm_mode = COMM_DISP;
  const int nsoap = (int) soap.index.size();
  cloud_values.resize(nsoap);
  for (int s = 0; s < nsoap; s++) cloud_values[s] = (int) label[cloud.atoms[soap.index[s]]];
}

/* ----------------------------------------------------------------------
   soap.cloud_codes = the code (label[], local_labels) of every atom of the
   classifier's cloud, the ghosts' from their owners
------------------------------------------------------------------------- */

void ComputeIcephase::share_labels()
{
  forward_labels(soap.cloud_codes);
}

/* ----------------------------------------------------------------------
   cloud_flags (per classifier atom) = the local_flags (per centre) of the
   atom on the rank that owns it, 0 for atoms no rank analysed: a forward
   communication through label[], which local_labels() fills again before
   the codes are next shared
------------------------------------------------------------------------- */

void ComputeIcephase::share_flags(const std::vector<int> &local_flags, std::vector<int> &cloud_flags)
{
  const int nall = atom->nlocal + atom->nghost;
  for (int i = 0; i < nall; i++) label[i] = 0.0;
  for (int s = 0; s < soap.nlocal; s++) label[cloud.atoms[soap.index[s]]] = local_flags[s];
  const double t0 = MPI_Wtime();
  forward_labels(cloud_flags);
  timer.comm += MPI_Wtime() - t0;
}

/* ----------------------------------------------------------------------
   phase vote (icephase_lmp.phase_vote): every analysed atom's code goes to
   its ghost copies (forward communication), then the Python side gives each
   ice-labelled local centre the phase most ice-labelled atoms within the
   vote radius carry. One round on the classifier's codes: the result does
   not depend on how the atoms are spread over the ranks. The cloud reaches
   the SOAP reach beyond the centres; the classifier refuses a vote radius
   beyond it (icephase_lmp.classifier), so the cloud covers every voter.
------------------------------------------------------------------------- */

void ComputeIcephase::vote_phases()
{
  const int nsoap = (int) soap.index.size(), nlocal = soap.nlocal;
  // only ice-labelled centres can change: with none on any rank, skip the
  // communication and the Python call (an all-liquid box)
  bool ice = false;
  for (int s = 0; s < nlocal; s++) ice = ice || soap.codes[s] > LIQUID;
  if (!on_any_rank(ice)) return;

  local_labels();
  share_labels();
  soap.grown.resize(nlocal);

  std::string err;
  if (nlocal > 0 &&
      !IcephasePython::vote(model_path, soap.positions, nsoap, nlocal, soap.cloud_codes.data(),
                            soap.grown.data(), err))
    err = "Compute icephase: the phase vote failed: " + err;
  check_grown_codes(err, "the phase vote", false);
  all_or_error(err);
  for (int s = 0; s < nlocal; s++) soap.codes[s] = soap.grown[s];
}

/* ----------------------------------------------------------------------
   boundary step (icephase_lmp.boundary): in each round, every analysed
   atom's code goes to its ghost copies (forward communication), then the
   Python side gives each liquid-labelled local centre that continues the
   crystal (an ordered first shell, or ordered bonds to its ice-labelled
   neighbours) the phase of its nearest ice-labelled first-shell neighbour. All
   centres decide on the previous round's codes, so the result does not
   depend on how the atoms are spread over the ranks. The cloud reaches the
   SOAP reach (> two first shells) beyond the centres, which the ordered-shell
   test of a centre needs.
------------------------------------------------------------------------- */

void ComputeIcephase::extend_ice()
{
  local_labels();
  soap.grown.resize(soap.nlocal);

  // a round changes a centre only if some centre is liquid and some atom ice, and
  // a round that changed nothing anywhere would be repeated exactly: skip those
  // rounds (in an all-ice or all-liquid box, every one), each for one
  // allreduce instead of a forward communication and a Python call
  bool ice = false;
  for (int k = 0; k < cloud.nlocal; k++) ice = ice || label[cloud.atoms[k]] > LIQUID;
  if (!on_any_rank(has_liquid_centre()) || !on_any_rank(ice)) return;

  const std::vector<int> before(soap.codes.begin(), soap.codes.begin() + soap.nlocal);
  if (grow_rounds(boundary_rounds)) support_check(before, {}, {});
  grow_small_clusters();
}

/* ----------------------------------------------------------------------
   the boundary step's rounds (icephase_lmp.boundary.grow_once) on
   soap.codes and label[]; returns whether any rank's codes changed
------------------------------------------------------------------------- */

bool ComputeIcephase::grow_rounds(int rounds)
{
  const int nsoap = (int) soap.index.size(), nlocal = soap.nlocal;
  std::string err;
  bool grew = false;
  for (int round = 0; round < rounds; round++) {
    share_labels();
    if (nlocal > 0 &&
        !IcephasePython::grow(model_path, soap.positions, nsoap, nlocal, soap.cloud_codes.data(),
                              soap.grown.data(), err))
      err = "Compute icephase: the boundary step failed: " + err;
    all_or_error(err);
    bool changed = false;
    for (int s = 0; s < nlocal; s++) {
      changed = changed || soap.codes[s] != soap.grown[s];
      soap.codes[s] = soap.grown[s];
      label[cloud.atoms[soap.index[s]]] = soap.grown[s];
    }
    changed = on_any_rank(changed);
    grew = grew || changed;
    if (!changed) break;
  }
  return grew;
}

/* ----------------------------------------------------------------------
   the support check (icephase_lmp.boundary.supported): the codes after the
   rounds go to the ghosts once more, and each centre the rounds made ice
   (liquid in before) stays ice only where enough of the oxygens around it
   are ice; one pass, every centre deciding on the same codes. held_codes
   (empty, or one per centre): codes to put back where they differ from
   before, after the check; cluster_sizes (empty, or one per centre: the
   size of its ice cluster): the share scaled for a convex surface
   (boundary.convex_support_scale)
------------------------------------------------------------------------- */

void ComputeIcephase::support_check(const std::vector<int> &before, const std::vector<int> &held_codes,
                                    const std::vector<int> &cluster_sizes)
{
  const int nsoap = (int) soap.index.size(), nlocal = soap.nlocal;
  if (support_radius <= 0.0) return;
  std::string err;
  share_labels();
  if (nlocal > 0 &&
      !IcephasePython::support(model_path, soap.positions, nsoap, nlocal, soap.cloud_codes.data(),
                               before.data(), cluster_sizes.empty() ? nullptr : cluster_sizes.data(),
                               soap.grown.data(), err))
    err = "Compute icephase: the boundary step's support check failed: " + err;
  check_grown_codes(err, "the boundary step's support check", !held_codes.empty());
  all_or_error(err);
  for (int s = 0; s < nlocal; s++) {
    soap.codes[s] = soap.grown[s];
    label[cloud.atoms[soap.index[s]]] = soap.grown[s];
  }
}

/* ----------------------------------------------------------------------
   small crystallites (step 5 of icephase_lmp.boundary): the ice clusters
   (first-shell bonds) of fewer than small_cluster_size oxygens and less
   than small_cluster_share of all analysed ones (boundary.small_cluster_limit),
   counted over all ranks, and (hold_spanning) that do not reach across the
   periodic box, get small_cluster_rounds more rounds and a support check
   of what those grew (with convex_support, asking for the share of ice a
   molecule on the surface of a ball of its grown cluster's size has); the
   oxygens of the other clusters carry the other-crystal code meanwhile
   (boundary.HELD: the boundary step runs before the other-crystal step, so
   no oxygen has that code yet, and the rounds and the support check read it
   as neither liquid nor ice), then their own again
------------------------------------------------------------------------- */

void ComputeIcephase::grow_small_clusters()
{
  const int nlocal = soap.nlocal;
  if (small_cluster_rounds <= 0 || !on_any_rank(has_liquid_centre())) return;
  std::vector<int> ids;
  const std::vector<bigint> sizes = local_cluster_sizes(&ids);
  bigint nmine = nlocal, nall = 0;
  MPI_Allreduce(&nmine, &nall, 1, MPI_LMP_BIGINT, MPI_SUM, world);
  const double limit = std::min((double) small_cluster_size, small_cluster_share * (double) nall);
  std::vector<bool> below(nlocal, false);    // an ice centre whose cluster is below the size gates
  for (int s = 0; s < nlocal; s++) below[s] = soap.codes[s] > LIQUID && (double) sizes[s] < limit;
  std::set<int> spanning;
  if (hold_spanning && on_any_rank(std::find(below.begin(), below.end(), true) != below.end()))
    spanning = spanning_cluster_ids(ids, below);
  bool small = false;
  std::vector<int> held_codes(nlocal, LIQUID);    // a held centre's own code, LIQUID for the rest
  const std::vector<int> base(soap.codes.begin(), soap.codes.begin() + nlocal);
  for (int s = 0; s < nlocal; s++) {
    if (base[s] <= LIQUID) continue;
    if (below[s] && spanning.count(ids[s]) == 0) {
      small = true;
    } else {
      held_codes[s] = base[s];
      soap.codes[s] = other_code;
    }
  }
  if (on_any_rank(small)) {
    local_labels();
    const std::vector<int> before(soap.codes.begin(), soap.codes.begin() + nlocal);
    if (grow_rounds(small_cluster_rounds)) {
      // the size of each oxygen's cluster as grown (the held ones carry the
      // other-crystal code, not ice): the support check of a convex surface
      std::vector<int> grown_sizes;
      if (convex_support && support_radius > 0.0) {
        for (const bigint size : local_cluster_sizes())
          grown_sizes.push_back((int) std::min(size, (bigint) std::numeric_limits<int>::max()));
        local_labels();    // the cluster search sent its IDs through label[]
      }
      support_check(before, held_codes, grown_sizes);
    }
  }
  for (int s = 0; s < nlocal; s++)
    if (held_codes[s] > LIQUID) soap.codes[s] = held_codes[s];
  local_labels();
}

/* ----------------------------------------------------------------------
   every rank's values, concatenated in rank order, on every rank
------------------------------------------------------------------------- */

template <typename T>
std::vector<T> ComputeIcephase::gathered_from_all_ranks(const std::vector<T> &mine, MPI_Datatype type)
{
  int nmine = (int) mine.size();
  std::vector<int> counts(comm->nprocs), offsets(comm->nprocs, 0);
  MPI_Allgather(&nmine, 1, MPI_INT, counts.data(), 1, MPI_INT, world);
  for (int p = 1; p < comm->nprocs; p++) offsets[p] = offsets[p - 1] + counts[p - 1];
  std::vector<T> all(offsets.back() + counts.back());
  MPI_Allgatherv(mine.data(), nmine, type, all.data(), counts.data(), offsets.data(), type, world);
  return all;
}

/* ----------------------------------------------------------------------
   the size of each local centre's ice cluster (0 for liquid): every ice
   centre starts from its atom ID; each pass, the ghosts get their owners'
   IDs and the Python side gives each local centre the smallest ID of the
   ice atoms bonded to it through the rank's cloud, until no rank changes
   one (the passes a cluster needs grow with the ranks it spans); then every
   rank's count per ID goes to all ranks
------------------------------------------------------------------------- */

std::vector<bigint> ComputeIcephase::local_cluster_sizes(std::vector<int> *cluster_ids)
{
  const int nsoap = (int) soap.index.size(), nlocal = soap.nlocal;
  std::vector<int> ids(nlocal, 0), cloud_ids, next(nlocal, 0);
  for (int s = 0; s < nlocal; s++)
    if (soap.codes[s] > LIQUID) ids[s] = (int) atom->tag[cloud.atoms[soap.index[s]]];
  std::string err;
  while (true) {
    share_flags(ids, cloud_ids);
    if (nlocal > 0 &&
        !IcephasePython::cluster_ids(model_path, soap.positions, nsoap, nlocal, cloud_ids.data(),
                                     next.data(), err))
      err = "Compute icephase: the boundary step's cluster search failed: " + err;
    all_or_error(err);
    bool changed = false;
    for (int s = 0; s < nlocal; s++) {
      changed = changed || next[s] != ids[s];
      ids[s] = next[s];
    }
    if (!on_any_rank(changed)) break;
  }

  std::map<int, bigint> mine;
  for (int s = 0; s < nlocal; s++)
    if (ids[s] > 0) mine[ids[s]]++;
  std::vector<bigint> flat;
  for (const auto &item : mine) {
    flat.push_back(item.first);
    flat.push_back(item.second);
  }
  const std::vector<bigint> all = gathered_from_all_ranks(flat, MPI_LMP_BIGINT);
  std::map<bigint, bigint> total;
  for (size_t k = 0; k + 1 < all.size(); k += 2) total[all[k]] += all[k + 1];
  std::vector<bigint> sizes(nlocal, 0);
  for (int s = 0; s < nlocal; s++)
    if (ids[s] > 0) sizes[s] = total[ids[s]];
  if (cluster_ids) *cluster_ids = ids;
  return sizes;
}

/* ----------------------------------------------------------------------
   the IDs of the ice clusters that reach across the periodic box
   (boundary.spanning_clusters): the members' (local centres flagged in
   members) fractional coordinates of their classified positions go to all
   ranks with their cluster IDs; a cluster reaches across along a periodic
   cell axis when its projections there leave no gap wider than the first
   shell, the one across the box's faces included
------------------------------------------------------------------------- */

std::set<int> ComputeIcephase::spanning_cluster_ids(const std::vector<int> &ids,
                                                    const std::vector<bool> &members)
{
  std::vector<double> mine;    // (id, lamda x, lamda y, lamda z) per member
  for (int s = 0; s < soap.nlocal; s++) {
    if (!members[s]) continue;
    double x[3] = {soap.positions[3 * s], soap.positions[3 * s + 1], soap.positions[3 * s + 2]};
    double lamda[3];
    domain->x2lamda(x, lamda);
    mine.push_back((double) ids[s]);
    for (double f : lamda) mine.push_back(f - std::floor(f));
  }
  const std::vector<double> all = gathered_from_all_ranks(mine, MPI_DOUBLE);

  // the distance between opposite faces of the box along each cell axis: one over the length of the
  // gradient of that fractional coordinate (a row of h_inv, Voigt order), as LAMMPS's Comm measures it
  const double *hi = domain->h_inv;
  const double widths[3] = {1.0 / std::sqrt(hi[0] * hi[0] + hi[5] * hi[5] + hi[4] * hi[4]),
                            1.0 / std::sqrt(hi[1] * hi[1] + hi[3] * hi[3]), 1.0 / hi[2]};
  std::map<int, std::vector<const double *>> clusters;
  for (size_t k = 0; k + 3 < all.size(); k += 4) clusters[(int) all[k]].push_back(&all[k + 1]);
  std::set<int> spans;
  for (const auto &item : clusters) {
    for (int axis = 0; axis < 3; axis++) {
      if (!domain->periodicity[axis]) continue;
      std::vector<double> f;
      for (const double *lamda : item.second) f.push_back(lamda[axis]);
      std::sort(f.begin(), f.end());
      double widest = 1.0 - f.back() + f.front();
      for (size_t k = 1; k < f.size(); k++) widest = std::max(widest, f[k] - f[k - 1]);
      if (widest * widths[axis] <= boundary_shell) {
        spans.insert(item.first);
        break;
      }
    }
  }
  return spans;
}

/* ----------------------------------------------------------------------
   cloud_vectors (per classifier atom [nreduced]) = each atom's vector of
   local_vectors (per centre [nreduced]) on the rank that owns it: a forward
   communication; NaN for atoms no rank computed one for
------------------------------------------------------------------------- */

void ComputeIcephase::share_vectors(const std::vector<double> &local_vectors,
                                    std::vector<double> &cloud_vectors)
{
  const int nall = atom->nlocal + atom->nghost;
  const int nsoap = (int) soap.index.size();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int i = 0; i < nall; i++)
    for (int f = 0; f < nreduced; f++) reduced[i][f] = nan;
  for (int s = 0; s < soap.nlocal; s++)
    for (int f = 0; f < nreduced; f++)
      reduced[cloud.atoms[soap.index[s]]][f] = local_vectors[(size_t) s * nreduced + f];

  double t0 = MPI_Wtime();
  comm_mode = COMM_REDUCED;
  comm->forward_comm(this);
  comm_mode = COMM_DISP;
  timer.comm += MPI_Wtime() - t0;

  cloud_vectors.resize((size_t) nsoap * nreduced);
  for (int s = 0; s < nsoap; s++)
    for (int f = 0; f < nreduced; f++)
      cloud_vectors[(size_t) s * nreduced + f] = reduced[cloud.atoms[soap.index[s]]][f];
}

/* ----------------------------------------------------------------------
   the site census of the ice clusters the boundary step left (icephase_lmp.
   pipeline.run_site_census): a cluster's molecules of a phase become other
   crystal where it holds the phase's sites in other proportions than the
   phase's: a crystal without a reference named after a reference whose
   environments it shares. Each rank counts its centres per (cluster, site)
   and the rows go to all ranks, where they add up per cluster: every rank
   reaches the same verdict.
------------------------------------------------------------------------- */

void ComputeIcephase::census_sites()
{
  soap.clusters_found = false;
  if (census_phases.empty()) return;    // a model file without a site table
  const int nlocal = soap.nlocal;
  std::vector<int> sites(nlocal, -1);
  std::string err;
  if (nlocal > 0 &&
      !IcephasePython::site_types(model_path, soap.reduced.data(), nlocal, nreduced, soap.first_codes.data(),
                                  sites.data(), err))
    err = "Compute icephase: the site census failed: " + err;
  all_or_error(err);
  // no centre named a phase of several sites: nothing to count
  if (!on_any_rank(std::any_of(sites.begin(), sites.end(), [](int site) { return site >= 0; }))) return;

  // the ice clusters as the boundary step left them (kept for the ring census)
  local_cluster_sizes(&soap.cluster_ids);
  local_labels();    // the cluster search sent its IDs through label[]
  soap.clusters_found = true;
  soap.cluster_codes.assign(soap.codes.begin(), soap.codes.begin() + nlocal);
  make_other_crystal(soap.cluster_ids, foreign_site_groups(soap.cluster_ids, sites));
}

/* ----------------------------------------------------------------------
   the ring census after the other-crystal step (icephase_lmp.pipeline.
   run_ring_census): a cluster's molecules of sI, sII or sH (the phases of
   the ring table) become other crystal where those whose rings see crystal
   labels only sit on rings the phase has not. After the other-crystal step:
   a crystal without a reference is labelled other crystal there, so the
   phase-labelled part of it has crystal around it. Counted like the site
   census: rows from every rank, the same verdict on each.
------------------------------------------------------------------------- */

void ComputeIcephase::census_rings()
{
  if (ring_codes.empty()) return;    // a model file without a ring table
  bool counted = false;
  for (int s = 0; s < soap.nlocal && !counted; s++)
    counted = std::find(ring_codes.begin(), ring_codes.end(), soap.codes[s]) != ring_codes.end();
  if (!on_any_rank(counted)) return;
  // the site census's ice clusters where no code changed since on any rank
  // (in a box without liquid, and in most with it); else a search of its own
  const bool same = soap.clusters_found &&
      std::equal(soap.cluster_codes.begin(), soap.cluster_codes.end(), soap.codes.begin());
  local_labels();
  std::vector<int> ids = soap.cluster_ids;
  if (on_any_rank(!same)) {
    local_cluster_sizes(&ids);
    local_labels();    // the cluster search sent its IDs through label[]
  }
  make_other_crystal(ids, foreign_ring_groups(ids));
}

/* ----------------------------------------------------------------------
   the centres of each (cluster ID, phase code) in groups become other
   crystal (ids: each centre's ice cluster, 0 for none)
------------------------------------------------------------------------- */

void ComputeIcephase::make_other_crystal(const std::vector<int> &ids, const std::set<std::pair<int, int>> &groups)
{
  if (groups.empty()) return;
  for (int s = 0; s < soap.nlocal; s++)
    if (ids[s] > 0 && groups.count({ids[s], soap.codes[s]})) soap.codes[s] = other_code;
  local_labels();
}

/* ----------------------------------------------------------------------
   the site census (site_census): each centre the classifier named has the
   nearest site of its phase (sites); the (cluster, site) counts go to all
   ranks; the (cluster ID, phase code) pairs whose shares are not the phase's
------------------------------------------------------------------------- */

std::set<std::pair<int, int>> ComputeIcephase::foreign_site_groups(const std::vector<int> &ids,
                                                                   const std::vector<int> &sites)
{
  std::map<std::vector<int>, int> mine;
  for (int s = 0; s < soap.nlocal; s++)
    if (ids[s] > 0 && sites[s] >= 0) mine[{ids[s], sites[s]}]++;
  return census_verdicts(mine, 2, IcephasePython::foreign_sites, "site census");
}

/* ----------------------------------------------------------------------
   the ring census (ring_census): the codes go to the ghosts, each centre
   gets its flag from the rings of the denoised cloud (the cloud reaches the
   SOAP reach + 0.5 A beyond the centres, farther than every ring of six
   through a centre's neighbours), the (cluster, phase, foreign) counts go to
   all ranks; the (cluster ID, phase code) pairs on rings not the phase's
------------------------------------------------------------------------- */

std::set<std::pair<int, int>> ComputeIcephase::foreign_ring_groups(const std::vector<int> &ids)
{
  const int nsoap = (int) soap.index.size(), nlocal = soap.nlocal;
  share_labels();
  std::vector<int> flags(nlocal, -1);
  std::string err;
  if (nlocal > 0 &&
      !IcephasePython::ring_flags(model_path, soap.positions, nsoap, nlocal, soap.cloud_codes.data(),
                                  flags.data(), err))
    err = "Compute icephase: the ring census failed: " + err;
  all_or_error(err);
  std::map<std::vector<int>, int> mine;
  for (int s = 0; s < nlocal; s++)
    if (ids[s] > 0 && flags[s] >= 0) mine[{ids[s], soap.codes[s], flags[s]}]++;
  return census_verdicts(mine, 3, IcephasePython::foreign_rings, "ring census");
}

/* ----------------------------------------------------------------------
   a census's verdict: each rank's counts (key: cluster ID first, then the
   census's columns, key_width in all; value: molecules) go to all ranks as
   rows (key..., molecules), Python answers every row with the row's phase code where its
   cluster holds that phase wrongly named (else 0), the same on every rank;
   returns those (cluster ID, phase code) pairs
------------------------------------------------------------------------- */

std::set<std::pair<int, int>> ComputeIcephase::census_verdicts(const std::map<std::vector<int>, int> &counts,
                                                               int key_width, CensusVerdict verdict,
                                                               const std::string &census)
{
  std::vector<int> flat;
  for (const auto &item : counts) {
    flat.insert(flat.end(), item.first.begin(), item.first.end());
    flat.push_back(item.second);
  }
  const std::vector<int> rows = gathered_from_all_ranks(flat, MPI_INT);
  const int width = key_width + 1;
  const int m = (int) rows.size() / width;
  std::vector<int> verdicts(m, 0);
  std::string err;
  if (m > 0 && !verdict(model_path, rows.data(), m, verdicts.data(), err))
    err = "Compute icephase: the " + census + " failed: " + err;
  all_or_error(err);
  std::set<std::pair<int, int>> foreign;
  for (int k = 0; k < m; k++)
    if (verdicts[k] > LIQUID) foreign.insert({rows[(size_t) width * k], verdicts[k]});
  return foreign;
}

/* ----------------------------------------------------------------------
   "other crystal" (icephase_lmp.other_crystal): every analysed atom's
   reduced SOAP vector goes to its ghost copies (forward communication;
   NaN where none was computed, which never counts as a repeat), then the
   Python side labels each liquid-labelled local centre with at least three
   neighbours within 8 A of the same environment. The cloud reaches the
   SOAP reach (~9 A) beyond the centres, which covers the 8 A. Then the
   settle pass (icephase_lmp.other_crystal.settle_shells), in two parts, the
   codes sent to the ghosts before each: where some atoms carry a phase and
   some other crystal, a phase-labelled centre whose crystal-labelled atoms
   within 8 A are mostly other crystal joins it; then, where any atom is
   crystal-labelled and any liquid, a liquid-labelled centre whose first
   shell is mostly other crystal joins it, and a crystal-labelled centre
   isolated in liquid (alone, or with one crystal-labelled neighbour that is
   itself isolated but for it) becomes liquid. Every centre of a part
   decides on the same codes, so ranks do not matter.
------------------------------------------------------------------------- */

void ComputeIcephase::find_other_crystal()
{
  // only liquid-labelled centres can change in the repeat test: with none on
  // any rank, skip its communication and Python calls (an all-ice box)
  if (on_any_rank(has_liquid_centre())) repeat_test();
  settle_other_crystal();
}

void ComputeIcephase::repeat_test()
{
  const int nsoap = (int) soap.index.size(), nlocal = soap.nlocal;
  share_vectors(soap.reduced, soap.cloud_reduced);

  // where the denoiser ran beyond repeat_iterations, the repeat test looks at
  // the positions after them too, for the liquid-labelled centres with a
  // neighbour of nearly the same environment but too few repeats at the first
  // look (their owners decide: the neighbourhood is theirs; the flags go to the
  // ghosts), compared with their near twins: the reduced vectors there of those
  // centres and twins (NaN for the others) go to the ghosts like the first ones.
  // Where no centre misses on any rank, there is no second look
  std::string err;
  const double *early_positions = nullptr, *early_vectors = nullptr;
  if (cloud.has_repeat_x) {
    soap.misses.assign(nlocal, 0);
    if (nlocal > 0 &&
        !IcephasePython::first_look_misses(model_path, soap.positions, nsoap, nlocal, soap.codes.data(),
                                           soap.cloud_reduced.data(), nreduced, metric, threshold,
                                           soap.misses.data(), err))
      err = "Compute icephase: the other-crystal step failed: " + err;
    all_or_error(err);
    bool miss = false;
    for (int s = 0; s < nlocal; s++) miss = miss || soap.misses[s] != 0;
    if (on_any_rank(miss)) {
      share_flags(soap.misses, soap.cloud_misses);
      gather_positions(cloud.repeat_x, soap.index, nsoap, soap.repeat_x);
      soap.repeat_reduced.assign((size_t) nlocal * nreduced, 0.0);
      if (nlocal > 0 &&
          !IcephasePython::repeat_vectors(model_path, soap.positions, nsoap, nlocal, soap.codes.data(),
                                          soap.cloud_reduced.data(), nreduced, metric, threshold,
                                          soap.repeat_x.data(), soap.cloud_misses.data(),
                                          soap.repeat_reduced.data(), err))
        err = "Compute icephase: the other-crystal step failed: " + err;
      all_or_error(err);
      share_vectors(soap.repeat_reduced, soap.cloud_repeat_reduced);
      early_positions = soap.repeat_x.data();
      early_vectors = soap.cloud_repeat_reduced.data();
    }
  }

  soap.grown.resize(nlocal);
  if (nlocal > 0 &&
      !IcephasePython::other_crystal(model_path, soap.positions, nsoap, nlocal, soap.codes.data(),
                                     soap.cloud_reduced.data(), nreduced, metric, threshold,
                                     early_positions, early_vectors, soap.grown.data(), err))
    err = "Compute icephase: the other-crystal step failed: " + err;
  check_grown_codes(err, "the other-crystal step", true);
  all_or_error(err);
  for (int s = 0; s < nlocal; s++) soap.codes[s] = soap.grown[s];
}

void ComputeIcephase::settle_other_crystal()
{
  const int nlocal = soap.nlocal;
  bool phase = false, other = false;
  for (int s = 0; s < nlocal; s++) {
    phase = phase || soap.codes[s] > LIQUID;
    other = other || soap.codes[s] == other_code;
  }

  // phase labels inside other crystal join it: that needs both; then
  // liquid-labelled centres enclosed by other crystal join it and crystal labels
  // isolated in liquid (one or two) become liquid: both need a crystal-labelled
  // and a liquid-labelled atom somewhere. Else nothing can change. The second
  // part reads the first's codes (a liquid-labelled centre enclosed by a
  // crystal whose phase labels the first part turned into other crystal)
  const bool crystal = on_any_rank(phase || other);
  const bool liquid_and_crystal = crystal && on_any_rank(has_liquid_centre());
  const bool phase_and_other = crystal && on_any_rank(phase) && on_any_rank(other);
  if (phase_and_other) settle_part(IcephasePython::join_inside);
  if (liquid_and_crystal) settle_part(IcephasePython::settle);
}

/* ----------------------------------------------------------------------
   one part of the settle pass (IcephasePython::join_inside or ::settle):
   the codes go to the ghosts, Python gives the centres' new codes
------------------------------------------------------------------------- */

void ComputeIcephase::settle_part(SettleStep step)
{
  const int nsoap = (int) soap.index.size(), nlocal = soap.nlocal;
  local_labels();
  share_labels();
  std::string err;
  soap.grown.resize(nlocal);
  if (nlocal > 0 &&
      !step(model_path, soap.positions, nsoap, nlocal, soap.cloud_codes.data(), soap.grown.data(), err))
    err = "Compute icephase: the other-crystal step failed: " + err;
  check_grown_codes(err, "the other-crystal step", true);
  all_or_error(err);
  for (int s = 0; s < nlocal; s++) soap.codes[s] = soap.grown[s];
}

/* ----------------------------------------------------------------------
   err names the first code in soap.grown (the local atoms' new codes) that
   the Python step `step` cannot return: liquid or a phase of the model, and
   other crystal where other_allowed (unless err is already set)
------------------------------------------------------------------------- */

void ComputeIcephase::check_grown_codes(std::string &err, const char *step, bool other_allowed) const
{
  for (int s = 0; s < soap.nlocal && err.empty(); s++) {
    const int code = soap.grown[s];
    if (!(other_allowed && code == other_code) && (code < LIQUID || code > max_code))
      err = fmt::format("Compute icephase: {} returned phase code {}", step, code);
  }
}

/* ----------------------------------------------------------------------
   the global vector's entry of a phase code: liquid and the model's
   phases by code, other crystal last
------------------------------------------------------------------------- */

int ComputeIcephase::count_slot(int code) const
{
  return code == other_code ? max_code + 1 : code;
}

/* ----------------------------------------------------------------------
   per-atom output and phase counts: not analysed -1; diverged oxygens the
   lone oxygen's class; too close to another oxygen: liquid, with the
   marker distance, not moved. Returns the number of diverged oxygens on
   all ranks.
------------------------------------------------------------------------- */

double ComputeIcephase::store_results()
{
  std::vector<double> mine(size_vector + 1, 0.0), all(size_vector + 1, 0.0);
  for (int i = 0; i < atom->nlocal; i++) {
    array_atom[i][0] = -1.0;
    for (int c = 1; c < NCOLS; c++) array_atom[i][c] = 0.0;
  }
  for (int k = 0; k < cloud.nlocal; k++) {
    const int i = cloud.atoms[k];
    array_atom[i][0] = lone_code;    // diverged; the others are set below
    array_atom[i][1] = lone_distance;
    array_atom[i][2] = disp[i][0];
    array_atom[i][3] = disp[i][1];
    array_atom[i][4] = disp[i][2];
  }
  for (int s = 0; s < soap.nlocal; s++) {
    const int i = cloud.atoms[soap.index[s]];
    array_atom[i][0] = soap.codes[s];
    array_atom[i][1] = soap.distances[s];
    mine[count_slot(soap.codes[s])] += 1.0;
  }
  if (soap.ndiverged > 0) mine[count_slot(lone_code)] += (double) soap.ndiverged;
  for (int i : too_close.excluded) {
    array_atom[i][0] = 0.0;
    array_atom[i][1] = too_close_distance;
    mine[0] += 1.0;
  }
  mine[size_vector] = (double) soap.ndiverged;
  const double t0 = MPI_Wtime();
  MPI_Allreduce(mine.data(), all.data(), size_vector + 1, MPI_DOUBLE, MPI_SUM, world);
  timer.comm += MPI_Wtime() - t0;
  for (int c = 0; c < size_vector; c++) counts[c] = all[c];
  return all[size_vector];
}

/* ----------------------------------------------------------------------
   the first invocation with diverged oxygens, and the first with oxygens
   too close to another one, warn (rank 0)
------------------------------------------------------------------------- */

void ComputeIcephase::warn_once(double ndiverged_all)
{
  if (ndiverged_all > 0.0 && !diverged_warned) {
    diverged_warned = true;
    double maxdisp_all = 0.0;
    tagint first_all = MAXTAGINT;
    MPI_Allreduce(&soap.maxdisp, &maxdisp_all, 1, MPI_DOUBLE, MPI_MAX, world);
    MPI_Allreduce(&soap.first_diverged, &first_all, 1, MPI_LMP_TAGINT, MPI_MIN, world);
    if (comm->me == 0)
      error->warning(FLERR,
                     "Compute icephase {} step {}: the denoiser moved {:.0f} oxygens farther than "
                     "the ghost cutoff {} A (up to {:.4g} A; first: atom ID {}; overlapping "
                     "atoms?): each is classified as a lone oxygen and is in no other oxygen's "
                     "environment (reported once)",
                     id, update->ntimestep, ndiverged_all, ghost_cutoff, maxdisp_all, first_all);
  }
  if (too_close.count > 0 && !close_warned) {
    close_warned = true;
    if (comm->me == 0)
      error->warning(FLERR,
                     "Compute icephase {} step {}: {} oxygens are closer than {:g} A to another "
                     "one (first: atom ID {}): not water; each is labelled liquid (code 0) with "
                     "distance {:g} and is left out of the other oxygens' denoising and SOAP "
                     "(reported once)",
                     id, update->ntimestep, too_close.count, min_oxygen_distance, too_close.first,
                     too_close_distance);
  }
}

/* ----------------------------------------------------------------------
   timing yes: the split of this invocation, slowest rank for each part
------------------------------------------------------------------------- */

void ComputeIcephase::log_timing()
{
  const double total = MPI_Wtime() - timer.begin;
  const double other =
      total - timer.graph - timer.denoise - timer.classify - timer.boundary - timer.comm;
  double tmine[7] = {timer.graph, timer.denoise, timer.classify, timer.comm,
                     other,       total,         timer.boundary};
  double tmax[7];
  MPI_Allreduce(tmine, tmax, 7, MPI_DOUBLE, MPI_MAX, world);
  double nmine[2] = {(double) cloud.nlocal, (double) (graph.nlocal + graph.nghost)}, nsum[2];
  MPI_Allreduce(nmine, nsum, 2, MPI_DOUBLE, MPI_SUM, world);
  if (comm->me == 0)
    utils::logmesg(lmp,
                   "icephase timing: compute {} step {}: {:.0f} oxygens, {:.0f} graph nodes, "
                   "{} iterations, {} ranks; graph {:.6f} s, denoise {:.6f} s, classify {:.6f} "
                   "s, boundary {:.6f} s, comm {:.6f} s, other {:.6f} s, total {:.6f} s\n",
                   id, update->ntimestep, nsum[0], nsum[1], timer.iterations, comm->nprocs,
                   tmax[0], tmax[1], tmax[2], tmax[6], tmax[3], tmax[4], tmax[5]);
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

/* ----------------------------------------------------------------------
   every forward communication has a slot for each analysed atom only (in
   the group, with an oxygen type; cloud.analysed): hydrogens and other
   atoms carry nothing, as nothing reads their displacement, flag, code or
   features. Type and group travel with every ghost, so the unpack skips
   the same atoms. Displacements are the same for every periodic image: no
   pbc shift.
------------------------------------------------------------------------- */

int ComputeIcephase::pack_forward_comm(int n, int *list, double *buf, int /*pbc_flag*/,
                                       int * /*pbc*/)
{
  int m = 0;
  if (comm_mode == COMM_CLOSE) {
    for (int k = 0; k < n; k++)
      if (is_analysed(list[k])) buf[m++] = close_flag[list[k]];
  } else if (comm_mode == COMM_LABEL) {
    for (int k = 0; k < n; k++)
      if (is_analysed(list[k])) buf[m++] = label[list[k]];
  } else if (comm_mode == COMM_REDUCED) {
    for (int k = 0; k < n; k++)
      if (is_analysed(list[k]))
        for (int f = 0; f < nreduced; f++) buf[m++] = reduced[list[k]][f];
  } else if (comm_mode == COMM_FEATURES) {
    // a flag, and the features where the copy this entry makes is a ghost node on some rank or passes
    // features on to one (mark_needed_features; every entry if the list is unknown). An oxygen left out
    // of the cloud sends zeros no one reads.
    const int width = denoiser->width, stride = doubles_for(width);
    const std::vector<char> *sends = needed_copies(list);
    for (int k = 0; k < n; k++) {
      const int j = list[k];
      if (!is_analysed(j)) continue;
      const bool send = sends == nullptr || (*sends)[k] != 0;
      buf[m++] = send ? 1.0 : 0.0;
      if (!send) continue;
      auto *out = reinterpret_cast<float *>(buf + m);
      std::memset(out, 0, sizeof(double) * stride);
      const int c = graph.cloud_of[j];
      if (c >= 0) std::memcpy(out, &graph.stage[(size_t) c * width], sizeof(float) * width);
      m += stride;
    }
  } else {    // COMM_DISP
    for (int k = 0; k < n; k++) {
      const int j = list[k];
      if (!is_analysed(j)) continue;
      buf[m++] = disp[j][0];
      buf[m++] = disp[j][1];
      buf[m++] = disp[j][2];
    }
  }
  return m;
}

/* ---------------------------------------------------------------------- */

void ComputeIcephase::unpack_forward_comm(int n, int first, double *buf)
{
  int m = 0;
  const int last = first + n;
  if (comm_mode == COMM_CLOSE) {
    for (int i = first; i < last; i++)
      if (is_analysed(i)) close_flag[i] = buf[m++];
  } else if (comm_mode == COMM_LABEL) {
    for (int i = first; i < last; i++)
      if (is_analysed(i)) label[i] = buf[m++];
  } else if (comm_mode == COMM_REDUCED) {
    for (int i = first; i < last; i++)
      if (is_analysed(i))
        for (int f = 0; f < nreduced; f++) reduced[i][f] = buf[m++];
  } else if (comm_mode == COMM_FEATURES) {
    const int width = denoiser->width, stride = doubles_for(width);
    for (int i = first; i < last; i++) {
      if (!is_analysed(i)) continue;
      if (buf[m++] == 0.0) continue;    // no features sent for this one
      const int c = graph.cloud_of[i];
      if (c >= 0)
        std::memcpy(&graph.stage[(size_t) c * width], reinterpret_cast<const float *>(buf + m),
                    sizeof(float) * width);
      m += stride;
    }
  } else {    // COMM_DISP
    for (int i = first; i < last; i++) {
      if (!is_analysed(i)) continue;
      disp[i][0] = buf[m++];
      disp[i][1] = buf[m++];
      disp[i][2] = buf[m++];
    }
  }
}

/* ----------------------------------------------------------------------
   COMM_NEED: every ghost's mark goes back along the swap that brought it.
   The entry of the send list that made the copy remembers whether the copy
   needs features (graph.sends, by send list); the atom it copied adds the
   mark to its own, so that a copy that is itself sent on (a periodic image
   passed to another rank) asks its source in turn. Analysed atoms only.
------------------------------------------------------------------------- */

int ComputeIcephase::pack_reverse_comm(int n, int first, double *buf)
{
  int m = 0;
  for (int i = first; i < first + n; i++)
    if (is_analysed(i)) buf[m++] = graph.need[i];
  return m;
}

/* ---------------------------------------------------------------------- */

void ComputeIcephase::unpack_reverse_comm(int n, int *list, double *buf)
{
  graph.sends.emplace_back(list, std::vector<char>(n, 0));
  std::vector<char> &sends = graph.sends.back().second;
  int m = 0;
  for (int k = 0; k < n; k++) {
    const int j = list[k];
    if (!is_analysed(j)) continue;
    const double mark = buf[m++];
    graph.need[j] += mark;
    sends[k] = mark > 0.0 ? 1 : 0;
  }
}

/* ----------------------------------------------------------------------
   which entries of a send list carry node features (COMM_NEED), or null
   for a list the last COMM_NEED did not see (then every entry does)
------------------------------------------------------------------------- */

const std::vector<char> *ComputeIcephase::needed_copies(const int *list) const
{
  for (const auto &entry : graph.sends)
    if (entry.first == list) return &entry.second;
  return nullptr;
}

/* ---------------------------------------------------------------------- */

double ComputeIcephase::memory_usage()
{
  // disp, close_flag, label, array_atom, reduced
  double bytes = (double) nmax * (5 + NCOLS + nreduced) * sizeof(double);
  for (const auto *v : {&cloud.atoms, &cloud.owner, &too_close.excluded, &graph.neighbour,
                        &graph.first_neighbour, &graph.hop, &graph.queue, &graph.nodes,
                        &graph.index, &soap.index, &soap.codes, &soap.cloud_codes,
                        &soap.grown})
    bytes += (double) v->capacity() * sizeof(int);
  for (const auto *v : {&cloud.image, &cloud.x, &soap.x, &soap.centres_x, &soap.distances,
                        &soap.reduced, &soap.cloud_reduced, &cloud.repeat_x, &soap.repeat_x,
                        &soap.repeat_reduced, &soap.cloud_repeat_reduced, &config_box, &config_atoms})
    bytes += (double) v->capacity() * sizeof(double);
  bytes += (double) (graph.x32.capacity() + graph.shift32.capacity()) * sizeof(float);
  bytes += (double) graph.edges.capacity() * sizeof(int64_t);
  bytes += (double) graph.cloud_of.capacity() * sizeof(int) + graph.stage.capacity() * sizeof(float) +
      graph.need.capacity() * sizeof(double);
  bytes += (double) cloud.analysed.capacity();
  for (const auto &entry : graph.sends) bytes += (double) entry.second.capacity();
  bytes += too_close.bins.memory_usage() + graph.bins.memory_usage() + soap.bins.memory_usage();
  return bytes;
}
