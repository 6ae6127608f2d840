"""Train MeshTalk in two stages, plus the deterministic baseline, with resume and logged curves.

    python -m model.train --corpus data/corpus --out runs/default          # stage 1, stage 2, export
    python -m model.train --corpus data/corpus --out runs/default --stage regressor
    python -m model.train --corpus my_captures --out runs/mine    # real captures: my_captures/{train,val}/
    python -m model.train --corpus my_captures --out runs/tuned --init weights/meshtalk.pt \
        --stage1-steps 3000 --stage2-steps 2000                    # fine-tune the shipped weights

Stage 1 trains the encoders, fusion and vertex decoder with the reconstruction, eyelid and
cross-modality losses (mm^2; the eyelid loss weighted `eyelid_weight`, the others 1), an
inner-lip gap loss (`lip_weight`; on the reconstruction from step `lip_from_step` on, on the
audio-driven mouth from `audio_lip_from_step`), a penalty on the mouth moving with the expression
(`consistency_weight`, from `consistency_from_step`) and a hinge against collapsed codes
(`code_usage_weight`); the regressor gets the same reconstruction, eyelid and lip losses.
Stage 2 freezes them and trains the context model on the argmax codes of the training data
(teacher-forced NLL). Each stage keeps a moving average of its weights (`ema_decay`), which is
what it validates and hands on. Every `checkpoint_every` steps a stage writes `OUT/<stage>.pt`
(weights, their average, optimiser, step, curves); running the same command again resumes from
it. At the end the shipped checkpoint is written (`--export`, default weights/meshtalk.pt).
`--init CHECKPOINT` starts from a shipped checkpoint's weights (its architecture and feature
statistics too) instead of a random start, with a fresh optimiser; the step counts are then the
fine-tuning's own, and `--stage stage2` alone keeps its MeshTalk as it is and tunes the prior.
`--past-s` / `--future-s` set the audio window and `--audio-smoothing-hz` its band smoothing, for a
fresh run or, with `--init`, to fine-tune a checkpoint to the new input (stage 1 must then be tuned
too: the audio codes change).
Checkpoints hold only tensors and plain values: they load with torch.load(weights_only=True).
"""

import argparse
import copy
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from . import metrics
from .audio import frame_windows, log_mel, normalize_loudness, num_frames
from .checkpoint import (DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint, pick_device, save_checkpoint,
                         trained_weights)
from .config import ModelConfig
from .context import ContextModel
from .data import festival
from .data.captures import load_captures
from .data.corpus import join_corpora, load_corpus
from .data.loader import Augment, make_loader
from .data.real_speech import load_real_speech
from .networks import (MeshTalk, Regressor, argmax_codes, count_parameters, eyelid_loss, lip_gap_loss,
                       reconstruction_loss, stage1_losses)
from .template import load_template

STAGES = ("stage1", "stage2", "regressor")


