"""The high-level animate call and the animation contract, on a small random-weight checkpoint."""

import numpy as np
import pytest
import torch

from model.animate import (animate, audio_codes, decode, decode_variants, main, mix_regions, share_lips,
                           speech_to_vertices)
from model.audio import AudioError, log_mel, write_wav
from model.checkpoint import CheckpointError, pick_device, save_checkpoint
from model.config import ModelConfig
from model.context import ContextModel
from model.networks import MeshTalk
from model.sampler import sample_codes
from model.template import load_template

SMALL = dict(heads=4, classes=8, audio_width=16, expression_width=16, fusion_width=32,
             decoder_widths=(32, 16, 8), context_embedding=8)


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, template):
    torch.manual_seed(0)
    config = ModelConfig(num_vertices=template.num_vertices, **SMALL)
    meshtalk, context = MeshTalk(config), ContextModel(config)
    with torch.no_grad():  # an untrained decoder outputs the template; give it motion to test with
        meshtalk.decoder.out.weight.normal_(0, 0.5)
        context.out_bias.zero_()
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(path, config, meshtalk, context, {"model_version": "test-small"})
    return path


def speechlike(seconds=3.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    envelope = (np.sin(2 * np.pi * 3 * t) > 0).astype(np.float32)
    return (0.1 * envelope * rng.standard_normal(len(t))).astype(np.float32)


def test_shapes_units_and_frame_count(checkpoint, template):
    anim = animate(speechlike(2.0), variants=3, seed=1, checkpoint=checkpoint, device="cpu")
    assert anim.vertices.shape == (3, 60, template.num_vertices, 3) and anim.vertices.dtype == np.float32
    assert anim.codes.shape == (3, 60, 4) and anim.fps == 30.0 and anim.model_version == "test-small"
    assert np.abs(anim.vertices - template.vertices).max() < 0.05  # metres around the head


def test_variants_share_the_lips_and_differ_elsewhere(checkpoint, template):
    anim = animate(speechlike(), variants=4, seed=3, checkpoint=checkpoint, device="cpu")
    mouth = template.mouth_weights > 0.999
    upper = template.upper_face_weights > 0.5
    for k in range(1, 4):
        assert np.allclose(anim.vertices[k][:, mouth], anim.vertices[0][:, mouth], atol=1e-6)
        assert not np.allclose(anim.vertices[k][:, upper], anim.vertices[0][:, upper], atol=1e-5)


def test_seeded_and_reproducible(checkpoint):
    a = animate(speechlike(), variants=2, seed=7, checkpoint=checkpoint, device="cpu")
    b = animate(speechlike(), variants=2, seed=7, checkpoint=checkpoint, device="cpu")
    c = animate(speechlike(), variants=2, seed=8, checkpoint=checkpoint, device="cpu")
    assert np.array_equal(a.vertices, b.vertices) and not np.array_equal(a.codes, c.codes)
    mode = animate(speechlike(), variants=2, argmax=True, checkpoint=checkpoint, device="cpu")
    assert np.array_equal(mode.codes[0], mode.codes[1])


def test_reroll_keeps_given_lips(checkpoint, template):
    first = animate(speechlike(), variants=1, seed=1, checkpoint=checkpoint, device="cpu")
    again = animate(speechlike(), variants=2, seed=99, checkpoint=checkpoint, device="cpu",
                    lips_from=first.vertices[0])
    mouth = template.mouth_weights > 0.999
    assert np.allclose(again.vertices[:, :, mouth], first.vertices[0][:, mouth], atol=1e-6)


def test_auto_device_animates_on_the_cpu_and_trains_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto").type == "cuda"  # training
    assert pick_device("auto", auto_cuda=False).type == "cpu"  # animation: the CPU samples faster
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="use the CPU"):
        pick_device("cuda")


def test_mix_regions_is_a_weighted_blend():
    a, b = np.zeros((2, 3, 3), np.float32), np.ones((2, 3, 3), np.float32)
    mixed = mix_regions(a, b, np.array([1.0, 0.25, 0.0], np.float32))
    assert np.allclose(mixed[:, :, 0], [[0, 0.75, 1]] * 2)


