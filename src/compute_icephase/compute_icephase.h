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
#include "icephase_bins.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace at {
class Tensor;    // libtorch's tensor (torch::Tensor), declared only: see struct Denoiser
}

namespace LAMMPS_NS {

class ComputeIcephase : public Compute {
 public:
  ComputeIcephase(class LAMMPS *, int, char **);
  ~ComputeIcephase() override;
  void init() override;
  void setup() override;
  void compute_peratom() override;
  void compute_vector() override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;
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
  double soap_reach;    // classifier reach (A); 0: unknown, every ghost goes to SOAP
  std::string soap_reach_note;
  bool malloc_tuned;    // glibc malloc set to keep freed memory
  bool lone_known;    // the classification of a lone oxygen (for diverged ones)
  int lone_code;
  double lone_distance;
  bool diverged_warned;

  // from icephase_lmp (phases.py, denoise.py), through the metadata JSON of the bridge: the same
  // limits as the offline pipeline
  double min_oxygen_distance;    // oxygens closer than this (A) to another one are not water
  double too_close_distance;     // the distance column of those oxygens (a negative marker)
  double max_step;               // longest denoising step of one atom per iteration (A)
  double runaway_step;           // a longer predicted step (or NaN/Inf) stops the run (A)
  int max_neighbours;            // most denoiser neighbours per oxygen before the run stops
  bool close_warned;

  // the configuration of the last results (to reuse them on the same step)
  bool config_valid;
  bigint config_step;
  std::vector<double> config_box, config_atoms;
  int iterations;
  double tolerance;
  int nthreads;
  bool timing;                    // timing yes: log the cost of every invocation
  int boundary_rounds;            // boundary step: rounds of growth of the ice (0: off)
  bool other_crystal;             // other yes: liquid-labelled oxygens that repeat their environment
  bool phase_vote;                // vote yes: the model's phase vote (where it has one)
  std::vector<int> user_types;    // from the types keyword (empty: automatic)

  // from the model's metadata
  double r_max;              // denoiser cutoff (A)
  double ghost_cutoff;       // ghost region needed (A)
  double receptive_field;    // num_layers * r_max (A)
  int num_layers;            // message-passing layers of the denoiser (0: unknown, no pruning)
  int max_code;              // phase codes run 0..max_code
  static constexpr int LIQUID = 0;    // the liquid's code (init checks the phase table)
  int other_code;            // the "other crystal" code (negative; icephase_lmp.phases.OTHER_CRYSTAL)
  int nreduced;              // length of the classifier's reduced SOAP vector (forward communication)
  std::vector<std::string> census_phases;    // the phases the site census counts (none: no census)
  std::vector<std::string> ring_phases;      // the phases the ring census counts (none: no ring census)
  std::vector<int> ring_codes;               // and their codes
  int repeat_iterations;     // iterations before the positions the other-crystal repeat test reads
  std::vector<std::string> phase_names;    // index = code + 1 (code -1 = not analysed)
  std::string default_metric;
  int default_iterations;
  double default_tolerance;
  std::map<std::string, double> default_thresholds;    // "denoised/euclidean" -> value
  int default_boundary_rounds;
  double boundary_shell;    // first-shell radius of the boundary step (A), for the log
  double support_radius;    // the boundary step's support check (A; 0: off), from the model
  double min_support;       // ... and the share of ice it needs there, for the log
  int small_cluster_rounds;    // more rounds for ice clusters of fewer than small_cluster_size
  int small_cluster_size;      // molecules (boundary.BoundarySettings; 0 rounds: off) ...
  double small_cluster_share;  // ... or this share of the analysed oxygens where that is fewer
  bool convex_support;         // their support check with the share a convex surface has
  bool hold_spanning;          // clusters that reach across the box are faces, whatever their size
  double phase_vote_radius;    // the phase vote's radius (A); 0: the model has none

  std::unique_ptr<Denoiser> denoiser;
  std::string device_name;

  // state
  std::vector<int> is_oxygen;    // per atom type 1..ntypes
  std::string types_logged;      // what init() last logged, to log only changes
  bool logged;
  bool graph_logged;    // the graph size line of the first invocation
  int nmax;
  double **disp;     // per atom (local + ghost): denoised minus original position
  double *label;        // per atom (local + ghost): phase code during the boundary step
  double *close_flag;    // per atom (local + ghost): 1 if too close to another oxygen
  double **reduced;      // per atom (local + ghost): reduced SOAP vector (NaN where none)
  int comm_mode;         // what forward communication carries: COMM_DISP, COMM_CLOSE or COMM_LABEL
  double *counts;    // global vector

  // ---- work buffers of one invocation, by the step that fills them ----

