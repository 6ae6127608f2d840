"""Training windows (model/data/loader.py) and the real-capture folder format (model/data/captures.py)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model import audio
from model.data import loader
from model.data.captures import load_captures, write_capture
from model.data.corpus import Utterance, join_corpora, load_corpus, write_corpus
from model.data.loader import Augment, WindowDataset, make_loader
from model.template import ARKIT_NAMES, load_template

FPS = 30
SEGMENT = 16
SPEAKER_OFFSET_M = np.array([0.0, 0.01, 0.02], dtype=np.float32)  # the second speaker's head, moved
ALL_AUGMENTATIONS = Augment(enabled=True, reverb_prob=1.0, noise_prob=1.0, band_limit_prob=1.0, gain_prob=1.0)
PCM_STEP = 1.0 / 32767


@pytest.fixture(scope="module")
def template():
    return load_template()


def tone_bursts(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """float32 [seconds * 16 kHz]: 150 ms tone bursts at random pitches, separated by 100 ms of silence."""
    t = np.arange(int(seconds * audio.SAMPLE_RATE)) / audio.SAMPLE_RATE
    burst = np.floor(t / 0.25).astype(int)
    pitch = rng.uniform(150.0, 3000.0, burst.max() + 1)[burst]
    return (0.3 * np.sin(2 * np.pi * pitch * t) * (t % 0.25 < 0.15)).astype(np.float32)


def speaker_heads(template) -> np.ndarray:
    """float32 [2, V, 3]: the template head, and the same head moved by SPEAKER_OFFSET_M."""
    return np.stack([template.vertices, template.vertices + SPEAKER_OFFSET_M])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, template):
    rng = np.random.default_rng(7)
    utterances = []
    for u, seconds in enumerate([1.3, 2.0, 2.6, 3.1]):
        sound = tone_bursts(seconds, rng)
        weights = rng.uniform(0.0, 0.6, (audio.num_frames(len(sound), FPS), len(ARKIT_NAMES))).astype(np.float32)
        utterances.append(Utterance(sound, weights, speaker=u % 2, phones=[], text=f"utterance {u}"))
    path = tmp_path_factory.mktemp("corpus") / "train.npz"
    write_corpus(path, utterances, speaker_heads(template), ["a", "b"], FPS, audio.SAMPLE_RATE, seed=0, split="train")
    return load_corpus(path, template)


def full_utterance_windows(source, u: int) -> torch.Tensor:
    """[T, W, N_MELS] windows of every frame, computed from the whole normalised utterance."""
    clean = audio.normalize_loudness(source.utterance_audio(u))
    return audio.frame_windows(audio.log_mel(torch.from_numpy(clean)), source.num_frames(u), source.fps)


def write_sequences(root, template, fps_by_name: dict[str, float]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write one capture per name (speakers alternate); returns name -> (audio [N], vertices [T, V, 3])."""
    rng = np.random.default_rng(3)
    heads = speaker_heads(template)
    written = {}
    for i, (name, fps) in enumerate(fps_by_name.items()):
        sound = audio.normalize_loudness(tone_bursts(1.5 + 0.4 * i, rng))
        weights = rng.uniform(0.0, 0.6, (audio.num_frames(len(sound), fps), len(ARKIT_NAMES)))
        meshes = template.blend(weights, heads[i % 2])
        write_capture(root, name, sound, meshes, f"speaker{i % 2}", heads[i % 2], fps)
        written[name] = (sound, meshes)
    return written


# --- batches --------------------------------------------------------------------------------

def test_batches_have_documented_shapes_dtypes_and_metres(corpus, template):
    batch = next(iter(make_loader(corpus, batch_size=4, segment_frames=SEGMENT)))
    n_vertices = template.num_vertices
    assert batch["audio"].shape == (4, SEGMENT, audio.window_size(), audio.N_MELS)
    assert batch["vertices"].shape == (4, SEGMENT, n_vertices, 3)
    assert batch["template"].shape == (4, n_vertices, 3)
    for key in ("audio", "vertices", "template"):
        assert batch[key].dtype == torch.float32
    for key in ("speaker", "utterance", "start_frame"):
        assert batch[key].shape == (4,) and batch[key].dtype == torch.int64
    extents = (batch["vertices"].amax(dim=2) - batch["vertices"].amin(dim=2)).numpy()
    assert np.all((extents > 0.1) & (extents < 0.3)), "vertices must be metres: a head is 0.1-0.3 m across"
    for b in range(4):
        u, start = int(batch["utterance"][b]), int(batch["start_frame"][b])
        assert int(batch["speaker"][b]) == corpus.speaker[u]
        np.testing.assert_array_equal(batch["template"][b].numpy(), corpus.utterance_template(u))
        np.testing.assert_array_equal(batch["vertices"][b].numpy(), corpus.vertices(u, slice(start, start + SEGMENT)))


