"""The trained denoiser rewritten as a few dense tensor operations, for inference only.

The denoiser is trained as a nequip network (denoiser_network.py): generic e3nn tensor products, built for
any irreps, which on one CPU thread spend most of their time in small generated multiplications and
concatenations. Our architecture is fixed and small (hidden features 32x0e + 32x1o, edge attributes
l <= 1), so each of its layers is a handful of dense operations once the constants are folded:

- the edge's radial MLP (Bessel basis x polynomial cutoff -> SiLU MLP) gives four weight vectors per edge;
- the four tensor-product paths 0x0->0, 1x1->0, 0x1->1, 1x0->1 are products of those weights with the
  neighbour's scalars, its vectors, and the unit edge vector;
- the messages are summed onto the centre, then two node-wise linear maps (one of them the self-connection)
  and the gate nonlinearity follow.

Every linear map, path constant and activation scale is read off the nequip modules by probing them with
basis inputs (``from_nequip``), never retyped, so the two give the same eps to float32 rounding
(tests/test_compact_denoiser.py compares them on ice and liquid). The compact module has the same
``forward(pos, edge_index, edge_shift) -> eps`` contract (denoiser_network.py's docstring), so the plugin and
the offline pipeline load it from a model file exactly as before; offline, ``forward_pairs`` takes each pair
of the symmetric edge list once, and the LAMMPS compute on several ranks runs it one layer at a time
(``edge_terms``, ``initial_features``, ``layer_step``, ``eps_from_features``). Per call on one CPU thread it costs 0.3-0.4x of the nequip module
(docs/validation.md, "The compact denoiser").

Only the architecture we train is covered (l_max 1, even-parity features, one atom type): ``supports``
says whether a configuration is; other denoisers stay nequip modules.
"""


from typing import List, Tuple

import torch

from .configs import DenoiserConfig
from .denoiser_kernel import LAYER_ARRAYS


#: Edges per block on CPU (CompactLayer.forward): small enough that a block's arrays (~1 kB per edge) stay
#: in a core's L2 cache, large enough that the ~15 tensor operations per block cost little.
EDGE_BLOCK = 1024
#: Nodes per block of the node-wise maps on CPU (their arrays, 4,096 x 256 floats, stay in cache)
NODE_BLOCK = 4096
#: The methods besides forward that a model file's compact denoiser offers (and freezing must keep):
#: forward_pairs for the offline pipeline, the layer-by-layer steps for the LAMMPS compute on several ranks
EXPORTED_METHODS = ("forward_pairs", "edge_terms", "initial_features", "layer_step", "eps_from_features")


def supports(config: DenoiserConfig) -> bool:
    """Whether a denoiser of this architecture can be rewritten (else export keeps the nequip module)."""
    return config.l_max == 1 and not config.all_parities and config.radial_mlp_depth == 1


