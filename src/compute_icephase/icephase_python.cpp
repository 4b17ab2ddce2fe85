/* ----------------------------------------------------------------------
   icephase: LAMMPS compute style "icephase" (plugin)
   SPDX-License-Identifier: GPL-2.0-or-later

   Embedded Python interpreter (pybind11) used by compute icephase.
------------------------------------------------------------------------- */

#include "icephase_python.h"

#include <pybind11/embed.h>
#include <pybind11/numpy.h>

#include <cstdlib>
#include <cstring>

namespace py = pybind11;

#ifndef ICEPHASE_DEFAULT_PYTHON
#define ICEPHASE_DEFAULT_PYTHON ""
#endif

namespace {

constexpr const char *BRIDGE_MODULE = "icephase_lmp.lammps_bridge";

// "TypeName: message" of the pending Python exception (no traceback: the
// messages of icephase_lmp's own exceptions already say what to do).
std::string describe(const py::error_already_set &e)
{
  std::string type = "Python error";
  std::string text;
  try {
    type = py::str(e.type().attr("__name__")).cast<std::string>();
    text = py::str(e.value()).cast<std::string>();
  } catch (...) {
    text = e.what();
  }
  return text.empty() ? type : type + ": " + text;
}

std::string chosen_python()
{
  const char *env = std::getenv("ICEPHASE_PYTHON");
  if (env && *env) return env;
  return ICEPHASE_DEFAULT_PYTHON;
}

py::module_ bridge()
{
  return py::module_::import(BRIDGE_MODULE);
}

// body() (which returns true on success) run with the GIL held; a Python
// or C++ exception becomes the message err and the result false
template <typename Body> bool call_python(std::string &err, Body &&body)
{
  py::gil_scoped_acquire gil;
  try {
    return body();
  } catch (py::error_already_set &e) {
    err = describe(e);
  } catch (std::exception &e) {
    err = e.what();
  }
  return false;
}

}    // namespace

bool IcephasePython::start(std::string &err)
{
  if (!Py_IsInitialized() && !initialize(err)) return false;

  // import the bridge now, so that a broken environment shows up at
  // "compute" time with a clear message rather than at the first dump
  py::gil_scoped_acquire gil;
  try {
    bridge();
  } catch (py::error_already_set &e) {
    err = "the embedded Python (" + executable() + ") cannot import " + BRIDGE_MODULE + " (" +
        describe(e) +
        "); install icephase into that Python or set ICEPHASE_PYTHON to the python of the "
        "environment where it is installed";
    return false;
  }
  return true;
}

bool IcephasePython::initialize(std::string &err)
{
  const std::string exe = chosen_python();
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  // LAMMPS owns SIGINT and the command line
  config.install_signal_handlers = 0;
  config.parse_argv = 0;
  if (!exe.empty()) {
    // tells Python which installation (and virtual environment) to be, so
    // that it finds numpy, dscribe and icephase_lmp in its site-packages
    PyStatus status = PyConfig_SetBytesString(&config, &config.executable, exe.c_str());
    if (PyStatus_Exception(status)) {
      PyConfig_Clear(&config);
      err = std::string("cannot configure the embedded Python: ") +
          (status.err_msg ? status.err_msg : "unknown error");
      return false;
    }
  }
  PyStatus status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) {
    err = "cannot start the embedded Python interpreter " + (exe.empty() ? "" : "(" + exe + ")") +
        ": " + (status.err_msg ? status.err_msg : "unknown error") +
        "; set ICEPHASE_PYTHON to the python of the environment where icephase is installed";
    return false;
  }
  // Hand the GIL back: every call below takes it with gil_scoped_acquire,
  // as it must when LAMMPS is driven from Python through ctypes. The
  // interpreter is never finalized (libraries such as torch and numpy do
  // not support re-initialisation).
  PyEval_SaveThread();
  return true;
}