def test_windows_equal_slices_of_full_utterance_features(corpus):
    dataset = WindowDataset(corpus, segment_frames=SEGMENT, items_per_epoch=16)
    full = [full_utterance_windows(corpus, u) for u in range(len(corpus))]
    starts_seen = set()
    for item in dataset:
        u, start = int(item["utterance"]), int(item["start_frame"])
        starts_seen.add(start)
        torch.testing.assert_close(item["audio"], full[u][start : start + SEGMENT], rtol=0, atol=1e-5)
    assert len(starts_seen) > 8


@pytest.mark.parametrize("fps", [30, 29.97, 25, 60])
@pytest.mark.parametrize("past_s,future_s", [(0.5, 0.1), (1.0, 0.52), (0.0, 0.1)])
def test_segment_windows_match_whole_clip_at_every_start(fps, past_s, future_s):
    clip = np.random.default_rng(1).normal(0.0, 0.05, int(2.7 * audio.SAMPLE_RATE)).astype(np.float32)
    n_frames = audio.num_frames(len(clip), fps) + 1  # captures may run one frame past the audio
    full = audio.frame_windows(audio.log_mel(torch.from_numpy(clip)), n_frames, fps, past_s, future_s)
    last = n_frames - SEGMENT
    for start in [0, 1, 2, 3, 17, 31, last - 3, last - 2, last - 1, last]:
        span = loader.segment_span(len(clip), start, SEGMENT, fps, past_s, future_s)
        windows = loader.segment_windows(clip[span.first_sample : span.end_sample], span, start, SEGMENT, fps,
                                         past_s, future_s)
        torch.testing.assert_close(windows, full[start : start + SEGMENT], rtol=0, atol=1e-5)


def test_segments_are_drawn_in_proportion_to_length(corpus):
    dataset = WindowDataset(corpus, segment_frames=SEGMENT, items_per_epoch=4000)
    utterances = np.array([dataset.segment(i)[0] for i in range(len(dataset))])
    positions = np.array([corpus.num_frames(u) - SEGMENT + 1 for u in range(len(corpus))])
    share = np.bincount(utterances, minlength=len(corpus)) / len(utterances)
    np.testing.assert_allclose(share, positions / positions.sum(), atol=0.03)


def test_joined_corpora_hold_each_utterance_with_its_own_speaker(corpus):
    second = type(corpus)(**{**vars(corpus), "speaker_templates": corpus.speaker_templates + 0.01,
                                                "split": "recorded"})
    joined = join_corpora(corpus, second)
    n = len(corpus)
    assert len(joined) == 2 * n and joined.split == "train" and len(joined.speaker_templates) == 4
    for u in range(n):
        for part, v in ((corpus, u), (second, u + n)):
            np.testing.assert_array_equal(joined.utterance_audio(v), part.utterance_audio(u))
            np.testing.assert_array_equal(joined.vertices(v), part.vertices(u))
            assert joined.phones(v) == part.phones(u) and joined.texts[v] == part.texts[u]
    assert joined.seconds == pytest.approx(2 * corpus.seconds)
    with pytest.raises(ValueError, match="cannot join"):
        join_corpora(corpus, type(corpus)(**{**vars(corpus), "fps": 25.0}))


def test_same_seed_gives_the_same_items(corpus):
    first, again = (WindowDataset(corpus, SEGMENT, augment=ALL_AUGMENTATIONS, seed=5) for _ in range(2))
    other = WindowDataset(corpus, SEGMENT, augment=ALL_AUGMENTATIONS, seed=6)
    for i in range(3):
        a, b = first[i], again[i]
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert [first.segment(i) for i in range(10)] != [other.segment(i) for i in range(10)]


