/* -*- c++ -*- ----------------------------------------------------------
   icephase: LAMMPS compute style "icephase" (plugin)
   SPDX-License-Identifier: GPL-2.0-or-later

   The embedded-Python side of the compute: the SOAP classifier and the
   model-file validation live in the Python package icephase_lmp
   (module icephase_lmp.lammps_bridge). This header is free of Python and
   pybind11 types so that the LAMMPS and libtorch translation units do not
   need the Python headers.

   Every function returns true on success; on failure it returns false and
   puts a human-readable message (the Python exception type and text) into
   *err*. None of them throws. None of them talks to MPI: the caller makes
   failures collective.
------------------------------------------------------------------------- */

#ifndef ICEPHASE_PYTHON_H
#define ICEPHASE_PYTHON_H

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace IcephasePython {

// One array of a model file's compact-denoiser constants: its shape and values (float32, row-major).
struct Array {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// Start the embedded interpreter unless one is running already (LAMMPS may
// be driven from Python). Which Python: $ICEPHASE_PYTHON if set, else the
// interpreter the plugin was built against. Safe to call repeatedly.
bool start(std::string &err);

// Py_InitializeFromConfig() with the chosen executable; used by start().
bool initialize(std::string &err);

// The interpreter in use (sys.executable), for the log.
std::string executable();

// Validated metadata of a model file, as JSON text.
bool model_metadata_json(const std::string &model_path, std::string &json, std::string &err);

// How far (Angstrom) an atom still changes a centre's SOAP vector for this model's classifier
// (icephase_lmp.classifier.SoapSettings.reach: r_cut plus DScribe's padding).
bool soap_reach(const std::string &model_path, double &reach, std::string &err);

// The compact denoiser's constants stored in the model file, by name (compact_denoiser.to_arrays);
// empty for a file without them.
bool compact_constants(const std::string &model_path, std::map<std::string, Array> &arrays,
                       std::string &err);

// Classify the first nlocal of n atoms (positions: n x 3, row-major,
// Angstrom; an open cloud, no box). codes and distances receive nlocal values,
// reduced nlocal x nreduced (the classifier's reduced SOAP vectors).
// denoised: the positions come from the denoiser (compare with every reference
// environment) or are raw (iterations 0: compare with the ideal ones only).
bool classify(const std::string &model_path, const double *positions, int n, int nlocal,
              const std::string &metric, double threshold, bool denoised, int *codes,
              double *distances, double *reduced, int nreduced, std::string &err);

// One round of the boundary step for the first nlocal of n atoms: cloud_codes
// holds the current code of all n atoms; grown receives the nlocal new codes.
bool grow(const std::string &model_path, const double *positions, int n, int nlocal,
          const int *cloud_codes, int *grown, std::string &err);

// The boundary step's support check for the first nlocal of n atoms: cloud_codes
// holds every atom's code after the rounds, before the nlocal codes before them,
// cluster_sizes (nullptr, or step 5's: nlocal sizes of the atoms' ice clusters after
// the rounds, for the share a convex surface has); out receives the nlocal new codes
// (grown ice without support back to liquid).
bool support(const std::string &model_path, const double *positions, int n, int nlocal,
             const int *cloud_codes, const int *before, const int *cluster_sizes, int *out,
             std::string &err);

// One pass of the boundary step's cluster search for the first nlocal of n atoms:
// cloud_ids holds every atom's cluster ID (0: not ice); out receives the nlocal
// smallest IDs of the ice atoms bonded to each through the cloud.
bool cluster_ids(const std::string &model_path, const double *positions, int n, int nlocal,
                 const int *cloud_ids, int *out, std::string &err);

// The phase vote for the first nlocal of n atoms: cloud_codes holds the
// classifier's code of all n atoms; voted receives the nlocal new codes.
bool vote(const std::string &model_path, const double *positions, int n, int nlocal,
          const int *cloud_codes, int *voted, std::string &err);

// The last pass of the "other crystal" step for the first nlocal of n atoms, in two
// parts. join_inside: cloud_codes holds every atom's code after other_crystal(); out
// receives the nlocal new codes (phase-labelled centres inside other crystal join it).
bool join_inside(const std::string &model_path, const double *positions, int n, int nlocal,
                 const int *cloud_codes, int *out, std::string &err);

// settle: cloud_codes holds every atom's code after join_inside; out receives the
// nlocal new codes (liquid-labelled centres enclosed by other crystal join it;
// crystal-labelled centres isolated in liquid, alone or as a pair, become liquid).
bool settle(const std::string &model_path, const double *positions, int n, int nlocal,
            const int *cloud_codes, int *out, std::string &err);

// 1 (into out, nlocal) for the local atoms the "other crystal" step looks at a second time
// (liquid-labelled after the boundary step, codes (nlocal); a near twin but fewer than three
// repeats among reduced (n x nreduced, every atom's vector at positions)), else 0.
bool first_look_misses(const std::string &model_path, const double *positions, int n, int nlocal,
                       const int *codes, const double *reduced, int nreduced, const std::string &metric,
                       double threshold, int *out, std::string &err);

// The reduced SOAP vectors (nlocal x nreduced, into early_reduced) at early_positions (n x 3,
// after the repeat test's iterations) of the local atoms the "other crystal" step reads at its
// second look: those that miss (misses, n: every atom's first_look_misses flag, ghosts' from
// their owners) and their near twins; NaN rows for the others.
bool repeat_vectors(const std::string &model_path, const double *positions, int n, int nlocal,
                    const int *codes, const double *reduced, int nreduced, const std::string &metric,
                    double threshold, const double *early_positions, const int *misses,
                    double *early_reduced, std::string &err);

// The "other crystal" step for the first nlocal of n atoms: codes (nlocal) after
// the boundary step, reduced (n x nreduced) every atom's reduced SOAP vector
// (NaN where unknown); early_positions (n x 3) and early_reduced (n x nreduced):
// the same after repeat_test_iterations, or both null; out receives the nlocal
// new codes.
bool other_crystal(const std::string &model_path, const double *positions, int n, int nlocal,
                   const int *codes, const double *reduced, int nreduced, const std::string &metric,
                   double threshold, const double *early_positions, const double *early_reduced,
                   int *out, std::string &err);

// The site census (site_census.site_types): into sites (nlocal) the nearest site of the
// phase the classifier gave each local atom (codes, before the vote), from its reduced SOAP
// vector (reduced, nlocal x nreduced); -1 where the census counts none.
bool site_types(const std::string &model_path, const double *reduced, int nlocal, int nreduced,
                const int *codes, int *sites, std::string &err);

// The site census's verdict (site_census.foreign_rows) on m rows (cluster ID, site, molecules)
// gathered from every rank: into out (m) the phase code of the row's site where its cluster
// holds that phase in other proportions than the phase's, else 0.
bool foreign_sites(const std::string &model_path, const int *rows, int m, int *out, std::string &err);

// The ring census (ring_census.ring_flags) for the first nlocal of n atoms of the denoised
// cloud: cloud_codes every atom's code after the boundary step; into flags (nlocal) 1 where a
// molecule of a counted phase, its rings seeing crystal only, has rings its phase has not, 0
// where it has its phase's, -1 where it is not counted.
bool ring_flags(const std::string &model_path, const double *positions, int n, int nlocal,
                const int *cloud_codes, int *flags, std::string &err);

// The ring census's verdict (ring_census.foreign_ring_rows) on m rows (cluster ID, phase code,
// foreign 0/1, molecules) gathered from every rank: into out (m) the row's phase code where its
// cluster holds that phase on rings the phase has not, else 0.
bool foreign_rings(const std::string &model_path, const int *rows, int m, int *out, std::string &err);

}    // namespace IcephasePython

#endif
