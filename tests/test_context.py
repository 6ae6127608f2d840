"""Tests for model/context.py (the autoregressive prior) and model/sampler.py (sampling codes)."""


import pytest
import torch

from model import sampler
from model.config import ModelConfig
from model.context import ContextModel
from model.sampler import SamplingCancelled, sample_codes, sample_codes_reference

H, C, A = 6, 10, 8
CONFIG = ModelConfig(heads=H, classes=C, audio_width=A, context_embedding=8)


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run many tiny ops; one intra-op thread keeps them fast on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_model(dtype=torch.float64, seed=0, config=CONFIG):
    torch.manual_seed(seed)
    return ContextModel(config).to(dtype)


def random_inputs(T, B=1, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, C, (B, T, H), generator=g)
    audio = torch.randn(B, T, A, generator=g, dtype=dtype)
    return codes, audio


def changed(a, b):
    """[T, H] bool: where logits a and b [1, T, H, C] differ."""
    return (a - b).abs().amax(-1)[0] > 1e-12


def test_shapes_and_receptive_field():
    model = make_model()
    codes, audio = random_inputs(T=20, B=3)
    logits = model(codes, audio)
    assert logits.shape == (3, 20, H, C)
    assert model(codes, audio[:1]).shape == (3, 20, H, C)  # one audio shared by the batch
    nll = model.nll(codes, audio)
    assert nll.dim() == 0 and torch.isfinite(nll)
    assert model.receptive_field == 16 and model.audio_receptive_field == 15
    assert ContextModel(ModelConfig()).receptive_field == 16
    with pytest.raises(ValueError):
        model(codes[:, :, :4], audio)
    with pytest.raises(ValueError):
        model(codes, audio[:, :10])


@pytest.mark.parametrize("t0,h0", [(0, 0), (5, 2), (20, 5), (30, 3)])
def test_causality_codes(t0, h0):
    """Code (t0, h0) affects exactly logits (t0, h > h0) and frames t0+1 ... t0+15 (all heads)."""
    model = make_model()
    T = 40
    codes, audio = random_inputs(T)
    base = model(codes, audio)
    other = codes.clone()
    other[0, t0, h0] = (codes[0, t0, h0] + 3) % C
    diff = changed(model(other, audio), base)
    t = torch.arange(T)[:, None]
    h = torch.arange(H)[None, :]
    expected = ((t == t0) & (h > h0)) | ((t > t0) & (t < t0 + model.receptive_field))
    assert not (diff & ~expected).any(), "logits changed outside the causal cone"
    # The cone is tight: every frame t0+1 ... t0+15 (and frame t0 when h0 is not the last head)
    # changes; position by position nearly all do (a few can sit behind inactive ReLUs).
    assert torch.equal(diff.any(1), expected.any(1))
    assert diff.sum() >= 0.95 * expected.sum()


@pytest.mark.parametrize("t0", [0, 7, 25])
def test_causality_audio(t0):
    """Audio at frame t0 affects logits only at frames t0 ... t0+14, never earlier."""
    model = make_model()
    T = 40
    codes, audio = random_inputs(T)
    base = model(codes, audio)
    other = audio.clone()
    other[0, t0] += 1.0
    frames = changed(model(codes, other), base).any(1)
    assert not frames[:t0].any(), "future audio leaked into earlier frames"
    assert frames[t0] and frames[t0 + model.audio_receptive_field - 1]
    assert not frames[t0 + model.audio_receptive_field :].any()


def test_causality_gradient():
    """Gradients of logits at (t, h) w.r.t. the code embeddings vanish outside the causal cone."""
    model = make_model()
    T = 24
    codes, audio = random_inputs(T)
    emb = model.embedding
    inputs = emb(codes + model.head_offsets).detach().requires_grad_(True)
    original = emb.forward
    emb.forward = lambda idx: inputs  # feed the embeddings directly so they take gradients
    try:
        logits = model(codes, audio)
    finally:
        emb.forward = original
    t, h = 18, 3
    (grad,) = torch.autograd.grad(logits[0, t, h].sum(), inputs)
    touched = grad[0].abs().amax(-1) > 0  # [T, H]
    tt = torch.arange(T)[:, None]
    hh = torch.arange(H)[None, :]
    cone = ((tt == t) & (hh < h)) | ((tt < t) & (tt > t - model.receptive_field))
    assert not (touched & ~cone).any()
    assert touched[t, h - 1] and touched[t - model.receptive_field + 1].any()