def test_worker_processes_give_the_same_batches(corpus):
    batches = [list(make_loader(corpus, batch_size=3, segment_frames=SEGMENT, augment=ALL_AUGMENTATIONS, seed=2,
                                num_workers=workers, items_per_epoch=6)) for workers in (0, 2)]
    for alone, shared in zip(*batches):
        for key in alone:  # vertices up to float32 rounding: a worker's BLAS runs one thread, the main process more
            torch.testing.assert_close(alone[key], shared[key], rtol=0, atol=1e-8 if key == "vertices" else 0)


def test_workers_run_one_thread_each():
    """Each batch or corpus worker gets one torch thread and one BLAS thread: with the libraries'
    one-per-core pools, 15 batch workers on 16 cores ran 19x slower."""
    code = ("import json, torch; from threadpoolctl import threadpool_info; from model.data.loader import one_thread; "
            "blas = lambda: [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']; "
            "before = blas(); one_thread(); print(json.dumps([before, blas(), torch.get_num_threads()]))")
    before, after, torch_threads = json.loads(subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parent.parent).stdout)
    assert before and after == [1] * len(before) and torch_threads == 1


def test_dataset_rejects_segments_longer_than_every_utterance(corpus):
    with pytest.raises(ValueError, match="no utterance"):
        WindowDataset(corpus, segment_frames=10_000)


# --- augmentation ---------------------------------------------------------------------------

def test_augmentation_is_off_by_default_and_changes_audio_when_on(corpus):
    clean = np.random.default_rng(0).normal(0.0, 0.01, audio.SAMPLE_RATE).astype(np.float32)
    assert Augment()(clean, np.random.default_rng(0)) is clean
    assert not np.allclose(ALL_AUGMENTATIONS(clean, np.random.default_rng(0)), clean)

    plain, augmented = (WindowDataset(corpus, SEGMENT, augment=a) for a in (Augment(), ALL_AUGMENTATIONS))
    for i in range(3):
        a, b = plain[i], augmented[i]
        u, start = int(a["utterance"]), int(a["start_frame"])
        torch.testing.assert_close(a["audio"], full_utterance_windows(corpus, u)[start : start + SEGMENT],
                                   rtol=0, atol=1e-5)
        assert torch.equal(a["vertices"], b["vertices"])
        assert (a["audio"] - b["audio"]).abs().mean() > 0.1


def test_band_masks_flatten_a_few_bands_and_are_off_by_default(corpus):
    windows = torch.randn(SEGMENT, 60, audio.N_MELS, generator=torch.Generator().manual_seed(5))
    rng = np.random.default_rng(0)
    assert Augment(enabled=True).mask_bands(windows, rng) is windows  # band_mask_prob 0
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state  # and drew nothing
    masking = Augment(enabled=True, band_mask_prob=1.0, band_masks=2, band_mask_bins=12)
    for seed in range(20):
        masked = masking.mask_bands(windows, np.random.default_rng(seed))
        flat = (masked.reshape(-1, audio.N_MELS).std(0) == 0).numpy()  # bands with no change over time
        changed = (masked != windows).reshape(-1, audio.N_MELS).any(0).numpy()
        assert 1 <= flat.sum() <= 24 and np.array_equal(flat, changed)
        torch.testing.assert_close(masked[..., flat].mean((0, 1)), windows[..., flat].mean((0, 1)))
    assert torch.equal(windows, torch.randn(SEGMENT, 60, audio.N_MELS, generator=torch.Generator().manual_seed(5)))
    # In the dataset: masked items differ from plain ones in their features only.
    plain = WindowDataset(corpus, SEGMENT, augment=Augment(enabled=True))
    masked_items = WindowDataset(corpus, SEGMENT, augment=Augment(enabled=True, band_mask_prob=1.0))
    a, b = plain[0], masked_items[0]
    assert torch.equal(a["vertices"], b["vertices"]) and not torch.equal(a["audio"], b["audio"])