  // collect_cloud, exclude_close, find_owners: every analysed oxygen this rank sees (its local
  // ones first, then its ghosts). The denoiser graph is a subset of it: the local oxygens, and
  // the ghosts whose owner is on another rank. A ghost whose owner is local to this rank is no
  // node: edges to it point at its owner, with the periodic image offset as the edge shift.
  struct Cloud {
    std::vector<int> atoms;      // atom indices of analysed locals, then ghosts
    int nlocal = 0;              // the local ones: atoms[0 .. nlocal)
    std::vector<char> analysed;  // per atom (local + ghost): in the group, with an oxygen type
    std::vector<int> owner;      // per cloud atom: cloud index of the node standing for it
    std::vector<double> image;   // per cloud atom [3]: x - x(owner), 0 for nodes (A)
    std::vector<double> x;       // per cloud atom [3]: current (denoised) position
    std::vector<double> repeat_x;    // per cloud atom [3]: after repeat_iterations (other crystal)
    bool has_repeat_x = false;       // repeat_x was taken this invocation (more iterations followed)
    double lo[3] = {0.0, 0.0, 0.0};    // extent of the cloud before denoising (the graph's bins)
    double hi[3] = {0.0, 0.0, 0.0};
    int nremote = 0;    // ghost oxygens of this rank whose owner is on another rank
    int nfolded = 0;    // ghost oxygens of this rank whose owner is local
  } cloud;

  // exclude_close: oxygens too close to another one
  struct TooClose {
    IcephaseBins bins;
    std::vector<int> excluded;    // local atoms left out as too close to another oxygen
    bigint count = 0;             // on all ranks
    tagint first = 0;             // smallest atom ID among them (all ranks)
  } too_close;

  // build_graph: the denoiser graph at the current cloud positions
  struct Graph {
    IcephaseBins bins;
    std::vector<int> neighbour, first_neighbour;    // candidate edges (cloud indices)
    std::vector<int> hop;      // per cloud atom: graph distance from the local oxygens
    std::vector<int> queue;    // of the breadth-first search that measures hop
    std::vector<int> nodes;    // graph node -> cloud index (local oxygens first)
    std::vector<int> index;    // cloud index -> graph node, -1 if none
    std::vector<float> x32;             // [N][3]
    std::vector<int64_t> edges;         // [2][E]: centres then neighbours (graph nodes)
    std::vector<float> shift32;         // [E][3]
    int nlocal = 0, nghost = 0;    // statistics of the last build (this rank)
    bigint nedges = 0;
    // denoising layer by layer: atom index -> cloud index (-1: none), and each cloud atom's node
    // features [width] as its owner last computed them (the forward communication's source and target)
    std::vector<int> cloud_of;
    std::vector<float> stage;
    std::vector<double> need;    // per atom: > 0 where it or a copy sent on is a ghost node somewhere
    // per send list of the last COMM_NEED (LAMMPS's list, not owned): which entries' copies need features
    std::vector<std::pair<const int *, std::vector<char>>> sends;
  } graph;

  // select_soap_input, classify, extend_ice: the classifier's input and output
  struct Soap {
    std::vector<int> index;    // cloud atoms passed to the classifier (locals first)
    int nlocal = 0;            // the centres: index[0 .. nlocal)
    std::vector<double> x;                // positions of the classifier's atoms [3]
    std::vector<double> centres_x;        // positions of the centres [3] (environment search)
    IcephaseBins bins;                    // over the centres (environment search)
    const double *positions = nullptr;    // cloud.x, or x when index leaves atoms out
    bigint ndiverged = 0;                 // local oxygens moved beyond the ghost cutoff
    double maxdisp = 0.0;                 // their largest displacement (A)
    tagint first_diverged = 0;            // their smallest atom ID
    std::vector<int> codes;               // per centre
    std::vector<int> first_codes;         // per centre: the classifier's code, before the vote (site census)
    std::vector<double> distances;        // per centre
    std::vector<int> cloud_codes;  // per classifier atom: code in the current boundary round
    std::vector<int> grown;        // per centre: code after the current boundary round
    std::vector<double> reduced;   // per centre [nreduced]: reduced SOAP vector
    std::vector<double> cloud_reduced;    // per classifier atom [nreduced] (other crystal step)
    std::vector<int> misses;              // per centre: 1 where the repeat test looks a second time
    std::vector<int> cloud_misses;        // per classifier atom: the same, shared
    std::vector<double> repeat_x;         // positions of the classifier's atoms [3] after repeat_iterations
    std::vector<double> repeat_reduced;         // per centre [nreduced]: reduced vector there (or NaN)
    std::vector<double> cloud_repeat_reduced;   // per classifier atom [nreduced]: the same, shared
    bool clusters_found = false;          // whether the site census searched the ice clusters, then:
    std::vector<int> cluster_ids;         // per centre: their IDs
    std::vector<int> cluster_codes;       // per centre: the codes they were searched on
  } soap;

