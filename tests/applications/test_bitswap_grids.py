"""Bit-Swap on per-layer latent grids (pyrovae/applications/compression/grids.py): the grid's
buckets hold equal aggregate-posterior mass, the coded size is the sum of the coded
information on that grid, the grid travels in the file (format version 2) and a tampered one
is refused, and files on the N(0, 1) grid (version 1) still decode."""

import hashlib
import json
import math

import numpy as np
import pytest
import torch

import pyrovae
from pyrovae import HVAEConfig, load_dataset
from pyrovae.applications.compression import (bbans, bitswap, compress, container, decompress,
                                              encode_array, grids)
from pyrovae.runtime.errors import DataError

pytest.importorskip("constriction")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def hvae(tmp_path_factory):
    """A beta-binomial hvae (z_1 8, z_2 4) on 8-bit digits (round(x * 255) of the k/16 digits),
    and its data."""
    root = tmp_path_factory.mktemp("grids")
    grey = load_dataset("digits", binarize="none")
    to8 = lambda x: np.round(x.numpy() * 255).astype(np.uint8)  # noqa: E731
    np.savez(root / "digits8.npz", x_train=to8(grey.train_x), x_test=to8(grey.test_x))
    eight = load_dataset(str(root / "digits8.npz"))
    cfg = HVAEConfig(stochastic=(8, 4), hidden=((64,), (32,)), likelihood="beta-binomial")
    run = pyrovae.train(cfg, eight, out=root / "run", epochs=30, seed=0, progress=False)
    return {"root": root, "run": run, "data": eight}


def test_standard_normal_aggregate_gives_the_normal_quantiles():
    """Known answer: the mixture of N(0.6 Phi^-1((n + 1/2) / N), 0.8^2) over n is N(0, 1) to
    O(1/N) (0.36 + 0.64 = 1), so its knots are t_i and its edges Phi^-1(j / K)."""
    n, dims = 4000, 3
    loc = (0.6 * torch.special.ndtri((torch.arange(n) + 0.5) / n)).unsqueeze(1).repeat(1, dims)
    knots = grids.mixture_quantiles(loc, torch.full_like(loc, 0.8),
                                    torch.special.ndtr(grids.knot_points()))
    grid = grids.Grid([knots.numpy()])
    edges = grid.edges(0, 256)
    want = torch.special.ndtri(torch.arange(257, dtype=torch.float64) / 256)
    assert torch.equal(edges[:, 0], want[:1].expand(dims)) and torch.isinf(edges[:, -1]).all()
    assert torch.allclose(edges[:, 1:-1], want[1:-1].expand(dims, -1), atol=5e-3)
    assert torch.allclose(grid.centres(0, 256), torch.special.ndtri(
        (torch.arange(256, dtype=torch.float64) + 0.5) / 256).expand(dims, -1), atol=5e-3)


def test_grid_edges_have_equal_aggregate_mass(hvae):
    """z_1's grid from all training examples (EXAMPLES exceeds the digits' train split, so the
    mixture is every example's q(z_1|x)): the mixture CDF, computed here, is j/K at the edges
    within 0.004 (exact at the knots, interpolated between them), every bucket keeps mass."""
    model, x = hvae["run"].model.eval(), hvae["data"].train_data()
    x = x.reshape(len(x), -1)
    assert len(x) <= grids.EXAMPLES
    grid = grids.estimate(model, x)
    loc, scale = (v.double() for v in model.encode_layer(0, x))
    for k in (256, 4096):
        edges = grid.edges(0, k)[:, 1:-1]                                  # [L_1, K-1]
        cdf = torch.special.ndtr((edges.unsqueeze(0) - loc.unsqueeze(-1))
                                 / scale.unsqueeze(-1)).mean(0)
        j = torch.arange(1, k, dtype=torch.float64) / k
        assert (cdf - j).abs().max() < 4e-3, float((cdf - j).abs().max())
        assert (edges.diff(dim=1) > 0).all()
    # at the knots themselves the mass is Phi(t_i) up to the float32 rounding of the knots
    knots = torch.from_numpy(grid.knots[0]).double()
    cdf = torch.special.ndtr((knots.unsqueeze(0) - loc.unsqueeze(-1)) / scale.unsqueeze(-1))
    assert torch.allclose(cdf.mean(0), torch.special.ndtr(grids.knot_points()), atol=1e-5)