@dataclass
class TrainConfig:
    corpus: str = "data/corpus"
    out: str = "runs/default"
    # The shipped run: stage 1 to 16500 steps on the first 96 min of the train split, then to 22500
    # on all 8 h (validation's audio-driven lip-gap loss 1.76 -> 1.49); stage 2 to 7000 steps on
    # the 16500-step stage 1, then to 9000 on the final one, then 2000 more from the exported
    # weights (`--init`; blinks 11.6 -> 13.9/min against the data's 14.5); the regressor 11500,
    # then 14500.
    stage1_steps: int = 22500
    stage2_steps: int = 11000
    regressor_steps: int = 14500
    batch_size: int = 8
    segment_frames: int = 32  # stage 1 and regressor
    context_segment_frames: int = 64  # stage 2
    learning_rate: float = 3e-4
    # Loss weights (the paper weights every stage-1 term 1). Blinks move a few eyelid vertices in
    # a few frames: at weight 1 the eyelid loss stayed flat and no blinks were learned.
    eyelid_weight: float = 10.0
    # Inner-lip gap loss (not in the paper): 15 vertex pairs decide whether the lips seal on p/b/m,
    # and the all-vertex mean barely sees them (without it the autoencoder sealed 4 % of p/b/m
    # at step 4500; 500 steps with it, 72 %). It starts at `lip_from_step` because that is how
    # the shipped run went: the eyelids had been learned by then; from step 0 is untested.
    lip_weight: float = 1.0
    lip_from_step: int = 4500
    # The same loss on the mouth that the cross-modality loss decodes from another utterance's
    # expression, so the audio itself must seal the lips (model/networks.py, cross_modality_loss).
    # Weighted `lip_weight` from `audio_lip_from_step`, where the shipped run added it.
    audio_lip_from_step: int = 8000
    # Penalty on the mouth moving when only the expression changes (model/networks.py,
    # cross_modality_loss): the sampled variants' mouths differed as much as their upper faces.
    # 500 steps at weight 5 took the decoded mouth's spread over 4 other expressions from 0.26 to
    # 0.12 mm (every 12th test utterance, weights before averaging), at weight 20 to 0.08 mm,
    # with the audio-driven lips no worse (the data's own non-audio motion: 0.06 mm). From
    # `consistency_from_step`, where the shipped run added it.
    consistency_weight: float = 20.0
    consistency_from_step: int = 11500
    code_usage_weight: float = 1.0
    # Each stage also keeps an exponential moving average of its weights (a horizon of about
    # 1 / (1 - ema_decay) steps, shorter in the first ~10000 steps: the decay after n steps is at
    # most (1 + n) / (10 + n)); validation, the next stage, the export and the evaluation use
    # it. Without it the lips' closed-or-not balance swung between checkpoints 500 steps apart
    # (the regressor sealed 29 % of p/b/m at step 8000, 66 % at 8500; rest in pauses 87 -> 73 %).
    ema_decay: float = 0.999
    # Each stage's learning rate falls linearly to `anneal_to` times its value over its last
    # `<stage>_anneal_steps` steps (0: constant throughout). The shipped run first resumed stage 1
    # at step 13500 with its anneal on: on every sixth test utterance the audio-driven mouth's p/b/m
    # closure rose 84 -> 92 % and √LVE fell 3.85 -> 3.71 mm over those 3000 steps.
    stage1_anneal_steps: int = 3000
    stage2_anneal_steps: int = 2000
    regressor_anneal_steps: int = 0
    anneal_to: float = 0.1
    augment: bool = True
    # With augment: the share of segments whose features get SpecAugment-style frequency masks
    # (`model.data.loader.Augment.mask_bands`). 0 for the shipped weights; 0.5 was tried (weights/README.md).
    band_mask_prob: float = 0.0
    # With augment: the share of segments whose speaker's head (and meshes with it) moves a uniform
    # share of the way back to the template (`model.data.loader.Augment.mix_identity`), so that
    # training sees heads near the one users animate. 0 for the shipped weights (weights/README.md).
    identity_mix_prob: float = 0.0
    # Compute each training step's losses under bfloat16 autocast (weights, their average and the
    # optimiser stay float32; validation and the watched voices run in float32). On the 2-core
    # AMD EPYC (AVX512-BF16) a stage-1 step (default sizes, 200 ms window) took 0.50 s against 0.74 s, and
    # the shipped weights' gradients on one batch agreed with float32's to cosine 0.998, the
    # losses within 0.8 %. CPUs without native bfloat16 may run it slower. Off for the shipped weights.
    bf16: bool = False
    # Further splits of the corpus folder whose utterances join the train split's, comma-separated:
    # "recorded" is recorded human speech given faces (python -m model.data.recordings, then
    # model.data.synth --recordings). Segments are drawn from all in proportion to their length.
    extra_train: str = ""
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default (one per core)
    # Processes preparing batches (log-mel, augmentation, meshes), one torch and one BLAS thread
    # each; -1: none on the CPU, where they would take the cores the model needs, and up to 8 on
    # CUDA, where the front end in the training process alone held an H100 to 1.2 steps/s (with 8
    # workers: stage 1 23 steps/s, stage 2 35, the regressor 41). Batches are the same with any
    # number, up to float32 rounding of the meshes.
    loader_workers: int = -1
    # Lip sync on voices the model is not trained on, watched while it trains: at every stage-1
    # checkpoint, the p/b/m closure of the weight average's audio path (argmax codes from the audio
    # with a still face's expression) on the val split's first `watch_sentences` sentences, spoken
    # by these Festival voices (model/data/festival.py) or, for "espeak", the split's own speech.
    # "real" is the real human speech in `watch_real_speech` (python -m model.data.real_speech).
    # Comma-separated, e.g. "espeak,slt,real"; off by default. Runs from scratch sealed Festival's
    # voices and real speech best early in stage 1, and less as they fitted eSpeak (weights/README.md).
    watch_voices: str = ""
    watch_real_speech: str = "data/real_speech"
    watch_sentences: int = 40
    log_every: int = 50
    checkpoint_every: int = 500
    validation_batches: int = 8
    stats_batches: int = 32