class CompactLayer(torch.nn.Module):
    """One interaction layer: messages from the neighbours, their sum on the centre, linear maps, gate.

    Node features are one (N, 4F) array ``[s | vx | vy | vz]``: F scalars, then the x, y and z components of
    F vectors, each block contiguous, so that every per-edge product below is between two (E, F) blocks or an
    (E, F) block and one (E, 1) column (broadcasting a vector's components along the feature axis is several
    times slower on CPU). Every node-wise linear map is equivariant, so it is one matrix for the scalars and
    one for the vectors, applied to the three components at once (rows (3N, F)): ``lin_s`` / ``lin_v`` (the
    first linear map, with the neighbour-count normalisation), ``self_s`` / ``self_v`` (the self-connection),
    ``mix_s`` / ``mix_v`` (from the summed messages, 2F scalars and 2F vectors after the first layer, to the
    gate's input: F scalars and F gates, and F vectors). ``radial_out`` (H, 4F) is the radial MLP's last layer, whose columns are already
    multiplied by every constant of their tensor-product path (paths in the order 0x0->0, 1x1->0, 0x1->1,
    1x0->1; the first layer, whose input has no vectors, has only 0x0->0 and 0x1->1: (H, 2F))."""

    first: bool
    resnet: bool
    features: int
    act_scale: float

    def __init__(self, radial_in: torch.Tensor, radial_out: torch.Tensor, lin_s: torch.Tensor, lin_v: torch.Tensor,
                 self_s: torch.Tensor, self_v: torch.Tensor, self_bias: torch.Tensor, mix_s: torch.Tensor,
                 mix_v: torch.Tensor, act_scale: float, first: bool, resnet: bool):
        super().__init__()
        self.radial_in = torch.nn.Parameter(radial_in, requires_grad=False)  # (B, H)
        self.radial_out = torch.nn.Parameter(radial_out, requires_grad=False)
        self.lin_s = torch.nn.Parameter(lin_s, requires_grad=False)  # (F, F); empty in the first layer
        self.lin_v = torch.nn.Parameter(lin_v, requires_grad=False)  # (F, F); empty in the first layer
        self.self_s = torch.nn.Parameter(self_s, requires_grad=False)  # (F, 2F); empty in the first layer
        self.self_v = torch.nn.Parameter(self_v, requires_grad=False)  # (F, F); empty in the first layer
        self.self_bias = torch.nn.Parameter(self_bias, requires_grad=False)  # (2F,): the first layer's
        self.mix_s = torch.nn.Parameter(mix_s, requires_grad=False)  # (2F, 2F); (F, 2F) in the first layer
        self.mix_v = torch.nn.Parameter(mix_v, requires_grad=False)  # (2F, F); (F, F) in the first layer
        self.act_scale = act_scale
        self.first = first
        self.resnet = resnet
        self.features = mix_v.shape[1]

    def messages(self, w: torch.Tensor, h: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
        """The messages of a block of edges from their weights w, the neighbours' features h (after the first
        linear map; unused in the first layer) and the unit edge vectors (E, 3): (E, 8F) laid out
        ``[0x0->0 | 1x1->0 | x: 0x1->1, 1x0->1 | y: ... | z: ...]``, so that each component's vector
        messages are one contiguous (E, 2F) block; in the first layer (E, 4F), ``[0x0->0 | x | y | z]``."""
        f = self.features
        e = w.shape[0]
        if self.first:
            # every node holds the same (type) embedding: its part is folded into w, so the messages depend
            # on the edge alone
            packed = torch.empty(e, 4 * f, dtype=w.dtype, device=w.device)
            packed[:, :f] = w[:, :f]
            for i in range(3):
                torch.mul(w[:, f:], unit[:, i:i + 1], out=packed[:, (1 + i) * f:(2 + i) * f])
            return packed
        w_vv = w[:, 3 * f:]
        hs = h[:, :f]
        packed = torch.empty(e, 8 * f, dtype=w.dtype, device=w.device)
        torch.mul(w[:, :f], hs, out=packed[:, :f])
        dot = h[:, f:2 * f] * unit[:, 0:1] + h[:, 2 * f:3 * f] * unit[:, 1:2] + h[:, 3 * f:] * unit[:, 2:3]
        torch.mul(w[:, f:2 * f], dot, out=packed[:, f:2 * f])
        a = w[:, 2 * f:3 * f] * hs
        for i in range(3):
            torch.mul(a, unit[:, i:i + 1], out=packed[:, (2 + 2 * i) * f:(3 + 2 * i) * f])
            torch.mul(w_vv, h[:, (1 + i) * f:(2 + i) * f], out=packed[:, (3 + 2 * i) * f:(4 + 2 * i) * f])
        return packed

    def forward(self, x: torch.Tensor, radial: torch.Tensor, unit: torch.Tensor, src: torch.Tensor,
                dst: torch.Tensor, block: int, node_block: int, paired: bool) -> torch.Tensor:
        """New node features from the old ones x (N, 4F) and the edges' radial basis (E, B), unit vectors
        (E, 3), neighbours src and centres dst, taken ``block`` edges at a time: every per-edge array of a
        block then stays in the CPU's cache (all at once, the edge arrays of a 1000-molecule box are tens of
        MB and each elementwise product waits on memory). The node-wise maps go ``node_block`` nodes at a
        time for the same reason (at ~100,000 oxygens their (N, 8F) arrays are hundreds of MB). With
        ``paired`` every edge also stands for its reverse (centre and neighbour swapped, unit vector
        negated), whose radial weights are the same: they are computed once for both."""
        n = x.shape[0]
        f = self.features
        e = radial.shape[0]
        summed = torch.zeros(n, (4 if self.first else 8) * f, dtype=x.dtype, device=x.device)
        if self.first:
            hx = x
        else:
            hx = torch.empty(n, 4 * f, dtype=x.dtype, device=x.device)
            for a in range(0, n, node_block):
                b = min(a + node_block, n)
                hx[a:b] = self.neighbour_features(x[a:b])
        for start in range(0, e, block):
            stop = min(start + block, e)
            w = self.radial_weights(radial[start:stop])
            h = hx if self.first else torch.index_select(hx, 0, src[start:stop])
            summed.index_add_(0, dst[start:stop], self.messages(w, h, unit[start:stop]))
            if paired:
                h = hx if self.first else torch.index_select(hx, 0, dst[start:stop])
                summed.index_add_(0, src[start:stop], self.messages(w, h, -unit[start:stop]))
        out = torch.empty(n, 4 * f, dtype=x.dtype, device=x.device)
        for a in range(0, n, node_block):
            b = min(a + node_block, n)
            out[a:b] = self.update(summed[a:b], x[a:b])
        return out

    def neighbour_features(self, x: torch.Tensor) -> torch.Tensor:
        """The first linear map, (M, 4F) -> (M, 4F): what a node sends its neighbours (not in the first layer)."""
        m = x.shape[0]
        f = self.features
        v = x[:, f:].reshape(3 * m, f)  # (M, 3F) -> rows (node, component)
        return torch.cat([x[:, :f] @ self.lin_s, (v @ self.lin_v).reshape(m, 3 * f)], dim=1)

    def radial_weights(self, radial: torch.Tensor) -> torch.Tensor:
        """The radial MLP: each edge's weights of the tensor-product paths, (E, B) -> (E, 2F or 4F)."""
        return torch.nn.functional.silu(radial @ self.radial_in) @ self.radial_out

    def update(self, summed: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The node-wise part for a block of nodes: their summed messages (M, 4F or 8F) and old features
        (M, 4F; (M, 1) in the first layer) -> new features (M, 4F)."""
        n = x.shape[0]
        f = self.features
        width_s = f if self.first else 2 * f
        gate_s = summed[:, :width_s] @ self.mix_s  # (M, 2F): F scalars, then F gates
        # the vector messages of each component are as wide as the scalar ones: F, or 2F after the first layer
        gate_v = summed[:, width_s:].reshape(3 * n, width_s) @ self.mix_v
        if self.first:
            gate_s = gate_s + self.self_bias  # the self-connection of the constant embedding
        else:
            gate_s = gate_s + x[:, :f] @ self.self_s
            gate_v = gate_v + x[:, f:].reshape(3 * n, f) @ self.self_v
        act = torch.nn.functional.silu(gate_s) * self.act_scale
        gated = gate_v.reshape(n, 3, f) * act[:, f:].unsqueeze(1)
        out = torch.cat([act[:, :f], gated.reshape(n, 3 * f)], dim=1)
        if self.resnet:
            out = x + out
        return out


class CompactDenoiser(torch.nn.Module):
    """eps(r) with the same forward contract as denoiser_network.Denoiser, built by :func:`from_nequip`."""

    r_max: float
    cutoff_power: float
    output_scale: float
    edge_block: int
    node_block: int

    def __init__(self, bessel: torch.Tensor, layers: List[CompactLayer], readout: torch.Tensor, r_max: float,
                 cutoff_power: float, output_scale: float, edge_block: int = EDGE_BLOCK,
                 node_block: int = NODE_BLOCK):
        super().__init__()
        self.bessel = torch.nn.Parameter(bessel, requires_grad=False)  # (1, B): n pi
        self.layers = torch.nn.ModuleList(layers)
        self.readout = torch.nn.Parameter(readout, requires_grad=False)  # (4F, 3): vectors -> eps
        self.r_max = r_max
        self.cutoff_power = cutoff_power
        self.output_scale = output_scale
        self.edge_block = edge_block
        self.node_block = node_block

    def forward(self, pos: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor) -> torch.Tensor:
        """eps: pos (N, 3), edge_index (2, E), edge_shift (E, 3), Angstrom -> (N, 3), Angstrom."""
        return self._eps(pos, edge_index, edge_shift, False)

    @torch.jit.export
    def forward_pairs(self, pos: torch.Tensor, pair_index: torch.Tensor, pair_shift: torch.Tensor) -> torch.Tensor:
        """eps from each pair given once: ``pair_index`` (2, P) and ``pair_shift`` (P, 3) hold one direction of
        every edge (the reverse, j -> i with shift -s, is implied), so each pair's radial weights, about
        half the cost of a layer, are computed once (denoise.py uses it offline, where the list is ours)."""
        return self._eps(pos, pair_index, pair_shift, True)

    # The network one layer at a time, for the LAMMPS compute on several ranks: each rank runs a layer for
    # its own oxygens only and receives its ghost oxygens' new features from their owners (a forward
    # communication) before the next layer, so its graph reaches one cutoff (r_max) beyond its domain
    # instead of the whole receptive field. forward() is these three steps in turn.

    @torch.jit.export
    def edge_terms(self, pos: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(radial (E, B), unit (E, 3)): each edge's radial basis and unit vector, which every layer uses."""
        vec = torch.index_select(pos, 0, edge_index[1]) - torch.index_select(pos, 0, edge_index[0]) + edge_shift
        length = torch.linalg.vector_norm(vec, dim=1, keepdim=True)
        unit = vec / length
        x = length / self.r_max
        p = self.cutoff_power
        envelope = (1.0 - (p + 1.0) * (p + 2.0) / 2.0 * torch.pow(x, p) + p * (p + 2.0) * torch.pow(x, p + 1.0)
                    - p * (p + 1.0) / 2.0 * torch.pow(x, p + 2.0)) * (x < 1.0)
        return torch.sinc(x * self.bessel) * self.bessel * envelope, unit  # Bessel basis x cutoff

    @torch.jit.export
    def initial_features(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """The features before the first layer: (n, 1) zeros (the one species' embedding is in the weights)."""
        return torch.zeros(n, 1, dtype=like.dtype, device=like.device)

    @torch.jit.export
    def layer_step(self, k: int, features: torch.Tensor, radial: torch.Tensor, unit: torch.Tensor,
                   edge_index: torch.Tensor) -> torch.Tensor:
        """Layer ``k`` (0-based) on every node; a node's row is right where all its edges are in the list."""
        cpu = features.device.type == "cpu"
        block = self.edge_block if cpu else max(edge_index.shape[1], 1)
        node_block = self.node_block if cpu else max(features.shape[0], 1)
        for i, layer in enumerate(self.layers):
            if i == k:
                return layer(features, radial, unit, edge_index[1], edge_index[0], block, node_block, False)
        raise RuntimeError("no such layer")

    @torch.jit.export
    def eps_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """eps (N, 3), Angstrom, from the last layer's features."""
        return (features @ self.readout) * self.output_scale

    def _eps(self, pos: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor, paired: bool
             ) -> torch.Tensor:
        dst = edge_index[0]  # the centre, which receives the message
        src = edge_index[1]  # the neighbour, which sends it
        radial, unit = self.edge_terms(pos, edge_index, edge_shift)
        features = self.initial_features(pos.shape[0], pos)
        cpu = pos.device.type == "cpu"
        block = self.edge_block if cpu else max(edge_index.shape[1], 1)
        node_block = self.node_block if cpu else max(pos.shape[0], 1)
        for layer in self.layers:
            features = layer(features, radial, unit, src, dst, block, node_block, paired)
        return self.eps_from_features(features)


# ---------------------------------------------------------------------------------------------------------
# reading the constants off a nequip denoiser

def _matrix(fn, dim: int) -> torch.Tensor:
    """The matrix of a linear map of row vectors: fn(identity)."""
    return fn(torch.eye(dim))


def _split(full: torch.Tensor, n_s_in: int, n_v_in: int, n_s_out: int, n_v_out: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """An equivariant map of e3nn features ``[scalars | vectors (u, xyz)]`` as its scalar block (S_in, S_out)
    and its vector block (V_in, V_out), checking that it holds nothing else (scalar <-> vector terms, or
    mixing of x, y and z)."""
    scalars = full[:n_s_in, :n_s_out]
    vectors = full[n_s_in::3, n_s_out::3][:n_v_in, :n_v_out]
    rebuilt = torch.zeros_like(full)
    rebuilt[:n_s_in, :n_s_out] = scalars
    rebuilt[n_s_in:, n_s_out:] = torch.kron(vectors, torch.eye(3))
    if not torch.allclose(rebuilt, full, rtol=0.0, atol=1e-6 * float(full.abs().max())):
        raise ValueError("a nequip linear map is not the expected scalar + vector map")
    return scalars.contiguous(), vectors.contiguous()


@torch.no_grad()
def from_nequip(denoiser: torch.nn.Module, config: DenoiserConfig) -> CompactDenoiser:
    """The compact form of an eager nequip denoiser (denoiser_network.build_denoiser with trained weights).

    Every matrix is the nequip module applied to basis inputs, reordered to our feature layout; the tensor
    product's path constants are its outputs for unit inputs. Nothing is assumed about e3nn's normalisations."""
    if not supports(config):
        raise ValueError(f"no compact form for the denoiser architecture {config.to_dict()}")
    net = denoiser.net
    f = config.num_features
    # the one atom type's embedding: every node's features and attributes before the first layer
    typed = net.type_embed({"atom_types": torch.zeros(1, dtype=torch.long), "pos": torch.zeros(1, 3)})
    embedding = typed["node_features"]
    attrs = typed["node_attrs"]
    sh_scale = float(net.sh.sh(torch.tensor([[0.0, 0.0, 1.0]]))[0, 3])  # Y1 = sqrt(3) * unit vector (x, y, z)
    y0 = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # edge attributes Y0 = 1, Y1 = 0
    y1 = torch.tensor([[0.0, 0.0, 0.0, 1.0]])  # Y0 = 0, Y1 along z (raw, not scaled)

    layers: list[CompactLayer] = []
    for index in range(config.num_layers):
        block = getattr(net, f"layer{index}")
        conv = block.conv
        first = index == 0
        dim_in = embedding.shape[1] if first else 4 * f
        norm = float(conv.avg_num_neighbors_norm.norm_const.reshape(-1)[0])
        lin1 = _matrix(conv.linear_1, dim_in) * norm
        # the self-connection: a tensor product with the (constant) node attributes, i.e. a linear map
        self_full = _matrix(lambda x: conv.sc(x, attrs.expand(x.shape[0], -1)), dim_in)
        tp = conv.tp_scatter.tp
        mlp = conv.edge_mlp.mlp
        w_in = mlp[0].weight * mlp[0].alpha
        w_out = mlp[2].weight * mlp[2].alpha  # (H, weights): F per instruction, in instruction order
        ones_w = torch.ones(1, tp.weight_numel)
        if first:
            # instructions (0e x 0e -> 0e), (0e x 1o -> 1o); the hidden scalars h0 are the same on every node
            h0 = (embedding @ lin1)[0]
            c_ss = tp(h0.unsqueeze(0), y0, ones_w)[0, :f]  # = constant * h0
            c_sv = tp(h0.unsqueeze(0), y1, ones_w)[0, f + 2::3][:f]
            w_layer = torch.cat([w_out[:, :f] * c_ss, w_out[:, f:2 * f] * (c_sv * sh_scale)], dim=1)
            lin_s = lin_v = self_v = torch.zeros(0, f)
            self_s = torch.zeros(0, 2 * f)
            bias = (embedding @ self_full)[0]
            if bias[2 * f:].abs().max() > 0:
                raise ValueError("the first layer's self-connection has a vector part")
            self_bias = bias[:2 * f]
            mix_s, mix_v = _split(_matrix(conv.linear_2, 4 * f), f, f, 2 * f, f)
        else:
            # instructions (0e x 0e), (0e x 1o), (1o x 0e), (1o x 1o); e3nn sorts their outputs to
            # [0e x 0e | 1o x 1o | 0e x 1o | 1o x 0e]
            scalar = torch.zeros(1, 4 * f)
            scalar[0, :f] = 1.0
            vector = torch.zeros(1, 4 * f)
            vector[0, f + 2::3] = 1.0  # every vector feature along z
            c_ss = tp(scalar, y0, ones_w)[0, :f]
            c_sv = tp(scalar, y1, ones_w)[0, 2 * f + 2:5 * f:3]
            c_vv = tp(vector, y0, ones_w)[0, 5 * f + 2::3]
            c_vs = tp(vector, y1, ones_w)[0, f:2 * f]
            w_layer = torch.cat([w_out[:, :f] * c_ss, w_out[:, 3 * f:] * (c_vs * sh_scale),
                                 w_out[:, f:2 * f] * (c_sv * sh_scale), w_out[:, 2 * f:3 * f] * c_vv], dim=1)
            lin_s, lin_v = _split(lin1, f, f, f, f)
            self_s, self_v = _split(self_full, f, f, 2 * f, f)
            self_bias = torch.zeros(2 * f)
            # linear_2 takes e3nn's [2F scalars (0e x 0e, 1o x 1o) | 2F vectors (0e x 1o, then 1o x 0e)]: its
            # vector block's rows are [0x1->1 | 1x0->1], the order of each component's messages
            mix_s, mix_v = _split(_matrix(conv.linear_2, 8 * f), 2 * f, 2 * f, 2 * f, f)
        # the gate: e3nn scales SiLU to unit second moment; read the scale off the module
        probe = torch.zeros(1, 5 * f)
        probe[0, 0] = 1.0
        act_scale = float(block.equivariant_nonlin(probe)[0, 0] / torch.nn.functional.silu(torch.tensor(1.0)))
        layers.append(CompactLayer(w_in.contiguous(), w_layer.contiguous(), lin_s, lin_v, self_s, self_v,
                                   self_bias.contiguous(), mix_s, mix_v, act_scale, first, bool(block.resnet)))
    # (4F, 3) in our layout [s | vx | vy | vz]: only the vectors contribute
    readout_e3nn = _matrix(net.out.linear, 4 * f)
    readout = torch.cat([readout_e3nn[:f]] + [readout_e3nn[f + i::3] for i in range(3)]).contiguous()
    return CompactDenoiser(net.radial.bessel_weights.detach().clone(), layers, readout, config.r_max,
                           float(net.radial.cutoff.p), float(denoiser.output_scale))


# ---------------------------------------------------------------------------------------------------------
# the constants as plain arrays (a model file's compact_denoiser.npz), which the offline pipeline runs in numpy
# with the compiled message kernel (denoiser_kernel.py, whose LAYER_ARRAYS names each layer's arrays)


def to_arrays(module: CompactDenoiser) -> "dict[str, torch.Tensor]":
    """Every constant of an (eager) compact denoiser by name: ``bessel``, ``readout``, the scalars, and per
    layer ``layer{k}.{name}`` for each name of ``LAYER_ARRAYS``, ``layer{k}.act_scale``, ``layer{k}.first``
    and ``layer{k}.resnet``."""
    out = {"bessel": module.bessel.detach(), "readout": module.readout.detach(),
           "r_max": torch.tensor(module.r_max), "cutoff_power": torch.tensor(module.cutoff_power),
           "output_scale": torch.tensor(module.output_scale)}
    for k, layer in enumerate(module.layers):
        for name in LAYER_ARRAYS:
            out[f"layer{k}.{name}"] = getattr(layer, name).detach()
        out[f"layer{k}.act_scale"] = torch.tensor(layer.act_scale)
        out[f"layer{k}.first"] = torch.tensor(layer.first)
        out[f"layer{k}.resnet"] = torch.tensor(layer.resnet)
    return out
