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
the offline pipeline load it from a model file exactly as before. Per call on one CPU thread it costs 0.3-0.4x
of the nequip module (docs/validation.md, "The compact denoiser").

Only the architecture we train is covered (l_max 1, even-parity features, one atom type): ``supports``
says whether a configuration is; other denoisers stay nequip modules.
"""


from typing import List

import torch

from .configs import DenoiserConfig


#: Edges per block on CPU (CompactLayer.forward): small enough that a block's arrays (~1 kB per edge) stay
#: in a core's L2 cache, large enough that the ~15 tensor operations per block cost little.
EDGE_BLOCK = 1024


def supports(config: DenoiserConfig) -> bool:
    """Whether a denoiser of this architecture can be rewritten (else export keeps the nequip module)."""
    return config.l_max == 1 and not config.all_parities and config.radial_mlp_depth == 1


class CompactLayer(torch.nn.Module):
    """One interaction layer: messages from the neighbours, their sum on the centre, linear maps, gate.

    Node features are one (N, 4F) array ``[s | vx | vy | vz]``: F scalars, then the x, y and z components of
    F vectors, each block contiguous, so that every per-edge product below is between two (E, F) blocks or an
    (E, F) block and one (E, 1) column (broadcasting a vector's components along the feature axis is several
    times slower on CPU). The node-wise linear maps act on the whole array as one matrix: ``lin_in``
    (4F, 4F; the first linear map with the neighbour-count normalisation), ``self_map`` (4F, 5F; the
    self-connection) and ``mix`` (8F, 5F; from the summed messages to the gate's input
    ``[F scalars | F gates | vx | vy | vz]``). ``radial_out`` (H, 4F) is the radial MLP's last layer, whose
    columns are already multiplied by every constant of their tensor-product path (paths in the order
    0x0->0, 1x1->0, 0x1->1, 1x0->1; the first layer, whose input has no vectors, has only 0x0->0 and
    0x1->1: (H, 2F))."""

    first: bool
    resnet: bool
    features: int
    act_scale: float

    def __init__(self, radial_in: torch.Tensor, radial_out: torch.Tensor, lin_in: torch.Tensor,
                 self_map: torch.Tensor, self_bias: torch.Tensor, mix: torch.Tensor, act_scale: float, first: bool,
                 resnet: bool):
        super().__init__()
        self.radial_in = torch.nn.Parameter(radial_in, requires_grad=False)  # (B, H)
        self.radial_out = torch.nn.Parameter(radial_out, requires_grad=False)
        self.lin_in = torch.nn.Parameter(lin_in, requires_grad=False)
        self.self_map = torch.nn.Parameter(self_map, requires_grad=False)
        self.self_bias = torch.nn.Parameter(self_bias, requires_grad=False)
        self.mix = torch.nn.Parameter(mix, requires_grad=False)
        self.act_scale = act_scale
        self.first = first
        self.resnet = resnet
        self.features = mix.shape[1] // 5

    def messages(self, w: torch.Tensor, h: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
        """The messages of a block of edges, (E, 4F) in the first layer, else (E, 8F): from their weights w,
        the neighbours' features h (after the first linear map; unused in the first layer) and the unit
        edge vectors (E, 3)."""
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
            torch.mul(a, unit[:, i:i + 1], out=packed[:, (2 + i) * f:(3 + i) * f])
            torch.mul(w_vv, h[:, (1 + i) * f:(2 + i) * f], out=packed[:, (5 + i) * f:(6 + i) * f])
        return packed

    def forward(self, x: torch.Tensor, radial: torch.Tensor, unit: torch.Tensor, src: torch.Tensor,
                dst: torch.Tensor, block: int) -> torch.Tensor:
        """New node features from the old ones x (N, 4F) and the edges' radial basis (E, B), unit vectors
        (E, 3), neighbours src and centres dst, taken ``block`` edges at a time: every per-edge array of a
        block then stays in the CPU's cache (all at once, the edge arrays of a 1000-molecule box are tens of
        MB and each elementwise product waits on memory)."""
        n = x.shape[0]
        f = self.features
        e = radial.shape[0]
        summed = torch.zeros(n, (4 if self.first else 8) * f, dtype=x.dtype, device=x.device)
        hx = x if self.first else x @ self.lin_in
        for start in range(0, e, block):
            stop = min(start + block, e)
            w = torch.nn.functional.silu(radial[start:stop] @ self.radial_in) @ self.radial_out
            h = hx if self.first else torch.index_select(hx, 0, src[start:stop])
            summed.index_add_(0, dst[start:stop], self.messages(w, h, unit[start:stop]))
        if self.first:
            gate_in = summed @ self.mix + self.self_bias  # the self-connection of the constant embedding
        else:
            gate_in = summed @ self.mix + x @ self.self_map
        act = torch.nn.functional.silu(gate_in[:, :2 * f]) * self.act_scale
        gated = gate_in[:, 2 * f:].reshape(n, 3, f) * act[:, f:].unsqueeze(1)
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

    def __init__(self, bessel: torch.Tensor, layers: List[CompactLayer], readout: torch.Tensor, r_max: float,
                 cutoff_power: float, output_scale: float, edge_block: int = EDGE_BLOCK):
        super().__init__()
        self.bessel = torch.nn.Parameter(bessel, requires_grad=False)  # (1, B): n pi
        self.layers = torch.nn.ModuleList(layers)
        self.readout = torch.nn.Parameter(readout, requires_grad=False)  # (4F, 3): vectors -> eps
        self.r_max = r_max
        self.cutoff_power = cutoff_power
        self.output_scale = output_scale
        self.edge_block = edge_block

    def forward(self, pos: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor) -> torch.Tensor:
        """eps: pos (N, 3), edge_index (2, E), edge_shift (E, 3), Angstrom -> (N, 3), Angstrom."""
        dst = edge_index[0]  # the centre, which receives the message
        src = edge_index[1]  # the neighbour, which sends it
        vec = torch.index_select(pos, 0, src) - torch.index_select(pos, 0, dst) + edge_shift
        length = torch.linalg.vector_norm(vec, dim=1, keepdim=True)
        unit = vec / length
        x = length / self.r_max
        p = self.cutoff_power
        envelope = (1.0 - (p + 1.0) * (p + 2.0) / 2.0 * torch.pow(x, p) + p * (p + 2.0) * torch.pow(x, p + 1.0)
                    - p * (p + 1.0) / 2.0 * torch.pow(x, p + 2.0)) * (x < 1.0)
        radial = torch.sinc(x * self.bessel) * self.bessel * envelope  # (E, B): Bessel basis x cutoff
        features = torch.zeros(pos.shape[0], 1, dtype=pos.dtype, device=pos.device)
        block = self.edge_block if pos.device.type == "cpu" else max(edge_index.shape[1], 1)
        for layer in self.layers:
            features = layer(features, radial, unit, src, dst, block)
        return (features @ self.readout) * self.output_scale


# ---------------------------------------------------------------------------------------------------------
# reading the constants off a nequip denoiser

def _matrix(fn, dim: int) -> torch.Tensor:
    """The matrix of a linear map of row vectors: fn(identity)."""
    return fn(torch.eye(dim))


def _ours(n_scalars: int, n_vectors: int) -> torch.Tensor:
    """For each position of our feature layout [s | vx | vy | vz], its position in e3nn's [s | v (u, xyz)]."""
    vectors = [n_scalars + 3 * u + i for i in range(3) for u in range(n_vectors)]
    return torch.tensor(list(range(n_scalars)) + vectors)