def _edges_by_hand(grid: grids.Grid, layer: int, k: int) -> torch.Tensor:
    """The grid's edges [L, K+1] by np.interp of the knots (all Phi^-1(j/K) lie inside +-3)."""
    t = grids.knot_points().numpy()
    inner = torch.special.ndtri(torch.arange(1, k, dtype=torch.float64) / k).numpy()
    assert np.abs(inner).max() < grids.RANGE
    rows = [np.concatenate([[-np.inf], np.interp(inner, t, kn.astype(np.float64)), [np.inf]])
            for kn in grid.knots[layer]]
    return torch.from_numpy(np.stack(rows))


def test_size_is_the_sum_of_the_coded_information_on_the_grid(hvae):
    """Known answer by hand, per image: -log2 p(x|c_1) + log2 Q(j_1|x) + log2 Q(j_2|c_1)
    - log2 P(j_1|c_2) - log2 P(j_2), every mass a Gaussian CDF difference at the grid's edges
    (np.interp of the knots), the centres the codec's; tolerance as in test_compression."""
    run, data = hvae["run"], hvae["data"]
    model = run.model.eval()
    grid = grids.estimate(model, data.train_data().reshape(len(data.train_x), -1))
    codec = bitswap.BitSwap(model, 8, grid)
    e1, e2 = _edges_by_hand(grid, 0, 256), _edges_by_hand(grid, 1, 256)
    coder = bbans.constriction().stream.stack.AnsCoder(bbans.initial_words(100))

    def log2_mass(loc, scale, j, edges):
        g = torch.distributions.Normal(loc.double(), scale.double())
        lo = edges[torch.arange(edges.shape[0]), j]
        hi = edges[torch.arange(edges.shape[0]), j + 1]
        return torch.log2(g.cdf(hi) - g.cdf(lo)).sum()

    x, by_hand = data.test_data()[:150], 0.0
    with torch.no_grad():
        for start in range(0, len(x), 50):
            xb = x[start:start + 50].reshape(-1, 64)
            j1, j2 = (torch.from_numpy(j).long() for j in
                      codec.encode_batch(coder, codec.symbols(xb.numpy()))["z"])
            c1 = codec.layer_centres[0][torch.arange(8), j1].float()
            c2 = codec.layer_centres[1][torch.arange(4), j2].float()
            log_px = model.likelihood(model.decode_layer0(c1)).log_prob(xb).double()
            by_hand += float(-log_px.sum() / math.log(2)
                             + log2_mass(*model.encode_layer(0, xb), j1, e1)
                             + log2_mass(*model.encode_layer(1, c1), j2, e2)
                             - log2_mass(*model.prior_layer(1, c2), j1, e1)
                             - log2_mass(torch.zeros(4), torch.ones(4), j2, e2))
    net = 32 * len(coder.get_compressed()) - 32 * 100
    assert abs(net - by_hand) <= 64 + 3e-3 * by_hand, (net, by_hand)


def test_round_trip_on_the_grid_is_bit_exact_and_stored(hvae, tmp_path):
    """The file holds the grid (version 2) estimated from the training split, its sha256 in
    the fingerprinted settings; 8-bit integers and floats round-trip bit for bit."""
    run, x = hvae["run"], hvae["data"].test_data()
    path = tmp_path / "g.pvz"
    stats = compress(run, x, path, batch_size=64)
    assert torch.equal(decompress(run, path), x)
    header, _ = container.read(path)
    assert path.read_bytes()[8:10] == (2).to_bytes(2, "little")
    train = hvae["data"].train_data()
    want = grids.estimate(run.model.eval(), train.reshape(len(train), -1))
    assert header["settings"]["grid_sha256"] == want.sha256()
    assert grids.Grid.from_header(header["grid"]).sha256() == want.sha256()
    assert stats["grid_bits"] > 0 and stats["file_bits_per_dim"] > stats["bits_per_dim"]
    k = (x * 255).round().to(torch.uint8)
    compress(run, k, tmp_path / "k.pvz")
    assert torch.equal(decompress(run, tmp_path / "k.pvz"), k)


def test_normal_grid_files_keep_version_1_and_decode(hvae, tmp_path):
    run, x = hvae["run"], hvae["data"].test_data()[:60]
    compress(run, x, tmp_path / "n.pvz", grid="normal")
    data = (tmp_path / "n.pvz").read_bytes()
    assert data[8:10] == (1).to_bytes(2, "little") and b'"grid' not in data
    assert torch.equal(decompress(run, tmp_path / "n.pvz"), x)


def _repacked(path, edit) -> bytes:
    """The file with its header edited by ``edit`` and a fresh, valid checksum."""
    header, payload = container.unpack(path.read_bytes())
    edit(header)
    return container.pack(header, payload)


