"""Bits-back ANS compression (pyrovae/applications/compression): bit-exact round trips, the
coded size against a hand count of the coded probabilities, the rate against -ELBO, and the
one-line refusals of the file format and of the commands."""

import math

import numpy as np
import pytest
import torch

import pyrovae
from pyrovae import HVAEConfig, VAEConfig, load_dataset
from pyrovae.applications.compression import bbans, bitswap, compress, decompress, encode_array
from pyrovae.applications.compression.container import FORMAT_VERSION, MAGIC
from pyrovae.cli.main import main

pytest.importorskip("constriction")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py
D = 64


def _train(folder, data, likelihood="bernoulli", prior="normal", seed=0):
    elbo = "meanfield" if prior == "normal" else "trace"
    cfg = VAEConfig(latent_dim=4, hidden=(32,), likelihood=likelihood, elbo=elbo,
                    prior={"name": prior, "components": 3})
    return pyrovae.train(cfg, data, out=folder, epochs=2, seed=seed, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny digits runs: bernoulli (static binarization), discretized-logistic on 8-bit
    digits (round(x*255) of the k/16 digits, from an .npz), another bernoulli (seed 1), and
    two the codec refuses (a mixture prior, a gaussian likelihood)."""
    root = tmp_path_factory.mktemp("compression")
    binary = load_dataset("digits", binarize="static")
    grey = load_dataset("digits", binarize="none")
    to8 = lambda x: np.round(x.numpy() * 255).astype(np.uint8)  # noqa: E731
    np.savez(root / "digits8.npz", x_train=to8(grey.train_x), x_test=to8(grey.test_x))
    eight = load_dataset(str(root / "digits8.npz"))
    return {"root": root, "binary": binary, "eight": eight,
            "bern": _train(root / "bern", binary),
            "dl": _train(root / "dl", eight, "discretized-logistic"),
            "bb": _train(root / "bb", eight, "beta-binomial"),
            "bern1": _train(root / "bern1", binary, seed=1),
            "mog": _train(root / "mog", binary, prior="mog"),
            "hvae": pyrovae.train(HVAEConfig(stochastic=(6, 3), hidden=((32,), (16,)),
                                             likelihood="bernoulli"), binary,
                                  out=root / "hvae", epochs=3, progress=False),
            "gauss": _train(root / "gauss", grey, "gaussian")}


@pytest.mark.parametrize("name, data", [("bern", "binary"), ("dl", "eight"), ("bb", "eight")])
def test_round_trip_is_bit_exact(runs, name, data, tmp_path):
    run, x = runs[name], runs[data].test_data()
    stats = compress(run, x, tmp_path / "x.pvz", batch_size=64)  # 297 = 4 x 64 + 41
    assert stats["images"] == len(x) and stats["bytes"] == (tmp_path / "x.pvz").stat().st_size
    y = decompress(run, tmp_path / "x.pvz")
    assert y.dtype == x.dtype and torch.equal(y, x)
    if name in ("dl", "bb"):  # integers k hold the same symbols, and come back as integers
        k = (x * 255).round().to(torch.uint8).reshape(-1, 1, 8, 8)
        compress(run, k, tmp_path / "k.pvz")
        assert torch.equal(decompress(run, tmp_path / "k.pvz"), k)


@pytest.mark.parametrize("name, data", [("bern", "binary"), ("dl", "eight"), ("bb", "eight")])
def test_size_is_the_sum_of_the_coded_information(runs, name, data):
    """Known answer by hand: per image, -log2 p(x|c_j) (the likelihood's own log_prob at the
    bucket centre c_j the coder popped) + L k (uniform prior buckets) + log2 Q(j|x) (Gaussian
    CDF differences at the edges Phi^-1(j/K)), summed; the file holds the initial words plus
    that. Tolerance 0.3% + 64 bits: constriction quantises each probability to 24 bits
    (perfect=False; a loss of ~2^-24 / p per symbol, larger on rare symbols) and flushes a
    64-bit head; the hand log_prob is float32 against the codec's float64 softmax."""
    run, x = runs[name], runs[data].test_data()[:150]
    model, codec = run.model.eval(), bbans.BitsBack(run.model, 8)
    cs = bbans.constriction()
    coder = cs.stream.stack.AnsCoder(bbans.initial_words(100))
    by_hand = 0.0
    with torch.no_grad():
        for start in range(0, len(x), 50):
            xb = x[start:start + 50]
            z = torch.from_numpy(codec.encode_batch(coder, codec.symbols(xb.numpy()))["z"])
            c = torch.special.ndtri((z.double() + 0.5) / 256)                  # [B, L]
            log_px = model.likelihood(model.decoder(c.float())).log_prob(xb).double()
            loc, scale = model.encode(xb)
            q = torch.distributions.Normal(loc.double(), scale.double())
            lo, hi = torch.special.ndtri(z.double() / 256), torch.special.ndtri((z + 1.) / 256)
            log_q = torch.log(q.cdf(hi) - q.cdf(lo))
            by_hand += float((-log_px / math.log(2)).sum() + z.numel() * 8
                             + (log_q / math.log(2)).sum())
    net = 32 * len(coder.get_compressed()) - 32 * 100
    assert abs(net - by_hand) <= 64 + 3e-3 * by_hand, (net, by_hand)


@pytest.mark.parametrize("name, data", [("bern", "binary"), ("dl", "eight")])
def test_rate_approaches_the_negative_elbo(runs, name, data):
    """The ideal rate (float64 information) is -ELBO of the discretised latent: within 5% of
    the run's test -ELBO in bits/dim (8 latent bits per dimension); the file adds the initial
    words (B L k bits) and < 1% of quantisation."""
    run, x = runs[name], runs[data].test_data()
    _, _, stats = encode_array(run.model, x)
    elbo_bpd = -run.metrics["test_elbo"] / math.log(2) / D
    assert stats["ideal_bits_per_dim"] == pytest.approx(elbo_bpd, rel=0.05)
    assert stats["net_bits_per_dim"] == pytest.approx(stats["ideal_bits_per_dim"], rel=0.01)
    assert stats["bits"] == 32 * stats["bits"] // 32 >= stats["initial_bits"]


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyrovae: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def coded(runs):
    path = runs["root"] / "coded.pvz"
    assert main(["compress", str(runs["root"] / "bern"), "test", "-o", str(path),
                 "--no-progress"]) == 0
    return path


def test_cli_round_trip(runs, coded, tmp_path, capsys):
    out = tmp_path / "x.npy"
    assert main(["decompress", str(runs["root"] / "bern"), str(coded), "-o", str(out),
                 "--no-progress"]) == 0
    assert np.array_equal(np.load(out), runs["binary"].test_data().numpy())


def _damaged(data: bytes, kind: str) -> bytes:
    if kind == "truncated":
        return data[:-10]
    if kind == "corrupted":
        return data[:200] + bytes([data[200] ^ 1]) + data[201:]
    if kind == "magic":
        return b"NOTAPVZ\0" + data[8:]
    return data[:8] + (FORMAT_VERSION + 1).to_bytes(2, "little") + data[10:]


@pytest.mark.parametrize("kind, words", [("truncated", "truncated"), ("corrupted", "corrupted"),
                                         ("magic", "wrong magic"), ("newer", "newer")])
def test_damaged_files_are_refused(runs, coded, tmp_path, capsys, kind, words):
    bad, out = tmp_path / "bad.pvz", tmp_path / "x.npy"
    bad.write_bytes(_damaged(coded.read_bytes(), kind))
    assert main(["decompress", str(runs["root"] / "bern"), str(bad), "-o", str(out),
                 "--no-progress"]) == 2
    assert words in _error(capsys) and not out.exists()


def test_other_model_is_refused(runs, coded, tmp_path, capsys):
    out = tmp_path / "x.npy"
    assert main(["decompress", str(runs["root"] / "bern1"), str(coded), "-o", str(out)]) == 2
    assert "another model (the model's weights differ)" in _error(capsys) and not out.exists()


@pytest.mark.parametrize("name, words", [("mog", "standard-normal prior"),
                                         ("gauss", "discrete likelihood")])
def test_unsupported_models_are_refused(runs, tmp_path, capsys, name, words):
    out = tmp_path / "x.pvz"
    assert main(["compress", str(runs["root"] / name), "test", "-o", str(out),
                 "--no-progress"]) == 2
    assert words in _error(capsys) and not out.exists()


def test_wrong_data_range_is_refused(runs, tmp_path, capsys):
    grey = tmp_path / "grey.npy"
    np.save(grey, load_dataset("digits", binarize="none").test_x.numpy())  # k/16
    for run in ("bern", "dl", "bb"):
        out = tmp_path / f"{run}.pvz"
        assert main(["compress", str(runs["root"] / run), str(grey), "-o", str(out),
                     "--no-progress"]) == 2
        assert "off the" in _error(capsys) and not out.exists()


def test_existing_output_needs_force(runs, coded, tmp_path, capsys):
    before = coded.read_bytes()
    assert main(["compress", str(runs["root"] / "bern"), "test", "-o", str(coded)]) == 2
    assert "--force" in _error(capsys) and coded.read_bytes() == before
    npy = tmp_path / "x.npy"
    npy.write_bytes(b"keep")
    assert main(["decompress", str(runs["root"] / "bern"), str(coded), "-o", str(npy)]) == 2
    assert "--force" in _error(capsys) and npy.read_bytes() == b"keep"
    assert main(["decompress", str(runs["root"] / "bern"), str(coded), "-o", str(npy),
                 "--force", "--no-progress"]) == 0
    assert np.array_equal(np.load(npy), runs["binary"].test_data().numpy())


def test_cli_lossy_round_trip_decodes_the_quantised_latents(runs, tmp_path, capsys):
    """--lossy --step S: the file decodes to E[x | z = k S] with k = round(mu / S), in the
    container (the same refusals), and a smaller step codes more bits."""
    from pyrovae.applications.compression import lossy

    run_dir, model = str(runs["root"] / "gauss"), runs["gauss"].model
    data = load_dataset("digits", binarize="none").test_data()  # the run's "test" data
    sizes = {}
    for step in (1.0, 0.1):
        path = tmp_path / f"lossy{step}.pvz"
        assert main(["compress", run_dir, "test", "-o", str(path), "--lossy", "--step",
                     str(step), "--no-progress"]) == 0
        capsys.readouterr()
        sizes[step] = path.stat().st_size
        out = tmp_path / f"lossy{step}.npy"
        assert main(["decompress", run_dir, str(path), "-o", str(out), "--no-progress"]) == 0
        k = lossy.quantize(model, data.reshape(len(data), -1), step)
        with torch.no_grad():
            want = model.decode(torch.as_tensor(k, dtype=torch.float32) * step)
        got = torch.from_numpy(np.load(out)).reshape(len(data), -1)
        assert torch.equal(got, want.float())
    assert sizes[0.1] > sizes[1.0]
    assert main(["compress", run_dir, "test", "-o", str(tmp_path / "x.pvz"), "--lossy",
                 "--no-progress"]) == 2
    assert "--lossy needs --step" in _error(capsys)
    assert not (tmp_path / "x.pvz").exists()


# ---- Bit-Swap: a hierarchy of latent layers (kind hvae) ----------------------------------------

def test_bitswap_round_trip_is_bit_exact_and_reaches_the_elbo(runs, tmp_path):
    run, x = runs["hvae"], runs["binary"].test_data()
    stats = compress(run, x, tmp_path / "h.pvz", batch_size=64)
    assert torch.equal(decompress(run, tmp_path / "h.pvz"), x)
    elbo_bpd = -run.metrics["test_elbo"] / math.log(2) / D
    assert stats["ideal_bits_per_dim"] == pytest.approx(elbo_bpd, rel=0.05)
    assert stats["net_bits_per_dim"] == pytest.approx(stats["ideal_bits_per_dim"], rel=0.01)
    # the clean bits pay for z_1's pops only (4 images of L_1 k bits), not for every layer
    assert stats["initial_bits"] == 32 * max(16, math.ceil(4 * 6 * 8 / 32))


def test_bitswap_size_is_the_sum_of_the_coded_information(runs):
    """Known answer by hand, per image: -log2 p(x|c_1) + log2 Q(j_1|x) + log2 Q(j_2|c_1)
    - log2 P(j_1|c_2) + L_2 k, from the likelihood's log_prob and Gaussian CDF differences at
    the bucket edges; the tolerance as for bits-back above."""
    run, x = runs["hvae"], runs["binary"].test_data()[:150]
    model, codec = run.model.eval(), bitswap.BitSwap(run.model, 8)
    coder = bbans.constriction().stream.stack.AnsCoder(bbans.initial_words(100))

    def log2_mass(loc, scale, j):
        g = torch.distributions.Normal(loc.double(), scale.double())
        lo, hi = torch.special.ndtri(j.double() / 256), torch.special.ndtri((j + 1.) / 256)
        return torch.log2(g.cdf(hi) - g.cdf(lo)).sum()

    by_hand = 0.0
    with torch.no_grad():
        for start in range(0, len(x), 50):
            xb = x[start:start + 50]
            j1, j2 = (torch.from_numpy(j).long() for j in
                      codec.encode_batch(coder, codec.symbols(xb.numpy()))["z"])
            c1, c2 = (torch.special.ndtri((j.double() + 0.5) / 256).float() for j in (j1, j2))
            log_px = model.likelihood(model.decode_layer0(c1)).log_prob(xb).double()
            by_hand += float(-log_px.sum() / math.log(2) + j2.numel() * 8
                             + log2_mass(*model.encode_layer(0, xb), j1)
                             + log2_mass(*model.encode_layer(1, c1), j2)
                             - log2_mass(*model.prior_layer(1, c2), j1))
    net = 32 * len(coder.get_compressed()) - 32 * 100
    assert abs(net - by_hand) <= 64 + 3e-3 * by_hand, (net, by_hand)


def test_lossy_input_of_another_size_is_refused_in_one_line(runs, tmp_path, capsys):
    np.save(tmp_path / "wrong.npy", np.zeros((3, 10), np.float32))
    assert main(["compress", str(runs["root"] / "gauss"), str(tmp_path / "wrong.npy"), "-o",
                 str(tmp_path / "w.pvz"), "--lossy", "--step", "0.5", "--no-progress"]) == 2
    assert "10 values per example but the run's model takes 64" in _error(capsys)
    assert not (tmp_path / "w.pvz").exists()