def test_identity_mix_moves_heads_toward_the_template_and_keeps_the_motion(corpus, template):
    neutral = template.vertices
    vertices, head = np.ones((2, *neutral.shape), np.float32), neutral + 0.01
    rng = np.random.default_rng(0)
    for off in (Augment(enabled=True), Augment(enabled=False, identity_mix_prob=1.0)):
        assert off.mix_identity(vertices, head, neutral, rng) == (vertices, head)
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state  # drew nothing

    plain, unmixed, mixed = (WindowDataset(corpus, SEGMENT, augment=a, items_per_epoch=40, neutral=n) for a, n in (
        (Augment(enabled=True), neutral), (Augment(enabled=True), None),
        (Augment(enabled=True, identity_mix_prob=1.0), neutral)))
    shares = []
    for i in range(40):
        a, b = plain[i], mixed[i]
        assert all(torch.equal(a[k], unmixed[i][k]) for k in a)  # off: items as without a neutral
        assert torch.equal(a["audio"], b["audio"])
        torch.testing.assert_close(b["vertices"] - b["template"], a["vertices"] - a["template"], rtol=0, atol=1e-6)
        away = a["template"].numpy() - neutral  # the speaker's head relative to the template
        if np.abs(away).max() > 1e-3:  # the moved speaker: the mixed head lies on the way back
            moved = np.abs(away) > 1e-3
            share = (b["template"].numpy() - neutral)[moved] / away[moved]
            np.testing.assert_allclose(b["template"].numpy()[~moved], neutral[~moved], atol=1e-6)
            np.testing.assert_allclose(share, share[0], atol=1e-4)
            shares.append(share[0])
    assert len(shares) > 5 and 0 <= min(shares) and max(shares) < 1 and np.std(shares) > 0.1
    assert (a["audio"] != b["audio"]).reshape(-1, audio.N_MELS).any(0).sum() <= 24


@pytest.mark.parametrize("colour", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [10.0, 25.0, 40.0])
def test_noise_is_added_at_the_requested_snr(colour, snr_db):
    speech = tone_bursts(2.0, np.random.default_rng(2)).astype(np.float64)
    noisy = loader.add_noise(speech, snr_db, colour, np.random.default_rng(3))
    measured = 10 * np.log10(np.mean(speech**2) / np.mean((noisy - speech) ** 2))
    assert abs(measured - snr_db) < 1.0


def test_pink_noise_has_equal_power_per_octave():
    noise = loader.coloured_noise(2**16, "pink", np.random.default_rng(4))
    power = np.abs(np.fft.rfft(noise)) ** 2
    hz = np.fft.rfftfreq(len(noise), 1.0 / audio.SAMPLE_RATE)
    octaves = [power[(hz >= low) & (hz < 2 * low)].sum() for low in (250.0, 500.0, 1000.0, 2000.0)]
    assert max(octaves) / min(octaves) < 1.3


def test_band_limit_removes_energy_outside_the_band():
    noise = np.random.default_rng(5).standard_normal(audio.SAMPLE_RATE)
    limited = loader.band_limit(noise, highpass_hz=200.0, lowpass_hz=4000.0)
    power = np.abs(np.fft.rfft(limited)) ** 2
    hz = np.fft.rfftfreq(len(limited), 1.0 / audio.SAMPLE_RATE)
    outside = (hz < 200.0) | (hz > 4000.0)
    assert power[outside].sum() < 1e-20 * power.sum()
    in_band = np.abs(np.fft.rfft(noise))[~outside] ** 2
    np.testing.assert_allclose(power[~outside].sum(), in_band.sum(), rtol=1e-9)


def test_gain_scales_by_decibels():
    np.testing.assert_allclose(loader.apply_gain(np.ones(4), 6.0), np.full(4, 10 ** (6 / 20)))


@pytest.mark.parametrize("rt60_s", [0.1, 0.4])
def test_reverb_tail_falls_60_db_over_rt60(rt60_s):
    impulse = np.zeros(audio.SAMPLE_RATE)
    impulse[0] = 1.0
    response = loader.add_reverb(impulse, rt60_s, wet=1.0, rng=np.random.default_rng(6))
    block = int(0.1 * rt60_s * audio.SAMPLE_RATE)
    middle = int(rt60_s / 2 * audio.SAMPLE_RATE)
    start_energy = np.sum(response[:block] ** 2)
    half_energy = np.sum(response[middle : middle + block] ** 2)
    assert abs(10 * np.log10(start_energy / half_energy) - 30.0) < 3.0
    np.testing.assert_allclose(response[int(rt60_s * audio.SAMPLE_RATE) + 1 :], 0.0, atol=1e-12)


