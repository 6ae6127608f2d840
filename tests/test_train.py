"""Training end to end on a tiny corpus and a tiny network: both stages, resume, export, evaluation."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from model import bench, evaluate
from model.audio import band_smoothing, smooth_bands
from model.checkpoint import CheckpointError, load_checkpoint
from model.config import ModelConfig
from model.networks import MeshTalk, Regressor
from model.data import synth
from model.template import load_template
from model.train import TrainConfig, Trainer, main, train
from test_evaluate_real import MAP, write_clip_folder

TINY = dict(heads=4, classes=8, audio_width=16, expression_width=16, fusion_width=32,
            decoder_widths=(32, 16, 8), context_embedding=8)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    for split in ("train", "val", "test"):
        synth.main(["--out", str(out), "--minutes", "0.3", "--seed", "1", "--split", split, "--workers", "1"])
    return out


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    config = ModelConfig(num_vertices=load_template().num_vertices, **TINY)
    cfg = TrainConfig(corpus=str(corpus), out=str(run), stage1_steps=6, stage2_steps=4, regressor_steps=4,
                      batch_size=2, segment_frames=8, context_segment_frames=16, log_every=2,
                      checkpoint_every=3, validation_batches=1, stats_batches=1, augment=True, lip_from_step=3,
                      audio_lip_from_step=4, consistency_from_step=5, stage2_anneal_steps=2)
    train(cfg, config, ["stage1", "stage2", "regressor"], run / "meshtalk.pt")
    return cfg, config, run


def test_stages_write_checkpoints_with_curves(trained):
    _, _, run = trained
    for stage, steps in (("stage1", 6), ("stage2", 4), ("regressor", 4)):
        state = torch.load(run / f"{stage}.pt", weights_only=True)
        curves = json.loads(state["curves"])
        assert state["step"] == steps and curves[-1]["step"] == steps
        assert any(k.startswith("val_") for k in curves[-1])
        assert (run / f"{stage}_curves.png").stat().st_size > 0


def test_watching_held_out_voices_scores_the_audio_path_without_changing_training(trained, tmp_path, capsys):
    cfg, config, run = trained
    voices = ("espeak,kal" if shutil.which("festival") else "espeak") + ",real"
    clips = write_clip_folder(tmp_path / "clips", [MAP])
    watched = replace(cfg, out=str(tmp_path), watch_voices=voices, watch_sentences=2, watch_real_speech=str(clips))
    train(watched, config, ["stage1"], None)
    state, reference = (torch.load(folder / "stage1.pt", weights_only=True) for folder in (tmp_path, run))
    assert all(torch.equal(v, reference["ema"][k]) for k, v in state["ema"].items())
    checkpoints = [c for c in json.loads(state["curves"]) if "val_reconstruction" in c]
    assert len(checkpoints) == 2  # steps 3 and 6
    for c in checkpoints:
        assert all(0 <= c[f"val_closure_{voice}"] <= 100 for voice in voices.split(","))
    assert "stage1 6: audio path seals espeak" in capsys.readouterr().out
    # an untrained decoder outputs the template, whose lips are closed: every p/b/m sealed, and
    # every frame elsewhere closed too (the real clip's MAP has no frame away from its M and P);
    # with the lower lip dropped 5 mm, none
    trainer, net = Trainer(watched, config), MeshTalk(config)
    expected = {f"closure_{v}": 100.0 for v in voices.split(",")}
    expected |= {f"closed_elsewhere_{v}": None if v == "real" else 100.0 for v in voices.split(",")}
    assert trainer.watched_closure(net) == expected
    decode, lower_lip = net.decode, torch.as_tensor(trainer.template.lip_lower_inner)
    drop = torch.zeros(config.num_vertices, 3)
    drop[lower_lip, 2] = -0.005
    net.decode = lambda codes, head: decode(codes, head) + drop
    expected = {f"closure_{v}": 0.0 for v in voices.split(",")}
    expected |= {f"closed_elsewhere_{v}": None if v == "real" else 0.0 for v in voices.split(",")}
    assert trainer.watched_closure(net) == expected


def test_added_losses_start_at_their_steps(trained):
    cfg, config, _ = trained
    trainer = Trainer(cfg, config)
    assert [trainer.loss_weight("lip_gap", step) for step in (0, 2, 3, 5)] == [0.0, 0.0, cfg.lip_weight, cfg.lip_weight]
    assert [trainer.loss_weight("audio_lip_gap", step) for step in (3, 4)] == [0.0, cfg.lip_weight]
    assert [trainer.loss_weight("mouth_consistency", step) for step in (4, 5)] == [0.0, cfg.consistency_weight]
    assert trainer.loss_weight("eyelid", 0) == cfg.eyelid_weight and trainer.loss_weight("reconstruction", 9) == 1.0
    for stage in ("stage1", "regressor"):  # logged from the start, weighted from lip_from_step
        curves = json.loads(torch.load(trainer.out / f"{stage}.pt", weights_only=True)["curves"])
        assert all(c["lip_gap"] >= 0 for c in curves)
        assert stage == "regressor" or all(c["audio_lip_gap"] >= 0 and c["mouth_consistency"] >= 0 for c in curves)


def test_identity_mix_moves_training_heads_toward_the_template(trained):
    cfg, config, _ = trained
    neutral = load_template().vertices
    for prob in (0.0, 1.0):
        trainer = Trainer(replace(cfg, identity_mix_prob=prob), config)
        batch = next(trainer.batches(trainer.train_data, cfg.segment_frames, seed=3, augment=True))
        heads = [trainer.train_data.utterance_template(int(u)) for u in batch["utterance"]]
        distance = [np.abs(t.cpu().numpy() - neutral).mean() / np.abs(h - neutral).mean()
                    for t, h in zip(batch["template"], heads)]
        assert np.allclose(distance, 1.0) if prob == 0 else max(distance) < 1.0


def test_extra_splits_join_the_training_speech(trained, corpus, tmp_path):
    cfg, config, _ = trained
    for split in ("train", "val"):
        shutil.copy(corpus / f"{split}.npz", tmp_path / f"{split}.npz")
    clips = write_clip_folder(tmp_path / "clips", [MAP])
    (clips / "a.txt").write_text("map\n")
    synth.main(["--out", str(tmp_path), "--recordings", str(clips), "--recording-copies", "40"])
    plain = Trainer(replace(cfg, corpus=str(tmp_path)), config)
    joined = Trainer(replace(cfg, corpus=str(tmp_path), extra_train="recorded"), config)
    assert len(joined.train_data) == len(plain.train_data) + 40
    assert joined.train_data.seconds == pytest.approx(plain.train_data.seconds + 40 * 2.0, rel=0.15)
    batches = joined.batches(joined.train_data, cfg.segment_frames, seed=0, augment=False)
    drawn = torch.cat([next(batches)["utterance"] for _ in range(20)])
    assert (drawn >= len(plain.train_data)).any() and (drawn < len(plain.train_data)).any()
    with pytest.raises(SystemExit, match="no missing.npz"):
        Trainer(replace(cfg, corpus=str(tmp_path), extra_train="missing"), config)


def test_learning_rate_anneals_over_each_stages_last_steps(trained):
    cfg, config, run = trained
    trainer = Trainer(replace(cfg, stage1_anneal_steps=4, regressor_anneal_steps=0, anneal_to=0.1), config)
    lr = cfg.learning_rate
    rates = [trainer.learning_rate("stage1", step, 10) for step in (0, 6, 8, 10, 12)]
    assert rates == pytest.approx([lr, lr, lr * 0.55, lr * 0.1, lr * 0.1])
    assert trainer.learning_rate("regressor", 9, 10) == lr
    # the optimiser stepped with the schedule's rate: stage 2's last step (3 of 4) in the fixture's run
    state = torch.load(run / "stage2.pt", weights_only=True)
    stepped = state["optimizer"]["param_groups"][0]["lr"]
    assert stepped == pytest.approx(Trainer(cfg, config).learning_rate("stage2", 3, 4)) and stepped < lr


def test_export_loads_without_running_code(trained):
    _, config, run = trained
    loaded_config, meshtalk, context, info = load_checkpoint(run / "meshtalk.pt")
    assert loaded_config == config and info["model_version"].startswith("meshtalk-")
    stage1 = torch.load(run / "stage1.pt", weights_only=True)["ema"]  # the averaged weights ship
    for name, value in meshtalk.state_dict().items():
        assert torch.allclose(value, stage1[name].float(), atol=1e-2 * (1 + stage1[name].abs().max()))


def test_resume_continues_from_the_checkpoint(trained, capsys):
    cfg, config, run = trained
    longer = TrainConfig(**{**cfg.__dict__, "stage1_steps": 8})
    train(longer, config, ["stage1"], None)
    assert "stage1: resuming at step 6" in capsys.readouterr().out
    assert torch.load(run / "stage1.pt", weights_only=True)["step"] == 8


def test_fine_tunes_a_shipped_checkpoint(trained, tmp_path):
    cfg, config, run = trained
    _, start, start_context, info = load_checkpoint(run / "meshtalk.pt")
    tuned = replace(cfg, out=str(tmp_path), stage1_steps=2, stage2_steps=2)
    train(tuned, config, ["stage2"], tmp_path / "prior.pt", init=run / "meshtalk.pt")
    assert not (tmp_path / "stage1.pt").exists()  # stage 2 alone keeps the checkpoint's MeshTalk
    _, meshtalk, context, prior_info = load_checkpoint(tmp_path / "prior.pt")
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in meshtalk.state_dict().items())
    assert any(not torch.equal(v, start_context.state_dict()[k]) for k, v in context.state_dict().items())
    assert prior_info["model_version"] == info["model_version"] + "+s2_2-seed0"
    assert torch.load(tmp_path / "stage2.pt", weights_only=True)["step"] == 2  # the fine-tuning's own steps
    train(tuned, config, ["stage1", "stage2"], tmp_path / "both.pt", init=run / "meshtalk.pt")
    assert torch.load(tmp_path / "stage1.pt", weights_only=True)["step"] == 2
    both = load_checkpoint(tmp_path / "both.pt")[3]
    assert both["model_version"] == info["model_version"] + "+s1_2-s2_2-seed0"
    # every loss is on from the first step (cfg starts them at steps 3-5): the checkpoint has been through the schedule
    assert all(both["train_config"][k] == 0 for k in ("lip_from_step", "audio_lip_from_step", "consistency_from_step"))
    assert both["init"] == str(run / "meshtalk.pt")
    with pytest.raises(SystemExit, match="model weights not found at .*missing.pt"):
        main(["--corpus", cfg.corpus, "--out", str(tmp_path), "--init", str(tmp_path / "missing.pt")])


def test_fine_tuning_widens_the_audio_window(trained, tmp_path):
    cfg, config, run = trained
    _, _, _, info = load_checkpoint(run / "meshtalk.pt")
    tuned = replace(cfg, out=str(tmp_path), stage1_steps=2, stage2_steps=2)
    with pytest.raises(CheckpointError, match="fine-tune stage 1"):  # the prior alone cannot follow new codes
        train(tuned, config, ["stage2"], tmp_path / "prior.pt", init=run / "meshtalk.pt", hearing={"future_s": 0.2})
    main(["--corpus", cfg.corpus, "--out", str(tmp_path / "cli"), "--init", str(run / "meshtalk.pt"),
          "--future-s", "0.2", "--stage", "stage1", "--stage1-steps", "1", "--batch-size", "2", "--segment-frames", "8",
          "--validation-batches", "1"])
    assert torch.load(tmp_path / "cli" / "stage1.pt", weights_only=True)["step"] == 1
    with pytest.raises(SystemExit, match="trained with future_s=0.2 but this run asks for future_s=0.1"):
        main(["--corpus", cfg.corpus, "--out", str(tmp_path / "cli"), "--init", str(run / "meshtalk.pt"),
              "--stage", "stage1", "--stage1-steps", "2"])  # resuming without the window it was started with
    train(tuned, config, ["stage1", "stage2"], tmp_path / "wide.pt", init=run / "meshtalk.pt",
          hearing={"future_s": 0.2})
    wide_config, meshtalk, _, wide_info = load_checkpoint(tmp_path / "wide.pt")
    assert wide_config == replace(config, future_s=0.2) and meshtalk.config.audio_window == config.audio_window + 10
    assert wide_info["model_version"] == info["model_version"] + "+s1_2-s2_2-future200ms-seed0"
    fresh = replace(tuned, out=str(tmp_path / "fresh"))  # a run from scratch names its window too
    train(fresh, config, ["stage1", "stage2"], tmp_path / "fresh.pt", hearing={"future_s": 0.2})
    fresh_config, _, _, fresh_info = load_checkpoint(tmp_path / "fresh.pt")
    assert fresh_config == wide_config and fresh_info["model_version"] == "meshtalk-s1_2-s2_2-future200ms-seed0"
    # training batches are cut with the model's window, not the front end's default
    trainer = Trainer(tuned, wide_config)
    batch = next(trainer.batches(trainer.val_data, 8, seed=0, augment=False))
    assert batch["audio"].shape[2] == wide_config.audio_window


def test_fine_tuning_and_fresh_runs_hear_band_smoothed_audio(trained, tmp_path):
    cfg, config, run = trained
    _, _, _, info = load_checkpoint(run / "meshtalk.pt")
    main(["--corpus", cfg.corpus, "--out", str(tmp_path / "tuned"), "--init", str(run / "meshtalk.pt"),
          "--audio-smoothing-hz", "400", "--stage1-steps", "2", "--stage2-steps", "2", "--batch-size", "2",
          "--segment-frames", "8", "--context-segment-frames", "16", "--validation-batches", "1",
          "--export", str(tmp_path / "smooth.pt")])
    assert not (tmp_path / "tuned" / "regressor.pt").exists()  # with --init, "all" is both stages and the export
    smooth_config, meshtalk, _, smooth_info = load_checkpoint(tmp_path / "smooth.pt")
    assert smooth_config == replace(config, audio_smoothing_hz=400.0)
    assert smooth_info["model_version"] == info["model_version"] + "+s1_2-s2_2-smooth400hz-seed0"
    # the loaded encoder reads the smoothed spectrum: what the same weights read unsmoothed from
    # windows smoothed by hand
    plain = MeshTalk(config).eval()
    plain.load_state_dict(meshtalk.state_dict())
    windows = torch.randn(1, 3, config.audio_window, config.n_mels) * 3 - 8
    smoothed = smooth_bands(windows, band_smoothing(400.0))
    assert torch.allclose(meshtalk.eval().audio_codes(windows), plain.audio_codes(smoothed), atol=1e-5)
    assert not torch.allclose(meshtalk.audio_codes(windows), plain.audio_codes(windows), atol=1e-3)
    # a fresh run z-scores the smoothed features
    fresh = replace(cfg, out=str(tmp_path / "fresh"))
    trainer, net = Trainer(fresh, smooth_config), MeshTalk(smooth_config)
    trainer.set_statistics(net)
    audio = next(trainer.batches(trainer.train_data, fresh.segment_frames, seed=999, augment=False))["audio"]
    spectra = smooth_bands(audio, band_smoothing(400.0)).reshape(-1, config.n_mels)
    assert torch.allclose(net.audio_encoder.feature_mean, spectra.mean(0), atol=1e-4)
    assert torch.allclose(net.audio_encoder.feature_std, spectra.std(0).clamp(min=1e-3), atol=1e-4)
    with pytest.raises(SystemExit, match="trained with audio_smoothing_hz=400.0 but this run asks for "
                                         "audio_smoothing_hz=None"):
        main(["--corpus", cfg.corpus, "--out", str(tmp_path / "tuned"), "--init", str(run / "meshtalk.pt"),
              "--stage", "stage1", "--stage1-steps", "3"])  # resuming without the smoothing it was started with


def test_stages_keep_a_moving_average_of_their_weights(trained, tmp_path):
    cfg, config, _ = trained
    decay = 0.2  # below the warm-up's cap after 2 steps (0.25), above it after 1 (0.18): both rules run
    short = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path), "checkpoint_every": 1, "ema_decay": decay})
    states = []
    for steps in (1, 2, 3):  # one step per call: each resumes from the last checkpoint
        train(replace(short, regressor_steps=steps), config, ["regressor"], None)
        states.append(torch.load(tmp_path / "regressor.pt", weights_only=True))
    for before, after in zip(states, states[1:]):
        n = before["step"]  # steps done before this update; the warm-up caps the decay at (1 + n) / (10 + n)
        step_decay = min(decay, (1 + n) / (10 + n))
        for name, value in after["model"].items():
            if value.is_floating_point() and name in dict(Regressor(config).named_parameters()):
                expected = step_decay * before["ema"][name] + (1 - step_decay) * value
                assert torch.allclose(after["ema"][name], expected, atol=1e-6), name
    assert any(not torch.equal(states[-1]["ema"][k], v) for k, v in states[-1]["model"].items())
    # what the evaluation scores is the average
    assert all(torch.equal(v, states[-1]["ema"][k]) for k, v in evaluate._regressor(tmp_path).state_dict().items())


def test_bfloat16_steps_follow_the_float32_ones(trained, tmp_path):
    cfg, config, _ = trained
    runs = {}
    for bf16 in (False, True):
        out = tmp_path / f"bf16_{bf16}"
        train(replace(cfg, out=str(out), bf16=bf16, stage1_steps=2), config, ["stage1"], None)
        runs[bf16] = torch.load(out / "stage1.pt", weights_only=True)
    first = {bf16: json.loads(state["curves"])[0] for bf16, state in runs.items()}
    for name in ("reconstruction", "eyelid", "cross_modality"):
        assert first[True][name] == pytest.approx(first[False][name], rel=0.03), name
    torch.manual_seed(cfg.seed)  # the runs' random start, as train() draws it
    start = dict(MeshTalk(config).named_parameters())
    steps = {bf16: torch.cat([(v - start[k]).flatten() for k, v in state["model"].items() if k in start])
             for bf16, state in runs.items()}
    assert steps[False].abs().max() <= 2.5 * cfg.learning_rate  # two Adam steps from that very start
    assert not torch.equal(steps[True], steps[False])  # autocast did run
    assert torch.nn.functional.cosine_similarity(steps[True], steps[False], dim=0) > 0.9
    assert all(v.dtype != torch.bfloat16 for v in runs[True]["model"].values())


def test_evaluation_scores_every_method(trained, corpus, tmp_path):
    _, _, run = trained
    summary = evaluate.evaluate(corpus, "test", run, run / "meshtalk.pt", variants=2, limit=3, out=tmp_path)
    methods = summary["methods"]
    assert set(methods) == {"ground truth", "static template", "phone oracle", "phone oracle, 100 ms ahead",
                            "regressor", "MeshTalk (variant 0)", "MeshTalk (variant 0) on the template head"}
    for values in methods.values():
        assert values["sqrt_lve_mm"] >= 0 and 0 <= values["closure_pct"] <= 100
    # the data scored as a method: no error, every p/b/m sealed, lips rarely closed elsewhere
    truth = methods["ground truth"]
    assert truth["sqrt_lve_mm"] == 0 and truth["fdd_mm2"] == 0 and truth["closure_pct"] == 100
    assert truth["blinks_per_min"] == summary["ground_truth_blinks_per_min"] and truth["closed_elsewhere_pct"] < 5
    assert methods["static template"]["closed_elsewhere_pct"] == 100
    assert methods["static template"]["opening_pct"] == 0
    # the generator's own lips from the true phones beat the still face; only the style differs from the truth
    oracle, static = methods["phone oracle"], methods["static template"]
    assert oracle["sqrt_lve_mm"] < static["sqrt_lve_mm"] / 2 and oracle["opening_pct"] > 50
    assert oracle["blinks_per_min"] == 0
    # knowing only the phones begun within the model's future window, lips anticipate less
    assert methods["phone oracle, 100 ms ahead"]["lve_mm2"] > oracle["lve_mm2"]
    # the ground truth's and the oracle's mouths open with the speech; a still face has no correlation
    assert summary["ground_truth_envelope"]["r"] > 0.4 and oracle["envelope_r"] > 0.4
    assert static["envelope_r"] is None and static["envelope_lag_ms"] is None
    # Diversity as sampled, with variant 0's lips shared (sharing can only still the mouth), and the data's.
    d = summary["diversity_mm"]
    assert set(d) == {f"{kind}_{region}_mm" for kind in ("sampled", "shared_lips", "data")
                      for region in ("upper_face", "mouth")}
    assert d["shared_lips_mouth_mm"] <= d["sampled_mouth_mm"] + 1e-4
    # the data's own redraws move the upper face (blinks, brows, gaze) far more than the mouth
    assert d["data_upper_face_mm"] > 2 * d["data_mouth_mm"] > 0
    assert (tmp_path / "metrics.md").read_text().count("|") > 10 and (tmp_path / "lip_gap.png").exists()


@pytest.mark.skipif(shutil.which("festival") is None, reason="festival is not installed")
def test_festival_evaluation_scores_each_voice(trained, corpus, tmp_path):
    _, _, run = trained
    summary = evaluate.evaluate_festival(corpus, "test", ["kal"], run, run / "meshtalk.pt", tmp_path, limit=2)
    assert set(summary["voices"]["kal"]) == {"regressor", "MeshTalk (variant 0)"}
    assert sum(summary["events"]["kal"].values()) > 0
    for scores in summary["voices"]["kal"].values():
        interval = scores.pop("closure_ci95_pct")
        assert interval is None or 0 <= interval[0] <= scores["closure_pct"] <= interval[1] <= 100
        assert all(v is None or 0 <= v <= 100 for v in scores.values())
    assert "| kal | MeshTalk (variant 0) |" in (tmp_path / "festival.md").read_text()


def test_evaluation_writes_every_score_to_one_json(trained, corpus, tmp_path):
    _, _, run = trained
    clips = write_clip_folder(tmp_path / "clips", [MAP])
    voices = ["kal"] if shutil.which("festival") else []
    evaluate.main(["--corpus", str(corpus), "--run", str(run), "--checkpoint", str(run / "meshtalk.pt"),
                   "--variants", "1", "--limit", "1", "--out", str(tmp_path / "out"), "--real", str(clips),
                   "--real-seeds", "1"] + (["--festival", ",".join(voices)] if voices else []))
    scores = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert scores["utterances"] == 1 and "MeshTalk (variant 0)" in scores["methods"]
    assert scores["real_speech"]["events"] == {"closure": 2, "opening": 1, "rest": 0, "closed_elsewhere": 0}
    assert set(scores["real_speech"]["methods"]) == {"regressor", "MeshTalk (variant 0)"}
    assert set(scores.get("festival", {"voices": {}})["voices"]) == set(voices)


def test_benchmark_measures_each_stage():
    result = bench.measure(seconds=1.0, variants=2, reference=False, repeats=3)
    assert result["total_s"] >= result["sampling_s"] > 0 and result["peak_rss_mb"] > 0
    fastest, slowest = result["pipelined_range_s"]
    assert 0 < fastest <= result["pipelined_s"] <= slowest


def test_trains_on_real_capture_folders(corpus, tmp_path):
    from model.data.captures import write_capture
    from model.data.corpus import load_corpus

    template = load_template()
    for split in ("train", "val"):
        source = load_corpus(corpus / f"{split}.npz", template)
        for u in range(min(3, len(source))):
            write_capture(tmp_path / "captures" / split, f"seq{u}", source.utterance_audio(u), source.vertices(u),
                          str(source.speaker_names[source.speaker[u]]), source.utterance_template(u), source.fps)
    config = ModelConfig(num_vertices=template.num_vertices, **TINY)
    cfg = TrainConfig(corpus=str(tmp_path / "captures"), out=str(tmp_path / "run"), stage1_steps=2,
                      batch_size=2, segment_frames=8, log_every=1, checkpoint_every=2, validation_batches=1,
                      stats_batches=1)
    train(cfg, config, ["stage1"], None)
    assert torch.load(tmp_path / "run" / "stage1.pt", weights_only=True)["step"] == 2
    with pytest.raises(SystemExit, match="no train data"):
        train(TrainConfig(corpus=str(tmp_path / "empty"), out=str(tmp_path / "run2")), config, ["stage1"], None)