def test_cli_writes_the_contract(tmp_path, checkpoint, template):
    wav = tmp_path / "speech.wav"
    write_wav(wav, speechlike(1.5))
    assert main([str(wav), "--out", str(tmp_path / "a.npz"), "--variants", "2", "--seed", "5",
                 "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    with np.load(tmp_path / "a.npz", allow_pickle=False) as data:
        assert data["vertices"].shape == (2, 45, template.num_vertices, 3) and data["vertices"].dtype == np.float32
        assert float(data["fps"]) == 30.0 and int(data["seed"]) == 5 and str(data["model_version"]) == "test-small"
        assert np.array_equal(data["faces"], template.faces) and data["faces"].dtype == np.int32
        for name in ("lip_upper_inner", "lip_lower_inner", "eyelid_upper_L", "eyelid_lower_L",
                     "eyelid_upper_R", "eyelid_lower_R"):
            assert data[name].dtype == np.int32
        assert len(data["lip_upper_inner"]) == len(data["lip_lower_inner"])
        assert data["mouth_weights"].shape == data["upper_face_weights"].shape == (template.num_vertices,)


def test_clear_errors(tmp_path, checkpoint):
    with pytest.raises(AudioError, match="silent"):
        animate(np.zeros(16000, np.float32), checkpoint=checkpoint, device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        animate(speechlike(), checkpoint=tmp_path / "missing.pt", device="cpu")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        animate(speechlike(), checkpoint=tmp_path / "corrupt.pt", device="cpu")
    with pytest.raises(ValueError, match="variants"):
        animate(speechlike(), variants=0, checkpoint=checkpoint, device="cpu")
    assert main([str(tmp_path / "nope.wav"), "--out", str(tmp_path / "x.npz"), "--checkpoint", str(checkpoint)]) == 1


def test_decode_recreates_the_variants_from_their_codes(checkpoint, template):
    anim = animate(speechlike(), variants=3, seed=5, checkpoint=checkpoint, device="cpu")
    assert np.allclose(decode(anim.codes, device="cpu", checkpoint=checkpoint), anim.vertices, atol=1e-5)
    # Keeping variant 2's lips: every variant's mouth is now variant 2's.
    kept = decode(anim.codes, device="cpu", checkpoint=checkpoint, lips_from=anim.vertices[2])
    mouth = template.mouth_weights > 0.999
    assert np.allclose(kept[0][:, mouth], anim.vertices[2][:, mouth], atol=1e-6)


def test_chunked_decoding_equals_decoding_whole(template):
    torch.manual_seed(1)
    config = ModelConfig(num_vertices=template.num_vertices, **SMALL)
    meshtalk = MeshTalk(config).eval()
    with torch.no_grad():
        meshtalk.decoder.out.weight.normal_(0, 0.5)
    codes = torch.randint(0, config.classes, (2, 100, config.heads))
    head = torch.as_tensor(template.vertices)
    with torch.no_grad():
        whole = meshtalk.decode(codes, head).numpy()
    chunked = np.empty_like(whole)
    meshtalk.decode_into(codes, head, chunked, chunk_frames=7)
    assert np.allclose(chunked, whole, atol=1e-6)
    # Two spans, the second resuming from the first's state, equal one.
    spans = np.empty_like(whole)
    state = meshtalk.decode_into(codes, head, spans, 0, 40)
    meshtalk.decode_into(codes, head, spans, 40, 100, state)
    assert np.allclose(spans, whole, atol=1e-6)


def test_overlapped_stages_equal_running_them_in_turn(template, monkeypatch):
    """animate() encodes audio a chunk ahead of the sampler and decodes a chunk behind it, on
    helper threads; codes and vertices must equal running the stages one after another, across
    chunk boundaries, and a failing stage must surface as its own error."""
    import model.animate as animate_module

    monkeypatch.setattr(animate_module, "AUDIO_CHUNK_FRAMES", 16)  # 90 frames: 6 chunks
    torch.manual_seed(2)
    config = ModelConfig(num_vertices=template.num_vertices, **SMALL)
    meshtalk, context = MeshTalk(config).eval(), ContextModel(config).eval()
    with torch.no_grad():
        meshtalk.decoder.out.weight.normal_(0, 0.5)
    mel = log_mel(torch.from_numpy(speechlike(3.0)))
    head = torch.as_tensor(template.vertices)
    in_turn = sample_codes(context, audio_codes(meshtalk, mel, 90), variants=2,
                           generator=torch.Generator().manual_seed(4))
    expected = decode_variants(meshtalk, in_turn, template, lips_from=template.vertices[None].repeat(90, 0))
    codes, vertices = speech_to_vertices(meshtalk, context, mel, 90, head, 2,
                                         generator=torch.Generator().manual_seed(4))
    assert torch.equal(codes, in_turn)
    assert np.allclose(share_lips(vertices, template, template.vertices[None].repeat(90, 0)), expected, atol=1e-6)
    assert not np.allclose(vertices[0], vertices[1], atol=1e-5)

    def fails(stage):
        def broken(*_):
            raise RuntimeError(f"{stage} failed")
        return broken

    for stage, method in (("encoder", "audio_codes"), ("decoder", "decode_into")):
        with monkeypatch.context() as patch:
            patch.setattr(meshtalk, method, fails(stage))
            with pytest.raises(RuntimeError, match=f"{stage} failed"):
                speech_to_vertices(meshtalk, context, mel, 90, head)
