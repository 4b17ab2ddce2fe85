/* ----------------------------------------------------------------------
   icephase: LAMMPS compute style "icephase" (plugin)
   SPDX-License-Identifier: GPL-2.0-or-later

   Plugin entry point: registers compute style "icephase" with LAMMPS.
------------------------------------------------------------------------- */

#include "icephase_plugin_abi.h"

#include "compute_icephase.h"
#include "lammps.h"

#include <dlfcn.h>

using namespace LAMMPS_NS;

static void *create_compute_icephase(void *lmp, int narg, char **arg)
{
  return new ComputeIcephase(static_cast<LAMMPS *>(lmp), narg, arg);
}

// Keep this shared object mapped after "plugin unload": it links libtorch
// and an embedded Python interpreter, which keep thread-local destructors,
// atexit handlers and interpreter-owned objects pointing into this file.
// Unmapping it would crash the process later (at thread or process exit).
// With RTLD_NODELETE the style is still removed from LAMMPS; only the code
// stays in memory, and a later "plugin load" of the same file reuses it.
static void pin_this_library()
{
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&create_compute_icephase), &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  pin_this_library();

  icephase_plugin_descriptor plugin;
  auto do_register = reinterpret_cast<icephase_plugin_register>(regfunc);

  // report the running LAMMPS's own version: the plugin uses only the
  // stable public class layout, so no version-mismatch warning is needed
  plugin.version = static_cast<LAMMPS *>(lmp)->version;
  plugin.style = "compute";
  plugin.name = "icephase";
  plugin.info = "ice phase (Ih, Ic, II, III, VI, VII, sI, liquid) per oxygen by denoising + SOAP";
  plugin.author = "icephase developers";
  plugin.creator.v2 = &create_compute_icephase;
  plugin.handle = handle;
  (*do_register)(&plugin, lmp);
}