std::string IcephasePython::executable()
{
  if (!Py_IsInitialized()) return chosen_python();
  py::gil_scoped_acquire gil;
  try {
    return py::module_::import("sys").attr("executable").cast<std::string>();
  } catch (py::error_already_set &) {
    return "unknown";
  }
}

bool IcephasePython::model_metadata_json(const std::string &model_path, std::string &json,
                                         std::string &err)
{
  return call_python(err, [&]() {
    json = bridge().attr("model_metadata_json")(model_path).cast<std::string>();
    return true;
  });
}

bool IcephasePython::soap_reach(const std::string &model_path, double &reach, std::string &err)
{
  return call_python(err, [&]() {
    auto meta = py::module_::import("icephase_lmp.model_file").attr("read_metadata")(model_path);
    auto settings = py::module_::import("icephase_lmp.classifier").attr("SoapSettings");
    reach = settings(**meta["soap"]).attr("reach").cast<double>();
    return true;
  });
}

bool IcephasePython::compact_constants(const std::string &model_path,
                                       std::map<std::string, Array> &arrays, std::string &err)
{
  return call_python(err, [&]() {
    arrays.clear();
    py::dict stored = bridge().attr("compact_constants")(model_path);
    for (auto item : stored) {
      auto values = item.second.cast<py::array_t<float, py::array::c_style | py::array::forcecast>>();
      Array &a = arrays[item.first.cast<std::string>()];
      a.shape.assign(values.shape(), values.shape() + values.ndim());
      a.values.assign(values.data(), values.data() + values.size());
    }
    return true;
  });
}

bool IcephasePython::classify(const std::string &model_path, const double *positions, int n,
                              int nlocal, const std::string &metric, double threshold,
                              bool denoised, int *codes, double *distances, double *reduced,
                              int nreduced, std::string &err)
{
  return call_python(err, [&]() {
    // copy: the caller's buffer is reused for the next invocation
    py::array_t<double> pos({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(3)});
    if (n > 0) std::memcpy(pos.mutable_data(), positions, sizeof(double) * 3 * n);

    py::tuple result = bridge().attr("classify")(model_path, pos, nlocal, metric, threshold, denoised);
    if (result.size() != 3) {
      err = "icephase_lmp.lammps_bridge.classify() did not return (codes, distances, reduced)";
      return false;
    }
    auto c = result[0].cast<py::array_t<int, py::array::c_style | py::array::forcecast>>();
    auto d = result[1].cast<py::array_t<double, py::array::c_style | py::array::forcecast>>();
    auto r = result[2].cast<py::array_t<double, py::array::c_style | py::array::forcecast>>();
    if (c.size() != nlocal || d.size() != nlocal || r.size() != (py::ssize_t) nlocal * nreduced) {
      err = "icephase_lmp.lammps_bridge.classify() returned " + std::to_string(c.size()) +
          " codes, " + std::to_string(d.size()) + " distances and " + std::to_string(r.size()) +
          " reduced SOAP values for " + std::to_string(nlocal) + " atoms (" +
          std::to_string(nreduced) + " values each)";
      return false;
    }
    if (nlocal > 0) {
      std::memcpy(codes, c.data(), sizeof(int) * nlocal);
      std::memcpy(distances, d.data(), sizeof(double) * nlocal);
      std::memcpy(reduced, r.data(), sizeof(double) * nlocal * nreduced);
    }
    return true;
  });
}

// copies of the caller's buffers (reused for the next invocation): rows x width doubles, n ints
static py::array_t<double> copied(const double *values, int rows, int width)
{
  py::array_t<double> a({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(width)});
  if (rows > 0) std::memcpy(a.mutable_data(), values, sizeof(double) * rows * width);
  return a;
}

static py::array_t<int> copied(const int *values, int n)
{
  py::array_t<int> a(static_cast<py::ssize_t>(n));
  if (n > 0) std::memcpy(a.mutable_data(), values, sizeof(int) * n);
  return a;
}

