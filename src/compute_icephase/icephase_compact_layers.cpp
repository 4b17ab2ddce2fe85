/* ----------------------------------------------------------------------
   icephase: LAMMPS compute style "icephase" (plugin)
   SPDX-License-Identifier: GPL-2.0-or-later

   The compact denoiser's layers on CPU (see icephase_compact_layers.h).
   Each step names the method of CompactLayer (python/icephase_lmp/
   compact_denoiser.py) it mirrors; python/icephase_lmp/denoiser_kernel.py
   is the same network in numpy for the offline pipeline.
------------------------------------------------------------------------- */

#include "icephase_compact_layers.h"

#include "icephase_message_sums.h"
#include "icephase_radial_table.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <string>

using IcephaseCompact::Layers;

namespace {
// every array of a layer that the compiled layers use: the model file's layer{k}.{name}
// (denoiser_kernel.LAYER_ARRAYS) but the radial MLP's, whose values the radial table holds (which
// lammps_bridge.compact_constants adds to them)
const char *const LAYER_ARRAYS[] = {"radial_table", "lin_s", "lin_v", "self_s",
                                    "self_v",       "self_bias", "mix_s", "mix_v"};

at::Tensor to_tensor(const IcephasePython::Array &a)
{
  std::vector<int64_t> shape(a.shape);
  auto t = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  if (!a.values.empty()) std::memcpy(t.data_ptr<float>(), a.values.data(), sizeof(float) * a.values.size());
  return t;
}

bool has_shape(const at::Tensor &t, int64_t rows, int64_t cols)
{
  return t.dim() == 2 && t.size(0) == rows && t.size(1) == cols;
}
}    // namespace

bool Layers::load(const std::map<std::string, IcephasePython::Array> &arrays, std::string &why)
{
  layers.clear();
  auto cutoff = arrays.find("r_max");
  if (cutoff == arrays.end() || cutoff->second.values.size() != 1 || !(cutoff->second.values[0] > 0.0f)) {
    why = "no positive scalar r_max";
    return false;
  }
  r_max = cutoff->second.values[0];
  for (int k = 0;; k++) {
    const std::string prefix = "layer" + std::to_string(k) + ".";
    if (!arrays.count(prefix + "radial_in")) break;
    Layer layer;
    std::map<std::string, at::Tensor> t;
    for (const char *name : LAYER_ARRAYS) {
      auto found = arrays.find(prefix + name);
      if (found == arrays.end()) {
        why = "no " + prefix + name;
        return false;
      }
      t[name] = to_tensor(found->second);
    }
    for (const char *name : {"act_scale", "first", "resnet"}) {
      auto found = arrays.find(prefix + name);
      if (found == arrays.end() || found->second.values.size() != 1) {
        why = "no scalar " + prefix + name;
        return false;
      }
    }
    layer.act_scale = arrays.at(prefix + "act_scale").values[0];
    layer.first = arrays.at(prefix + "first").values[0] != 0.0f;
    layer.resnet = arrays.at(prefix + "resnet").values[0] != 0.0f;
    layer.radial_table = t["radial_table"];
    layer.lin_s = t["lin_s"];
    layer.lin_v = t["lin_v"];
    layer.self_s = t["self_s"];
    layer.self_v = t["self_v"];
    layer.self_bias = t["self_bias"];
    layer.mix_s = t["mix_s"];
    layer.mix_v = t["mix_v"];
    // the shapes CompactLayer documents: F features, a radial table row per length of the layer's width of w;
    // the first layer's input has no vectors (its messages are 2F wide in w, F scalars and F vectors summed)
    const int64_t f = layer.mix_v.dim() == 2 ? layer.mix_v.size(1) : 0;
    const int64_t points = layer.radial_table.dim() == 2 ? layer.radial_table.size(0) : 0;
    const int64_t summed = layer.first ? f : 2 * f;
    bool ok = f > 0 && points >= icephase::RADIAL_TABLE_MIN_POINTS &&
        has_shape(layer.radial_table, points, (layer.first ? 2 : 4) * f) &&
        has_shape(layer.mix_s, summed, 2 * f) && has_shape(layer.mix_v, summed, f) &&
        layer.self_bias.dim() == 1 && layer.self_bias.size(0) == 2 * f;
    if (!layer.first)
      ok = ok && has_shape(layer.lin_s, f, f) && has_shape(layer.lin_v, f, f) && has_shape(layer.self_s, f, 2 * f) &&
          has_shape(layer.self_v, f, f);
    if (!ok) {
      why = "the arrays of " + prefix + "* do not have the shapes of a compact layer";
      return false;
    }
    layer.features = (int) f;
    layers.push_back(layer);
  }
  if (layers.empty() || !layers[0].first) {
    why = layers.empty() ? "no layer0.radial_in" : "layer0 is not a first layer";
    return false;
  }
  return true;
}