@pytest.mark.parametrize("kind, words", [
    ("moved", "does not match its fingerprint"), ("unsorted", "damaged latent grid"),
    ("dropped", "does not match its fingerprint"), ("bytes", "corrupted")])
def test_tampered_grid_is_refused(hvae, tmp_path, kind, words):
    run, x = hvae["run"], hvae["data"].test_data()[:60]
    good = tmp_path / "g.pvz"
    compress(run, x, good)

    def edit(header):
        size, text = header["grid"]["layers"][0]
        knots = np.frombuffer(__import__("base64").b64decode(text), "<f4").copy()
        if kind == "moved":   # still a valid grid: every knot of z_1 shifted by 0.01
            knots += np.float32(0.01)
        else:                 # two knots swapped: not increasing
            knots[[0, 1]] = knots[[1, 0]]
        header["grid"]["layers"][0][1] = __import__("base64").b64encode(
            knots.astype("<f4").tobytes()).decode()

    bad = tmp_path / "bad.pvz"
    if kind == "bytes":       # the grid's text changed without a new checksum
        data = good.read_bytes()
        at = data.index(b'"layers"') + 20
        bad.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1:])
    elif kind == "dropped":   # the grid removed: the N(0, 1) grid would not match either
        bad.write_bytes(_repacked(good, lambda h: h.pop("grid")))
    else:
        bad.write_bytes(_repacked(good, edit))
    with pytest.raises(DataError, match=words) as err:
        decompress(run, bad)
    assert "\n" not in str(err.value)


def test_unknown_versions_are_refused_in_one_line(hvae, tmp_path):
    run, x = hvae["run"], hvae["data"].test_data()[:30]
    compress(run, x, tmp_path / "g.pvz")
    data = (tmp_path / "g.pvz").read_bytes()
    for version, words in ((0, "which no pyrovae writes"), (3, "newer than this pyrovae")):
        body = data[:8] + version.to_bytes(2, "little") + data[10:-32]
        with pytest.raises(DataError, match=words):
            container.unpack(body + hashlib.sha256(body).digest())


class Shifted(torch.nn.Module):
    """The two-layer hvae with z_1 replaced by A + B z_1: the same model (its ELBO is invariant:
    the Jacobian cancels between p(z_1|z_2) and q(z_1|x)) whose z_1 is narrow and off
    N(0, 1)'s centre, as the 8-bit MNIST hvae's is (docs/compression.md)."""

    capabilities = ("hierarchy",)
    A, B = 2.5, 0.05

    def __init__(self, inner):
        super().__init__()
        self.inner, self.input_dim, self.likelihood = inner, inner.input_dim, inner.likelihood

    @property
    def latent_sizes(self):
        return self.inner.latent_sizes

    def encode_layer(self, layer, h):
        if layer == 0:
            loc, scale = self.inner.encode_layer(0, h)
            return self.A + self.B * loc, self.B * scale
        return self.inner.encode_layer(layer, (h - self.A) / self.B)

    def prior_layer(self, layer, z):
        loc, scale = self.inner.prior_layer(layer, z)
        return self.A + self.B * loc, self.B * scale

    def decode_layer0(self, z1):
        return self.inner.decode_layer0((z1 - self.A) / self.B)


def test_aggregate_grid_follows_a_narrow_off_centre_layer(hvae):
    """The per-layer grid codes the digits hvae within 3 % of its test -ELBO, and codes the
    same model with z_1 moved to 2.5 + 0.05 z_1 at the same rate (the grid moves with it),
    where the N(0, 1) grid pays over 5 % more (the failure on 8-bit MNIST; 6.9 % here)."""
    run, x = hvae["run"], hvae["data"].test_data()
    train = hvae["data"].train_data()
    model = run.model.eval()
    _, _, agg = encode_array(model, x, grid_x=train)
    elbo_bpd = -run.metrics["test_elbo"] / math.log(2) / 64
    assert agg["ideal_bits_per_dim"] == pytest.approx(elbo_bpd, rel=0.03)
    shifted = Shifted(model).eval()
    _, _, moved = encode_array(shifted, x, grid_x=train)
    _, _, normal = encode_array(shifted, x, grid="normal")
    assert moved["ideal_bits_per_dim"] == pytest.approx(agg["ideal_bits_per_dim"], rel=2e-3)
    assert normal["ideal_bits_per_dim"] > 1.05 * moved["ideal_bits_per_dim"], (normal, moved)
    assert agg["grid_bits"] == 8 * len(json.dumps(grids.estimate(
        model, train.reshape(len(train), -1)).to_header()))