// the int array that lammps_bridge.<function>() returned, copied into out (n values); false, with err
// naming the function and the counts ("<n> <what> for <n> <of>"), when it holds another number
static bool ints_returned(const py::object &returned, const char *function, int n, const char *what,
                          const char *of, int *out, std::string &err)
{
  auto r = returned.cast<py::array_t<int, py::array::c_style | py::array::forcecast>>();
  if (r.size() != n) {
    err = std::string("icephase_lmp.lammps_bridge.") + function + "() returned " + std::to_string(r.size()) +
        " " + what + " for " + std::to_string(n) + " " + of;
    return false;
  }
  if (n > 0) std::memcpy(out, r.data(), sizeof(int) * n);
  return true;
}

// lammps_bridge.<function>(model_path, positions (n x 3), nlocal, codes (n)[, local_codes (nlocal)
// [, local_extra (nlocal)]]) -> nlocal codes: the boundary step's grow and support check (which also
// takes the local codes before the rounds and, in step 5, the local cluster sizes), the phase vote and
// the other-crystal step's settle
static bool codes_of_cloud(const char *function, const std::string &model_path,
                           const double *positions, int n, int nlocal, const int *cloud_codes,
                           int *out, std::string &err, const int *local_codes = nullptr,
                           const int *local_extra = nullptr)
{
  return call_python(err, [&]() {
    const py::array_t<double> pos = copied(positions, n, 3);
    const py::array_t<int> codes = copied(cloud_codes, n);
    py::object call = bridge().attr(function);
    py::object returned;
    if (local_codes) {
      // the support check is the one caller: its cluster sizes are None where step 5 has none
      const py::object extra =
          local_extra ? py::object(copied(local_extra, nlocal)) : py::object(py::none());
      returned = call(model_path, pos, nlocal, codes, copied(local_codes, nlocal), extra);
    } else {
      returned = call(model_path, pos, nlocal, codes);
    }
    return ints_returned(returned, function, nlocal, "codes", "atoms", out, err);
  });
}

bool IcephasePython::grow(const std::string &model_path, const double *positions, int n,
                          int nlocal, const int *cloud_codes, int *grown, std::string &err)
{
  return codes_of_cloud("grow", model_path, positions, n, nlocal, cloud_codes, grown, err);
}

bool IcephasePython::support(const std::string &model_path, const double *positions, int n,
                             int nlocal, const int *cloud_codes, const int *before,
                             const int *cluster_sizes, int *out, std::string &err)
{
  return codes_of_cloud("support", model_path, positions, n, nlocal, cloud_codes, out, err, before,
                        cluster_sizes);
}

bool IcephasePython::cluster_ids(const std::string &model_path, const double *positions, int n,
                                 int nlocal, const int *cloud_ids, int *out, std::string &err)
{
  return codes_of_cloud("cluster_ids", model_path, positions, n, nlocal, cloud_ids, out, err);
}

bool IcephasePython::vote(const std::string &model_path, const double *positions, int n,
                          int nlocal, const int *cloud_codes, int *voted, std::string &err)
{
  return codes_of_cloud("vote", model_path, positions, n, nlocal, cloud_codes, voted, err);
}

bool IcephasePython::join_inside(const std::string &model_path, const double *positions, int n,
                                 int nlocal, const int *cloud_codes, int *out, std::string &err)
{
  return codes_of_cloud("join_inside", model_path, positions, n, nlocal, cloud_codes, out, err);
}

bool IcephasePython::settle(const std::string &model_path, const double *positions, int n,
                            int nlocal, const int *cloud_codes, int *out, std::string &err)
{
  return codes_of_cloud("settle", model_path, positions, n, nlocal, cloud_codes, out, err);
}

bool IcephasePython::first_look_misses(const std::string &model_path, const double *positions, int n,
                                       int nlocal, const int *codes, const double *reduced, int nreduced,
                                       const std::string &metric, double threshold, int *out,
                                       std::string &err)
{
  return call_python(err, [&]() {
    return ints_returned(bridge().attr("first_look_misses")(model_path, copied(positions, n, 3), nlocal,
                                                            copied(codes, nlocal), copied(reduced, n, nreduced),
                                                            metric, threshold),
                         "first_look_misses", nlocal, "flags", "atoms", out, err);
  });
}