def _reorder(full: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """An e3nn-layout matrix in our layout (contiguous)."""
    return full[rows][:, cols].contiguous()


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
    conv_out = _ours(2 * f, f)  # the gate's input: F scalars, F gates, F vectors

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
            lin_in = torch.zeros(0, 4 * f)
            self_map = torch.zeros(0, 5 * f)
            self_bias = (embedding @ self_full)[0][conv_out]
            mix = _reorder(_matrix(conv.linear_2, 4 * f), _ours(f, f), conv_out)
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
            lin_in = _reorder(lin1, _ours(f, f), _ours(f, f))
            self_map = _reorder(self_full, _ours(f, f), conv_out)
            self_bias = torch.zeros(5 * f)
            # summed messages [ss | vs | (0e x 1o) x, y, z | (1o x 0e) x, y, z] in e3nn's [2F scalars | 2F vectors]
            mid = list(range(2 * f)) + [2 * f + 3 * (k * f + u) + i for k in range(2) for i in range(3)
                                        for u in range(f)]
            mix = _reorder(_matrix(conv.linear_2, 8 * f), torch.tensor(mid), conv_out)
        # the gate: e3nn scales SiLU to unit second moment; read the scale off the module
        probe = torch.zeros(1, 5 * f)
        probe[0, 0] = 1.0
        act_scale = float(block.equivariant_nonlin(probe)[0, 0] / torch.nn.functional.silu(torch.tensor(1.0)))
        layers.append(CompactLayer(w_in.contiguous(), w_layer.contiguous(), lin_in, self_map, self_bias.contiguous(),
                                   mix, act_scale, first, bool(block.resnet)))
    readout = _matrix(net.out.linear, 4 * f)[_ours(f, f)].contiguous()  # (4F, 3): only the vectors contribute
    return CompactDenoiser(net.radial.bessel_weights.detach().clone(), layers, readout, config.r_max,
                           float(net.radial.cutoff.p), float(denoiser.output_scale))