def test_nll_decreases_on_a_repeated_pattern():
    model = make_model(dtype=torch.float32)
    pattern = torch.randint(0, C, (1, 5, H), generator=torch.Generator().manual_seed(3))
    codes = pattern.repeat(4, 8, 1)  # period 5 frames
    audio = torch.randn(4, 40, A, generator=torch.Generator().manual_seed(4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model.nll(codes, audio).item()
    for _ in range(40):
        opt.zero_grad()
        loss = model.nll(codes, audio)
        loss.backward()
        opt.step()
    last = model.nll(codes, audio).item()
    assert first > 2.0 and last < 0.25 * first


@pytest.fixture
def small_noise_blocks(monkeypatch):
    """Noise blocks of 7 frames, so that tests cross block boundaries."""
    monkeypatch.setattr(sampler, "NOISE_BLOCK", 7)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["temperature", "argmax"])
@pytest.mark.parametrize("variants", [1, 3])  # one variant takes the vector path (np.dot)
def test_fast_sampler_equals_reference(dtype, mode, variants, small_noise_blocks):
    model = make_model(dtype=dtype)
    T = 30
    audio = torch.randn(1, T, A, generator=torch.Generator().manual_seed(5), dtype=dtype)
    kwargs = {"argmax": True} if mode == "argmax" else {"temperature": 0.7}
    ref = sample_codes_reference(model, audio, variants=variants, generator=torch.Generator().manual_seed(11), **kwargs)
    fast = sample_codes(model, audio, variants=variants, generator=torch.Generator().manual_seed(11), **kwargs)
    assert ref.shape == fast.shape == (variants, T, H) and fast.dtype == torch.long
    assert torch.equal(ref, fast)
    if mode == "temperature" and variants > 1:
        assert not torch.equal(fast[0], fast[1])  # variants differ


@pytest.mark.parametrize("dilations", [(1, 3, 2, 5), (2, 1), (1,), (3, 8)])
def test_fast_sampler_other_dilations(dilations, small_noise_blocks):
    config = ModelConfig(heads=4, classes=7, audio_width=A, context_embedding=4, context_dilations=dilations)
    model = make_model(config=config)
    audio = torch.randn(1, 26, A, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref = sample_codes_reference(model, audio, variants=2, generator=torch.Generator().manual_seed(1))
    fast = sample_codes(model, audio, variants=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ref, fast)
    assert model.receptive_field == 1 + sum(dilations)


def test_explicit_noise_and_per_variant_audio():
    model = make_model()
    T, K = 20, 2
    g = torch.Generator().manual_seed(2)
    audio = torch.randn(K, T, A, generator=g, dtype=torch.float64)
    noise = -torch.log(-torch.log(torch.rand(K, T, H, C, generator=g, dtype=torch.float64)))
    ref = sample_codes_reference(model, audio, temperature=1.3, noise=noise)
    fast = sample_codes(model, audio, temperature=1.3, noise=noise)
    assert fast.shape == (K, T, H)
    assert torch.equal(ref, fast)
    # The 2-D audio form is shared by `variants`.
    shared = sample_codes(model, audio[0], variants=K, temperature=1.3, noise=noise)
    assert torch.equal(shared[0], fast[0])
    with pytest.raises(ValueError):
        sample_codes(model, audio, variants=3)
    with pytest.raises(ValueError):
        sample_codes(model, audio, noise=noise[:, :5])
    with pytest.raises(ValueError):
        sample_codes(model, audio, temperature=0.0)


def test_chunking_does_not_change_samples(small_noise_blocks):
    model = make_model(dtype=torch.float32)
    audio = torch.randn(45, A, generator=torch.Generator().manual_seed(6))
    whole = sample_codes(model, audio, variants=2, generator=torch.Generator().manual_seed(1))
    for chunk in (1, 5, 16):
        parts = sample_codes(model, audio, variants=2, generator=torch.Generator().manual_seed(1), chunk_frames=chunk)
        assert torch.equal(whole, parts)


def test_seeds():
    model = make_model(dtype=torch.float32)
    audio = torch.randn(25, A, generator=torch.Generator().manual_seed(7))
    a = sample_codes(model, audio, generator=torch.Generator().manual_seed(1))
    b = sample_codes(model, audio, generator=torch.Generator().manual_seed(1))
    c = sample_codes(model, audio, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a != c).float().mean() > 0.3
    # The default generator follows torch.manual_seed.
    torch.manual_seed(9)
    d = sample_codes(model, audio)
    torch.manual_seed(9)
    assert torch.equal(d, sample_codes(model, audio))


def test_samples_follow_the_softmax():
    """Gumbel-max with temperature: the first code's histogram matches softmax(logits / T)."""
    model = make_model()
    audio = torch.randn(1, 1, A, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    K, temperature = 4000, 0.8
    codes = sample_codes(model, audio, variants=K, temperature=temperature, generator=torch.Generator().manual_seed(3))
    logits = model(torch.zeros(1, 1, H, dtype=torch.long), audio)[0, 0, 0]
    expected = torch.softmax(logits / temperature, -1)
    observed = torch.bincount(codes[:, 0, 0], minlength=C).double() / K
    assert (observed - expected).abs().max() < 4 * (0.25 / K) ** 0.5


def test_progress_and_cancel():
    model = make_model(dtype=torch.float32)
    audio = torch.randn(50, A, generator=torch.Generator().manual_seed(9))
    seen = []
    sample_codes(model, audio, progress=seen.append, progress_every=10)
    assert seen == [0.2, 0.4, 0.6, 0.8, 1.0]

    def cancel(fraction):
        if fraction >= 0.4:
            raise SamplingCancelled()

    with pytest.raises(SamplingCancelled):
        sample_codes(model, audio, progress=cancel, progress_every=10)


def test_sampler_follows_weight_updates():
    """The fast sampler's cached weight layout is rebuilt after in-place updates (optimizer steps)."""
    model = make_model()
    audio = torch.randn(1, 12, A, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    before = sample_codes(model, audio, argmax=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    after = sample_codes(model, audio, argmax=True)
    assert not torch.equal(before, after)
    assert torch.equal(after, sample_codes_reference(model, audio, argmax=True))


def test_empty_and_single_frame():
    model = make_model(dtype=torch.float32)
    assert sample_codes(model, torch.zeros(0, A), variants=2).shape == (2, 0, H)
    one = sample_codes(model, torch.zeros(1, A), argmax=True)
    assert torch.equal(one, sample_codes_reference(model, torch.zeros(1, 1, A), argmax=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    model = make_model()
    audio = torch.randn(1, 20, A, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    uniform = torch.rand(2, 20, H, C, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    noise = -torch.log(-torch.log(uniform))
    cpu = sample_codes(model, audio, variants=2, noise=noise)
    gpu = sample_codes(model.cuda(), audio.cuda(), variants=2, noise=noise.cuda())
    assert torch.equal(cpu, gpu.cpu())