bool IcephasePython::site_types(const std::string &model_path, const double *reduced, int nlocal,
                                int nreduced, const int *codes, int *sites, std::string &err)
{
  return call_python(err, [&]() {
    return ints_returned(bridge().attr("site_types")(model_path, copied(reduced, nlocal, nreduced),
                                                     copied(codes, nlocal)),
                         "site_types", nlocal, "sites", "atoms", sites, err);
  });
}

bool IcephasePython::foreign_sites(const std::string &model_path, const int *rows, int m, int *out,
                                   std::string &err)
{
  return call_python(err, [&]() {
    return ints_returned(bridge().attr("foreign_sites")(model_path, copied(rows, 3 * m)), "foreign_sites", m,
                         "verdicts", "rows", out, err);
  });
}

bool IcephasePython::ring_flags(const std::string &model_path, const double *positions, int n,
                                int nlocal, const int *cloud_codes, int *flags, std::string &err)
{
  return codes_of_cloud("ring_flags", model_path, positions, n, nlocal, cloud_codes, flags, err);
}

bool IcephasePython::foreign_rings(const std::string &model_path, const int *rows, int m, int *out,
                                   std::string &err)
{
  return call_python(err, [&]() {
    return ints_returned(bridge().attr("foreign_rings")(model_path, copied(rows, 4 * m)), "foreign_rings", m,
                         "verdicts", "rows", out, err);
  });
}

bool IcephasePython::repeat_vectors(const std::string &model_path, const double *positions, int n,
                                    int nlocal, const int *codes, const double *reduced, int nreduced,
                                    const std::string &metric, double threshold,
                                    const double *early_positions, const int *misses,
                                    double *early_reduced, std::string &err)
{
  return call_python(err, [&]() {
    auto cloud_array = [n](const double *values, int width) { return copied(values, n, width); };
    py::array_t<int> local_codes = copied(codes, nlocal);
    auto r = bridge()
                 .attr("repeat_vectors")(model_path, cloud_array(positions, 3), nlocal, local_codes,
                                         cloud_array(reduced, nreduced), metric, threshold,
                                         cloud_array(early_positions, 3), copied(misses, n))
                 .cast<py::array_t<double, py::array::c_style | py::array::forcecast>>();
    if (r.size() != (py::ssize_t) nlocal * nreduced) {
      err = "icephase_lmp.lammps_bridge.repeat_vectors() returned " + std::to_string(r.size()) +
          " values for " + std::to_string(nlocal) + " atoms (" + std::to_string(nreduced) + " each)";
      return false;
    }
    if (nlocal > 0) std::memcpy(early_reduced, r.data(), sizeof(double) * nlocal * nreduced);
    return true;
  });
}

bool IcephasePython::other_crystal(const std::string &model_path, const double *positions, int n,
                                   int nlocal, const int *codes, const double *reduced,
                                   int nreduced, const std::string &metric, double threshold,
                                   const double *early_positions, const double *early_reduced,
                                   int *out, std::string &err)
{
  return call_python(err, [&]() {
    auto cloud_array = [n](const double *values, int width) { return copied(values, n, width); };
    py::array_t<int> local_codes = copied(codes, nlocal);
    py::object early_pos = py::none(), early_vec = py::none();
    if (early_positions && early_reduced) {
      early_pos = cloud_array(early_positions, 3);
      early_vec = cloud_array(early_reduced, nreduced);
    }
    return ints_returned(bridge().attr("other_crystal")(model_path, cloud_array(positions, 3), nlocal,
                                                        local_codes, cloud_array(reduced, nreduced), metric,
                                                        threshold, early_pos, early_vec),
                         "other_crystal", nlocal, "codes", "atoms", out, err);
  });
}
