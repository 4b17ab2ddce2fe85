/* -*- c++ -*- ----------------------------------------------------------
   icephase: LAMMPS compute style "icephase" (plugin)
   SPDX-License-Identifier: GPL-2.0-or-later

   The compact denoiser's layers on CPU with compiled message sums
   (icephase_message_sums.h), for the compute. The same network as the
   TorchScript module's layer_step (python/icephase_lmp/compact_denoiser.py,
   CompactLayer.forward), made from the constants that the model file
   stores beside it (compact_denoiser.npz): the matrix products are
   libtorch's, the per-edge messages are summed per centre in one pass
   instead of TorchScript's (E, 8F) arrays and index_add_, and the radial
   weights are interpolated in a table (icephase_radial_table.h) instead of
   running the radial MLP per edge. On a GPU, and
   for files without the constants, the TorchScript module runs instead.
------------------------------------------------------------------------- */

#ifndef ICEPHASE_COMPACT_LAYERS_H
#define ICEPHASE_COMPACT_LAYERS_H

#include "icephase_python.h"

#include <ATen/ATen.h>

#include <map>
#include <string>
#include <vector>

namespace IcephaseCompact {

class Layers {
 public:
  // Takes the layers from a model file's constants (IcephasePython::compact_constants). Returns false,
  // with why, where one is missing or has an unexpected shape; the caller then keeps TorchScript.
  bool load(const std::map<std::string, IcephasePython::Array> &arrays, std::string &why);
  int size() const { return (int) layers.size(); }

  // Each edge's length (E,) and unit vector (E, 3) from centre to neighbour: pos[neighbour] - pos[centre]
  // + shift, with edge_index (2, E) rows (centre, neighbour) (CompactDenoiser.edge_terms' geometry).
  static void edge_geometry(const at::Tensor &pos, const at::Tensor &edge_index, const at::Tensor &shift,
                            at::Tensor &lengths, at::Tensor &unit);

  // Layer k (0-based) for nodes x (N, width; (N, 1) before the first layer) from the edges' lengths (E,),
  // unit vectors (E, 3) and edge_index (2, E) rows (centre, neighbour): the new features (N, 4F). With
  // paired every edge also stands for its reverse. With rows >= 0 only nodes 0 .. rows - 1 are computed
  // (the others are zeros): on several ranks a ghost node's new features come from its owner. Float32 CPU
  // tensors.
  at::Tensor forward(int k, const at::Tensor &x, const at::Tensor &lengths, const at::Tensor &unit,
                     const at::Tensor &edge_index, bool paired, int64_t rows = -1) const;

 private:
  struct Layer {
    // radial_table (points, 2F|4F): the radial weights against the edge length (icephase_radial_table.h)
    at::Tensor radial_table, lin_s, lin_v, self_s, self_v, self_bias, mix_s, mix_v;
    float act_scale = 1.0f;
    bool first = false, resnet = false;
    int features = 0;
  };
  std::vector<Layer> layers;
  float r_max = 0.0f;    // the table's last length: the denoiser's cutoff
};

}    // namespace IcephaseCompact

#endif