  // timing yes: the split of one invocation (s)
  struct Timing {
    double begin = 0.0, graph = 0.0, denoise = 0.0, classify = 0.0, boundary = 0.0, comm = 0.0;
    double layer_comm = 0.0;    // of the current iteration: the node features' forward communications
    int iterations = 0;    // denoising iterations done
  } timer;

  // constructor steps
  void parse_keywords(int narg, char **arg, bool &threshold_set);
  int parse_types(int iarg, int narg, char **arg);
  void check_units();
  void read_metadata();
  void parse_metadata(const std::string &json);
  void complete_settings(bool threshold_set);
  void tune_malloc();
  void load_denoiser();
  void probe_layers();
  void load_compiled_layers();

  // init steps
  void resolve_types();
  void check_ghost_cutoff();
  void log_settings();

  // compute_peratom steps, in order
  void collect_cloud();
  bigint count_nonfinite(tagint &first);
  void exclude_close();
  void find_owners();
  void denoise();
  bool build_graph(bool prune, int depth, std::string &err);
  bool find_candidate_edges(bool locals_only, std::string &err);
  void measure_hops(bool bfs, int depth);
  void assemble_graph(bool bfs, int depth);
  void denoise_step(double &maxstep, std::string &err);
  void run_denoiser(const std::function<void()> &work, std::string &err);
  void denoise_by_layers(double &maxstep, std::string &err);
  void mark_needed_features();
  void graph_tensors(at::Tensor &pos, at::Tensor &edge_index, at::Tensor &shift);
  bool pair_edges(const at::Tensor &edge_index, const at::Tensor &shift, at::Tensor &pairs,
                  at::Tensor &pair_shift) const;
  bool apply_steps(const at::Tensor &eps, double &maxstep, std::string &err);
  void fold_ghosts(bool any_remote);
  void select_soap_input();
  void select_environment();
  void classify();
  void local_labels();
  void forward_labels(std::vector<int> &cloud_values);
  void share_labels();
  void share_flags(const std::vector<int> &local_flags, std::vector<int> &cloud_flags);
  void vote_phases();
  void extend_ice();
  bool grow_rounds(int rounds);
  void support_check(const std::vector<int> &before, const std::vector<int> &held_codes,
                     const std::vector<int> &cluster_sizes);
  void grow_small_clusters();
  std::vector<bigint> local_cluster_sizes(std::vector<int> *cluster_ids = nullptr);
  std::set<int> spanning_cluster_ids(const std::vector<int> &ids, const std::vector<bool> &members);
  template <typename T>
  std::vector<T> gathered_from_all_ranks(const std::vector<T> &mine, MPI_Datatype type);
  void census_sites();
  void census_rings();
  void make_other_crystal(const std::vector<int> &ids, const std::set<std::pair<int, int>> &groups);
  std::set<std::pair<int, int>> foreign_site_groups(const std::vector<int> &ids, const std::vector<int> &sites);
  std::set<std::pair<int, int>> foreign_ring_groups(const std::vector<int> &ids);
  // a census's verdict in Python (IcephasePython::foreign_sites, foreign_rings)
  using CensusVerdict = bool (*)(const std::string &, const int *, int, int *, std::string &);
  std::set<std::pair<int, int>> census_verdicts(const std::map<std::vector<int>, int> &counts, int key_width,
                                                CensusVerdict verdict, const std::string &census);
  void find_other_crystal();
  void repeat_test();
  void settle_other_crystal();
  // a part of the settle pass in Python (IcephasePython::join_inside, settle)
  using SettleStep = bool (*)(const std::string &, const double *, int, int, const int *, int *, std::string &);
  void settle_part(SettleStep step);
  void share_vectors(const std::vector<double> &local_vectors, std::vector<double> &cloud_vectors);
  void check_grown_codes(std::string &err, const char *step, bool other_allowed) const;
  int count_slot(int code) const;
  double store_results();
  void warn_once(double ndiverged_all);
  void remember_configuration();
  void log_timing();

  // helpers
  void load_raw_positions();
  void fill_positions();
  void log_graph();
  bool same_configuration();
  void all_or_error(const std::string &local_error);
  bool on_any_rank(bool mine);
  bool has_liquid_centre() const;
  void grow_arrays();
  bool is_analysed(int i) const { return cloud.analysed[i] != 0; }
  const std::vector<char> *needed_copies(const int *list) const;
};

}    // namespace LAMMPS_NS

#endif
#endif