void Layers::edge_geometry(const at::Tensor &pos, const at::Tensor &edge_index, const at::Tensor &shift,
                           at::Tensor &lengths, at::Tensor &unit)
{
  const at::Tensor vec = pos.index_select(0, edge_index[1]) - pos.index_select(0, edge_index[0]) + shift;
  lengths = at::linalg_vector_norm(vec, 2, {1}, true);
  unit = (vec / lengths).contiguous();
  lengths = lengths.reshape({-1}).contiguous();
}

at::Tensor Layers::forward(int k, const at::Tensor &x, const at::Tensor &lengths, const at::Tensor &unit,
                           const at::Tensor &edge_index, bool paired, int64_t rows) const
{
  const Layer &layer = layers.at(k);
  const int64_t n = x.size(0);
  const int f = layer.features;
  // the nodes whose new features are computed; every node still sends its features to its neighbours
  const int64_t m = rows < 0 ? n : std::min(rows, n);

  // CompactLayer.radial_weights: each edge's weights of the tensor-product paths, from the table. The first
  // layer's (2F, cheap messages) are stored for all edges, each computed once; the later layers' (4F) are
  // interpolated where the message sums use them (icephase_radial_table.h, TabulatedWeights): no (E, 4F)
  // array per layer and iteration, and none for the edges between ghosts, which no local row reads
  const int64_t n_edges = lengths.size(0), w_width = layer.radial_table.size(1);
  const at::Tensor r = lengths.contiguous();
  const icephase::TabulatedWeights tabulated{layer.radial_table.data_ptr<float>(), layer.radial_table.size(0),
                                             (int) w_width, r_max, r.data_ptr<float>()};
  at::Tensor w;
  if (layer.first) {
    w = at::empty({n_edges, w_width}, x.options());
    float *wp = w.data_ptr<float>();
    at::parallel_for(0, n_edges, 1024, [&](int64_t begin, int64_t end) {
      icephase::radial_weights(tabulated.table, tabulated.points, (int) w_width, r_max, tabulated.lengths + begin,
                               end - begin, wp + begin * w_width);
    });
  }
  // CompactLayer.neighbour_features: what a node sends its neighbours (not in the first layer), as the
  // kernel takes them: scalars (N, F) and vectors (3N, F)
  at::Tensor xs, xv, hs, hv;
  if (!layer.first) {
    xs = x.narrow(1, 0, f);
    xv = x.narrow(1, f, 3 * f).reshape({3 * n, f});    // (a copy: x's rows are [s | vx | vy | vz])
    hs = xs.matmul(layer.lin_s).contiguous();
    hv = xv.matmul(layer.lin_v).contiguous();
  }

  // the message sums, centre by centre (rows are independent: split over the compute's threads)
  const at::Tensor dst = edge_index[0].contiguous(), src = edge_index[1].contiguous(), u = unit.contiguous();
  const int64_t *s = src.data_ptr<int64_t>(), *d = dst.data_ptr<int64_t>();
  const auto in = icephase::incoming_edges(s, d, src.size(0), n, paired);
  const int width_s = layer.first ? f : 2 * f;
  at::Tensor summed_s = at::empty({m, width_s}, x.options()), summed_v = at::empty({3 * m, width_s}, x.options());
  const float *hsp = layer.first ? nullptr : hs.data_ptr<float>(), *hvp = layer.first ? nullptr : hv.data_ptr<float>(),
              *up = u.data_ptr<float>();
  float *out_s = summed_s.data_ptr<float>(), *out_v = summed_v.data_ptr<float>();
  at::parallel_for(0, m, 256, [&](int64_t begin, int64_t end) {
    if (layer.first)
      icephase::message_sums(w.data_ptr<float>(), hsp, hvp, up, s, d, in, begin, end, f, true, out_s, out_v);
    else
      icephase::message_sums_with(tabulated, hsp, hvp, up, s, d, in, begin, end, f, false, out_s, out_v);
  });

  // CompactLayer.update: the gate's input from the summed messages and the self-connection, then the gate
  at::Tensor gate_s = summed_s.matmul(layer.mix_s);
  at::Tensor gate_v = summed_v.matmul(layer.mix_v);
  if (layer.first) {
    gate_s = gate_s + layer.self_bias;
  } else {
    gate_s = gate_s + xs.narrow(0, 0, m).matmul(layer.self_s);
    gate_v = gate_v + xv.narrow(0, 0, 3 * m).matmul(layer.self_v);
  }
  const at::Tensor act = at::silu(gate_s) * layer.act_scale;
  const at::Tensor gated = gate_v.reshape({m, 3, f}) * act.narrow(1, f, f).unsqueeze(1);
  at::Tensor next = at::cat({act.narrow(1, 0, f), gated.reshape({m, 3 * f})}, 1);
  if (layer.resnet) next = next + x.narrow(0, 0, m);
  if (m == n) return next;
  at::Tensor all = at::zeros({n, 4 * f}, x.options());
  all.narrow(0, 0, m).copy_(next);
  return all;
}