def load_split(root: Path, split: str, template):
    """A split of the synthetic corpus (`root/<split>.npz`) or of real captures (`root/<split>/`
    in the folder format of model/data/captures.py)."""
    if (root / f"{split}.npz").is_file():
        return load_corpus(root / f"{split}.npz", template)
    if (root / split).is_dir():
        return load_captures(root / split, template)
    raise SystemExit(f"no {split} data in {root}: expected {split}.npz (python -m model.data.synth) "
                     f"or a {split}/ folder of captures")


def load_extra_split(root: Path, split: str, template):
    """A further split of the synthetic corpus (`root/<split>.npz`) for `TrainConfig.extra_train`."""
    if not (root / f"{split}.npz").is_file():
        raise SystemExit(f"no {split}.npz in {root} to join to the train split; the recorded speech's is made by "
                         f"python -m model.data.recordings, then python -m model.data.synth --out {root} --recordings "
                         "data/recordings")
    return load_corpus(root / f"{split}.npz", template)


class Trainer:
    def __init__(self, train: TrainConfig, model_config: ModelConfig):
        self.cfg, self.model_config = train, model_config
        self.device = pick_device(train.device)  # raises when CUDA is asked for and missing
        self.out = Path(train.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.template = load_template()
        self.train_data = load_split(Path(train.corpus), "train", self.template)
        if train.extra_train:
            self.train_data = join_corpora(self.train_data, *(
                load_extra_split(Path(train.corpus), split, self.template) for split in train.extra_train.split(",")))
        self.val_data = load_split(Path(train.corpus), "val", self.template)
        self.mouth = torch.as_tensor(self.template.mouth_weights, device=self.device)
        self.upper = torch.as_tensor(self.template.upper_face_weights, device=self.device)
        self.eyelids = torch.as_tensor(self.template.eyelid_mask, device=self.device)
        self.lip_pairs = (self.template.lip_upper_inner, self.template.lip_lower_inner)
        torch.manual_seed(train.seed)
        if train.threads > 0:
            torch.set_num_threads(train.threads)
        self.watched = self.watched_speech() if train.watch_voices else {}
        cores = os.cpu_count() or 1
        self.loader_workers = (train.loader_workers if train.loader_workers >= 0 else
                               min(8, cores - 1) if self.device.type == "cuda" else 0)

    def batches(self, source, frames: int, seed: int, augment: bool):
        """Endless batches moved to the device; each pass uses new draws."""
        epoch = 0
        while True:
            augmentation = Augment(enabled=augment, band_mask_prob=self.cfg.band_mask_prob,
                                   identity_mix_prob=self.cfg.identity_mix_prob)
            loader = make_loader(source, self.cfg.batch_size, frames, augmentation,
                                 seed=seed * 100_003 + epoch, num_workers=self.loader_workers,
                                 past_s=self.model_config.past_s, future_s=self.model_config.future_s,
                                 neutral=self.template.vertices)
            for batch in loader:
                if len(batch["audio"]) == self.cfg.batch_size:
                    yield {k: v.to(self.device) for k, v in batch.items()}
            epoch += 1

    def set_statistics(self, *networks) -> None:
        """Feature, displacement and template statistics from training batches (before any step)."""
        batches = self.batches(self.train_data, self.cfg.segment_frames, seed=999, augment=False)
        audio, displacement = [], []
        for _ in range(self.cfg.stats_batches):
            b = next(batches)
            audio.append(b["audio"].reshape(-1, b["audio"].shape[-1]))
            displacement.append((b["vertices"] - b["template"][:, None]).reshape(-1, *b["template"].shape[1:]))
        audio, displacement = torch.cat(audio), torch.cat(displacement)
        heads = torch.as_tensor(self.train_data.speaker_templates, device=self.device)
        for net in networks:
            spectra = net.audio_encoder.spectra(audio)
            net.audio_encoder.set_feature_stats(spectra.mean(0), spectra.std(0))
            # One scalar spread of the speakers' heads, at least 1 mm (a single speaker has none).
            net.decoder.set_template_stats(heads.mean(0), heads.std(0, correction=0).mean().clamp(min=1e-3))
            if hasattr(net, "expression_encoder"):
                net.expression_encoder.set_vertex_stats(displacement.std(0))

    def watched_speech(self) -> dict[str, list[tuple[torch.Tensor, int, list]]]:
        """{voice: [(log-mel [M, N_MELS], video frames, phones)]} of the val split's first
        watch_sentences sentences in each of cfg.watch_voices; for "real", every clip of real speech."""
        if not hasattr(self.val_data, "phones"):
            raise SystemExit("--watch-voices needs the synthetic corpus's val split (its sentences and phones)")
        sentences = range(min(self.cfg.watch_sentences, len(self.val_data)))
        watched = {}
        for voice in self.cfg.watch_voices.split(","):
            if voice == "espeak":
                spoken = [(self.val_data.utterance_audio(u), self.val_data.phones(u)) for u in sentences]
            elif voice == "real":
                spoken = [(audio, phones) for _, audio, phones in load_real_speech(Path(self.cfg.watch_real_speech))]
            else:
                try:
                    spoken = [(audio, [(p.symbol, p.start, p.end) for p in phones]) for audio, phones in
                              (festival.synthesize(str(self.val_data.texts[u]), voice) for u in sentences)]
                except festival.FestivalError as error:
                    raise SystemExit(f"--watch-voices {voice}: {error}") from error
            watched[voice] = [(log_mel(torch.from_numpy(normalize_loudness(audio))).to(self.device),
                               num_frames(len(audio), self.model_config.fps), phones) for audio, phones in spoken]
        return watched

    @torch.no_grad()
    def watched_closure(self, net: MeshTalk) -> dict[str, float]:
        """{closure_<voice>: % of the watched speech's p/b/m that `net`'s audio path seals,
        closed_elsewhere_<voice>: % of its speech frames away from any p/b/m with closed lips}."""
        net.eval()
        config, head = self.model_config, torch.as_tensor(self.template.vertices, device=self.device)
        scores = {}
        for voice, clips in self.watched.items():
            counts = {}
            for mel, frames, phones in clips:
                windows = frame_windows(mel, frames, config.fps, config.past_s, config.future_s)[None]
                codes = argmax_codes(net.encode(windows, head.expand(1, frames, -1, -1), head))
                metrics.add_sync_scores(counts, metrics.lip_sync_scores(net.decode(codes, head)[0].cpu().numpy(),
                                                                        config.fps, phones, self.template))
            percentages = metrics.sync_percentages(counts)
            for kind in ("closure", "closed_elsewhere"):
                scores[f"{kind}_{voice}"] = percentages[f"{kind}_pct"]
        return scores

    # ------------------------------------------------------------------ one step of each stage

    def stage1_loss(self, net: MeshTalk, b) -> dict[str, torch.Tensor]:
        return stage1_losses(net, b["audio"], b["vertices"], b["template"], self.mouth, self.upper, self.eyelids,
                             self.lip_pairs)

    def regressor_loss(self, net: Regressor, b) -> dict[str, torch.Tensor]:
        pred = net(b["audio"], b["template"])
        return {"reconstruction": reconstruction_loss(pred, b["vertices"]),
                "eyelid": eyelid_loss(pred, b["vertices"], self.eyelids),
                "lip_gap": lip_gap_loss(pred, b["vertices"], *self.lip_pairs)}

    def stage2_loss(self, context: ContextModel, meshtalk: MeshTalk, b) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            codes = meshtalk.encode(b["audio"], b["vertices"], b["template"]).argmax(-1)
            audio_codes = meshtalk.audio_codes(b["audio"])
        return {"nll": context.nll(codes, audio_codes)}

    # ------------------------------------------------------------------ the loop

    def check_resumable(self, path: Path, saved: ModelConfig) -> None:
        """Refuse to resume a stage saved with another architecture or audio window: the weights may
        load (the audio encoder takes any window length) and then train on inputs they never saw."""
        changed = [k for k, v in saved.to_dict().items() if getattr(self.model_config, k) != v]
        if changed:
            was = ", ".join(f"{k}={getattr(saved, k)}" for k in changed)
            now = ", ".join(f"{k}={getattr(self.model_config, k)}" for k in changed)
            raise CheckpointError(f"{path} was trained with {was} but this run asks for {now}: resume with the "
                                  "same options, or pass another --out")

    def run_stage(self, stage: str, net: torch.nn.Module, steps: int, loss_fn, frames: int) -> None:
        path = self.out / f"{stage}.pt"
        optimiser = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=self.cfg.learning_rate)
        step, curves = 0, []
        average = copy.deepcopy(net).requires_grad_(False)  # the EMA of net's weights
        if path.exists():
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.check_resumable(path, ModelConfig.from_dict(json.loads(state["model_config"])))
            net.load_state_dict(state["model"])
            average.load_state_dict(trained_weights(state))
            optimiser.load_state_dict(state["optimizer"])
            step, curves = state["step"], json.loads(state["curves"])
            print(f"{stage}: resuming at step {step} from {path}")
        if step < steps:
            print(f"{stage}: {count_parameters(net, trainable_only=True) / 1e6:.2f} M trainable parameters, "
                  f"{steps} steps on {self.device}")
        train = self.batches(self.train_data, frames, seed=self.cfg.seed + step, augment=self.cfg.augment)
        started, running = time.time(), {}
        while step < steps:
            net.train()
            for group in optimiser.param_groups:
                group["lr"] = self.learning_rate(stage, step, steps)
            batch = next(train)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
                losses = loss_fn(net, batch)
            total = sum(self.loss_weight(k, step) * v for k, v in losses.items())
            optimiser.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            optimiser.step()
            # warm-up: early on the average forgets faster, or a short run would export mostly its random start
            decay = min(self.cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for mean, value in zip(average.parameters(), net.parameters()):
                    mean.lerp_(value, 1.0 - decay)
            step += 1
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + v.item()
            if step % self.cfg.log_every == 0:
                means = {k: v / self.cfg.log_every for k, v in running.items()}
                rate = self.cfg.log_every / (time.time() - started)
                print(f"{stage} {step}/{steps} " + " ".join(f"{k} {v:.3f}" for k, v in means.items())
                      + f"  ({rate:.1f} steps/s)", flush=True)
                curves.append({"step": step, **means})
                running, started = {}, time.time()
            if step % self.cfg.checkpoint_every == 0 or step == steps:
                validation = self.validate(average, loss_fn, frames)
                if stage == "stage1" and self.watched:
                    watched = self.watched_closure(average)
                    print(f"{stage} {step}: audio path seals " + ", ".join(
                        f"{voice} {watched[f'closure_{voice}']} %" for voice in self.watched) + " of p/b/m; lips "
                        "closed away from p/b/m " + ", ".join(
                        f"{voice} {watched[f'closed_elsewhere_{voice}']} %" for voice in self.watched), flush=True)
                    validation.update(watched)
                curves[-1:] = [{**(curves[-1] if curves else {"step": step}),
                                **{f"val_{k}": v for k, v in validation.items()}}]
                torch.save({"model": net.state_dict(), "ema": average.state_dict(), "optimizer": optimiser.state_dict(),
                            "step": step, "curves": json.dumps(curves),
                            "model_config": json.dumps(self.model_config.to_dict())}, path)
                plot_curves(curves, self.out / f"{stage}_curves.png", stage)
        net.load_state_dict(average.state_dict())  # the stage hands on the averaged weights

    def learning_rate(self, stage: str, step: int, steps: int) -> float:
        """Learning rate of `stage` at `step` (0-based count of steps done) in a run of `steps`."""
        anneal = getattr(self.cfg, f"{stage}_anneal_steps")
        done = min(max(step - (steps - anneal), 0) / anneal, 1.0) if anneal > 0 else 0.0
        return self.cfg.learning_rate * (1.0 - (1.0 - self.cfg.anneal_to) * done)

    def loss_weight(self, name: str, step: int) -> float:
        """Weight of loss `name` at `step` (0-based count of steps done); 1 for any loss not listed."""
        cfg = self.cfg
        lip = cfg.lip_weight if step >= cfg.lip_from_step else 0.0
        audio_lip = cfg.lip_weight if step >= cfg.audio_lip_from_step else 0.0
        consistency = cfg.consistency_weight if step >= cfg.consistency_from_step else 0.0
        return {"eyelid": cfg.eyelid_weight, "code_usage": cfg.code_usage_weight, "lip_gap": lip,
                "audio_lip_gap": audio_lip, "mouth_consistency": consistency}.get(name, 1.0)

    @torch.no_grad()
    def validate(self, net, loss_fn, frames: int) -> dict[str, float]:
        net.eval()
        batches = self.batches(self.val_data, frames, seed=12345, augment=False)
        totals: dict[str, float] = {}
        for _ in range(self.cfg.validation_batches):
            for k, v in loss_fn(net, next(batches)).items():
                totals[k] = totals.get(k, 0.0) + float(v) / self.cfg.validation_batches
        return totals


def plot_curves(curves: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    keys = sorted({k for c in curves for k in c if k != "step"})
    closures = [k for k in keys if k.startswith(("val_closure_", "val_closed_elsewhere_"))]  # %, on their own axis
    for key in keys:
        points = [(c["step"], c[key]) for c in curves if c.get(key) is not None]
        if key not in closures and points:
            ax.plot(*zip(*points), label=key, marker="o" if key.startswith("val_") else None)
    ax.set(xlabel="step", ylabel="loss (mm² or nats)", yscale="log", title=title)
    ax.legend(fontsize=7, loc="upper left")
    if closures:
        percent = ax.twinx()
        for key in closures:
            points = [(c["step"], c[key]) for c in curves if c.get(key) is not None]
            percent.plot(*zip(*points), "--s" if "closure" in key else ":^", label=key[len("val_"):] + " (%)")
        percent.set(ylabel="audio path: p/b/m sealed, lips closed elsewhere (%)", ylim=(0, 100))
        percent.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _hearing_tag(key: str, value) -> str:
    """How a changed audio input shows in the model version: "-future200ms", "-smooth400hz"."""
    return f"-smooth{round(value)}hz" if key == "audio_smoothing_hz" else f"-{key[:-2]}{round(value * 1000)}ms"


def _rebuilt(net: torch.nn.Module, config: ModelConfig) -> torch.nn.Module:
    """A network of net's class built for `config`, holding net's weights and statistics."""
    rebuilt = type(net)(config)
    rebuilt.load_state_dict(net.state_dict())
    return rebuilt


def train(cfg: TrainConfig, model_config: ModelConfig | None, stages: list[str], export: Path | None,
          init: Path | None = None, hearing: dict | None = None) -> None:
    """Run `stages` in order, from a random start with `model_config`'s architecture, or from the
    shipped checkpoint `init` (fine-tuning; its own architecture, `model_config` unused). `hearing`
    replaces what that architecture hears: its audio window ({"past_s": s, "future_s": s}) and its
    band smoothing ({"audio_smoothing_hz": hz}), any of them; the audio encoder takes windows of any
    length (its convolutions keep the length, then it averages over time) and 80 bins either way,
    so a fine-tuned checkpoint adapts to the new input."""
    widened = "".join(_hearing_tag(k, v) for k, v in sorted((hearing or {}).items()))
    if init is not None:
        model_config, meshtalk, context, info = load_checkpoint(init)
        template_vertices = load_template().num_vertices
        if model_config.num_vertices != template_vertices:
            raise CheckpointError(f"{init} was trained for {model_config.num_vertices} vertices, the template has "
                                  f"{template_vertices}")
        if hearing and "stage1" not in stages:
            raise CheckpointError("a new audio window or smoothing changes the audio codes: fine-tune stage 1 "
                                  "with it (--stage all or stage1)")
        tuned = f"s1_{cfg.stage1_steps}-" if "stage1" in stages else ""
        version = f"{info['model_version']}+{tuned}s2_{cfg.stage2_steps}{widened}-seed{cfg.seed}"
        print(f"fine-tuning {init} ({info['model_version']})")
        # the checkpoint has been through the loss schedule: every loss from step 0
        cfg = replace(cfg, lip_from_step=0, audio_lip_from_step=0, consistency_from_step=0)
    model_config = replace(model_config, **(hearing or {}))
    trainer = Trainer(cfg, model_config)
    if init is not None:  # rebuilt for the new input: the band smoothing is a buffer made from the config
        meshtalk, context = (_rebuilt(net, model_config).to(trainer.device) for net in (meshtalk, context))
    else:
        version = f"meshtalk-s1_{cfg.stage1_steps}-s2_{cfg.stage2_steps}{widened}-seed{cfg.seed}"
        meshtalk, context = MeshTalk(model_config).to(trainer.device), None
        if "stage1" in stages or "stage2" in stages:
            trainer.set_statistics(meshtalk)
    if "stage1" in stages or ("stage2" in stages and init is None):
        trainer.run_stage("stage1", meshtalk, cfg.stage1_steps, trainer.stage1_loss, cfg.segment_frames)
    if "stage2" in stages:
        meshtalk.requires_grad_(False).eval()
        context = context if context is not None else ContextModel(model_config).to(trainer.device)
        trainer.run_stage("stage2", context, cfg.stage2_steps,
                          lambda net, b: trainer.stage2_loss(net, meshtalk, b), cfg.context_segment_frames)
        if export is not None:
            save_checkpoint(export, model_config, meshtalk, context,
                            {"model_version": version, "train_config": asdict(cfg),
                             "init": str(init) if init is not None else None,
                             "corpus_seconds": round(trainer.train_data.seconds, 1)})
            print(f"wrote {export} ({export.stat().st_size / 1e6:.1f} MB)")
    if "regressor" in stages:
        regressor = Regressor(model_config).to(trainer.device)
        trainer.set_statistics(regressor)
        trainer.run_stage("regressor", regressor, cfg.regressor_steps, trainer.regressor_loss, cfg.segment_frames)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train MeshTalk (both stages) and the regression baseline.")
    defaults = TrainConfig()
    for name, value in asdict(defaults).items():
        kind = type(value)
        if kind is bool:
            parser.add_argument(f"--{name.replace('_', '-')}", type=lambda s: s.lower() in ("1", "true", "yes"),
                                default=value)
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value)
    parser.add_argument("--stage", choices=[*STAGES, "all"], default="all",
                        help="all = stage1 + stage2 (+ export) + regressor; with --init, stage1 + stage2 (+ export): "
                             "a shipped checkpoint holds no regressor to tune")
    parser.add_argument("--export", type=Path, default=DEFAULT_CHECKPOINT, help="shipped checkpoint to write")
    parser.add_argument("--init", type=Path, help="fine-tune this shipped checkpoint instead of starting at random")
    parser.add_argument("--past-s", type=float, help="audio context before each frame, s (default: the model's)")
    parser.add_argument("--future-s", type=float, help="audio context after each frame, s (default: the model's)")
    parser.add_argument("--audio-smoothing-hz", type=float,
                        help="average each mel band's power over this many Hz (default: the model's, none)")
    args = vars(parser.parse_args(argv))
    stage, export, init = args.pop("stage"), args.pop("export"), args.pop("init")
    hearing = {k: v for k in ("past_s", "future_s", "audio_smoothing_hz") if (v := args.pop(k)) is not None}
    cfg = replace(defaults, **args)
    stages = [stage] if stage != "all" else ["stage1", "stage2"] if init is not None else list(STAGES)
    model_config = None if init is not None else ModelConfig(num_vertices=load_template().num_vertices)
    try:
        train(cfg, model_config, stages, export, init, hearing)
    except CheckpointError as error:
        raise SystemExit(str(error)) from error

if __name__ == "__main__":
    main()