# --- real captures --------------------------------------------------------------------------

def test_captures_round_trip_and_feed_the_same_dataset(tmp_path, template):
    written = write_sequences(tmp_path, template, {"take1": FPS, "take2": FPS, "take3": FPS})
    captures = load_captures(tmp_path, template)
    assert len(captures) == 3 and captures.fps == FPS
    assert captures.speaker_names == ("speaker0", "speaker1")
    heads = speaker_heads(template)
    for u, name in enumerate(captures.sequence_names):
        sound, meshes = written[name]
        np.testing.assert_allclose(captures.utterance_audio(u), sound, rtol=0, atol=2 * PCM_STEP)
        np.testing.assert_array_equal(captures.vertices(u), meshes.astype(np.float32))
        np.testing.assert_array_equal(captures.vertices(u, slice(3, 7)), meshes[3:7].astype(np.float32))
        np.testing.assert_array_equal(captures.utterance_template(u), heads[u % 2])
        assert captures.num_frames(u) == len(meshes) and captures.speaker[u] == u % 2

    batch = next(iter(make_loader(captures, batch_size=4, segment_frames=SEGMENT)))
    assert batch["audio"].shape == (4, SEGMENT, audio.window_size(), audio.N_MELS)
    assert batch["vertices"].shape == (4, SEGMENT, template.num_vertices, 3)
    for b in range(4):
        u, start = int(batch["utterance"][b]), int(batch["start_frame"][b])
        torch.testing.assert_close(batch["audio"][b], full_utterance_windows(captures, u)[start : start + SEGMENT],
                                   rtol=0, atol=1e-5)
        np.testing.assert_array_equal(batch["vertices"][b].numpy(), written[captures.sequence_names[u]][1]
                                      [start : start + SEGMENT].astype(np.float32))


def test_captures_with_another_topology_point_to_retargeting(tmp_path, template):
    few = template.vertices[:100]
    write_capture(tmp_path, "take", tone_bursts(1.0, np.random.default_rng(0)), np.stack([few] * FPS), "s", few, FPS)
    with pytest.raises(ValueError, match="100 vertices.*Retarget"):
        load_captures(tmp_path, template)


@pytest.mark.parametrize("missing", ["audio.wav", "vertices.npy", "info.json"])
def test_captures_with_a_missing_file_name_it(tmp_path, template, missing):
    write_sequences(tmp_path, template, {"take1": FPS})
    (tmp_path / "take1" / missing).unlink()
    with pytest.raises(FileNotFoundError, match=f"take1 is missing {missing}"):
        load_captures(tmp_path, template)


def test_captures_without_speaker_heads_or_folder_are_refused(tmp_path, template):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_captures(tmp_path / "nowhere", template)
    write_sequences(tmp_path, template, {"take1": FPS})
    (tmp_path / "speakers" / "speaker0.npy").unlink()
    with pytest.raises(FileNotFoundError, match="no speaker heads"):
        load_captures(tmp_path, template)


def test_captures_with_mixed_fps_are_refused(tmp_path, template):
    write_sequences(tmp_path, template, {"take1": 30, "take2": 25})
    with pytest.raises(ValueError, match="different frame rates: 30 fps.*25 fps"):
        load_captures(tmp_path, template)


def test_captures_whose_frames_do_not_match_the_audio_are_refused(tmp_path, template):
    write_sequences(tmp_path, template, {"take1": FPS})
    info = tmp_path / "take1" / "info.json"
    info.write_text(json.dumps({"speaker": "speaker0", "fps": 60}))
    with pytest.raises(ValueError, match="within one frame"):
        load_captures(tmp_path, template)


def test_captures_in_millimetres_or_with_unknown_speakers_are_refused(tmp_path, template):
    write_sequences(tmp_path, template, {"take1": FPS})
    info = tmp_path / "take1" / "info.json"
    info.write_text(json.dumps({"speaker": "nobody", "fps": FPS}))
    with pytest.raises(ValueError, match="speaker 'nobody'"):
        load_captures(tmp_path, template)
    info.write_text(json.dumps({"speaker": "speaker0", "fps": FPS}))
    np.save(tmp_path / "speakers" / "speaker0.npy", template.vertices * 1000)
    with pytest.raises(ValueError, match="metres"):
        load_captures(tmp_path, template)
