"""The listener built on the CTC model: the CTC model, unchanged, plus a voice classifier's soft word.

The acoustic control fine-tuned from the continuous model (``casceq.train.emotion``) reads the voice but lost
the text skill its claims are gated on. This listener keeps the CTC model's token path exactly (its weights
and segmentation are copied) and adds, after each 30-s chunk's tokens, one embedding that carries the voice: a
linear classifier of the mean and standard deviation of the chunk's Whisper-base encoder frames, fitted on the
gold emotion labels of RAVDESS *training actors* only (``ACTOR_SPLITS["train"]``, actors 1-16), whose posterior
weights the input embeddings of the ``ravdess`` task's option words (``ultravox_projector``'s voice
classifier). No backbone weight and no token-path weight is trained, so its text interface is the CTC model's
by construction, and on held-out actors it hears what the words cannot say: its expected verdict on the
text-insufficient claim is "departs from the cascade".

The classifier is multinomial logistic regression (L-BFGS) on standardised statistics; its L2 strength is chosen
by actor-grouped cross-validation over the training actors (``VoiceConfig.folds`` folds of whole actors), so
no held-out actor is seen by any choice. The checkpoint records the cross-validated accuracies and the training
clips' ids (``training_ids.txt``): a run evaluating any of them is refused (``casceq.run.leakage``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import InputError
from casceq.run.leakage import TRAINING_TEXTS_FILE, write_training_ids
from casceq.systems.speech_llm.shipped import checkpoint_folder
from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend
from casceq.systems.speech_llm.ultravox_projector import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    build_projector,
    read_checkpoint_record,
    voice_stats,
)
from casceq.train.emotion import answer_parts, load_for_fitting, ravdess_clips


@dataclass(frozen=True)
class VoiceConfig:
    """The listener's voice classifier.

    Attributes:
        split: RAVDESS actor split fitted on (``casceq.tasks.speech_loaders.ACTOR_SPLITS``).
        l2: L2 strengths tried (on the weights, per clip); the best by actor-grouped cross-validation is used.
        folds: Cross-validation folds of whole actors.
        temperature: Divides the classifier's logits before they weight the option words (1: its posterior).
        max_iter: L-BFGS iterations per fit.
    """

    split: str = "train"
    l2: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    folds: int = 4
    temperature: float = 1.0
    max_iter: int = 500


def actor_of(example_id: str) -> int:
    """The actor number of a RAVDESS clip id (``MM-VV-EE-II-SS-RR-AA``)."""
    return int(example_id.rsplit("-", 1)[-1])


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale (standard deviation, 1 where it is 0) of the rows of ``x``."""
    mean = x.mean(0)
    scale = x.std(0)
    return mean, np.where(scale > 1e-8, scale, 1.0)


def logits(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The classifier's logits [n, classes] of raw statistics ``x`` [n, d] (standardised with ``mean``, ``scale``)."""
    return ((x - mean) / scale) @ w.T + b


def fit_logistic(
    x: np.ndarray, y: np.ndarray, classes: int, l2: float, max_iter: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: (W [classes, d], b [classes]) minimising mean CE + l2·||W||²."""
    import torch

    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.long)
    w = torch.zeros(classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optim = torch.optim.LBFGS(
        [w, b], max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def closure() -> Any:
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w.T + b, yt) + l2 * (w**2).sum()
        loss.backward()
        return loss

    optim.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def grouped_cv(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, classes: int, cfg: VoiceConfig
) -> dict[float, float]:
    """Accuracy of each L2 strength over ``cfg.folds`` folds of whole groups (standardised inside each fold)."""
    order = np.unique(groups)
    if len(order) < cfg.folds:
        raise InputError(f"{len(order)} actors cannot make {cfg.folds} actor-disjoint folds")
    fold_of = {g: i % cfg.folds for i, g in enumerate(order)}
    fold = np.array([fold_of[g] for g in groups])
    out = {}
    for l2 in cfg.l2:
        right = 0
        for k in range(cfg.folds):
            train, test = fold != k, fold == k
            mean, scale = standardiser(x[train])
            w, b = fit_logistic((x[train] - mean) / scale, y[train], classes, l2, cfg.max_iter)
            right += int((logits(x[test], mean, scale, w, b).argmax(1) == y[test]).sum())
        out[l2] = right / len(y)
    return out


def add_voice(
    backend: UltravoxNativeBackend,
    word_ids: Sequence[int],
    weight: np.ndarray,
    bias: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    temperature: float = 1.0,
) -> None:
    """Give ``backend``'s CTC projector a voice classifier over ``word_ids`` (token path copied unchanged)."""
    import torch

    old = backend.projector
    if old.config.head != "ctc":
        raise InputError("a voice classifier is added to a 'ctc'-head projector (the CTC model)")
    cfg = dataclasses.replace(old.config, voice_classes=len(word_ids), voice_temperature=float(temperature))
    projector = build_projector(cfg)
    state = {k: v for k, v in old.state_dict().items() if not k.startswith("voice")}
    missing, unexpected = projector.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"voice.weight", "voice.bias", "voice_ids", "voice_mean", "voice_scale"}:
        raise InputError(f"unexpected projector layout (missing {missing}, unexpected {unexpected})")
    with torch.no_grad():
        projector.voice.weight.copy_(torch.as_tensor(weight))
        projector.voice.bias.copy_(torch.as_tensor(bias))
        projector.voice_ids.copy_(torch.as_tensor(list(word_ids), dtype=torch.long))
        projector.voice_mean.copy_(torch.as_tensor(mean))
        projector.voice_scale.copy_(torch.as_tensor(scale))
    backend.projector = projector.to(backend.model.device, backend.model.dtype).eval()
    backend._attach_table(backend.model)


def keep_token_path(projector: Any, source: Path) -> None:
    """Store the token path as ``source`` stores it (its dtypes), checking it is bit for bit unchanged.

    The voice classifier stays float32, as fitted (16 KB more; rounded to bfloat16, as a bf16 backbone would read it,
    its posteriors on the training clips move by at most 0.01).

    Raises:
        InputError: A token-path tensor differs from ``source`` (the listener must read words as the CTC model).
    """
    import torch
    from safetensors.torch import load_file

    src = load_file(str(source))
    mine = projector.state_dict(keep_vars=True)
    if set(src) != {k for k in mine if not k.startswith("voice")}:
        raise InputError("the token path's tensors differ from the CTC checkpoint's", path=str(source))
    with torch.no_grad():
        for name, ref in src.items():
            mine[name].data = mine[name].data.to(ref.dtype)
            if not torch.equal(mine[name].data, ref):
                raise InputError(
                    f"token-path tensor {name} differs from the CTC checkpoint's", path=str(source)
                )


def clip_features(clips: Sequence[tuple[Any, int, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(statistics [n, 2D], labels [n], actors [n]) of ``ravdess_clips`` output."""
    x = np.stack([voice_stats(f).numpy() for f, _, _ in clips]).astype(np.float64)
    y = np.array([label for _, label, _ in clips])
    actors = np.array([actor_of(i) for _, _, i in clips])
    return x, y, actors


def train_listener(
    model: str | Path,
    out: Path,
    cfg: VoiceConfig,
    *,
    progress: Callable[[str], None] = print,
) -> Path:
    """Fit the voice classifier on ``cfg.split`` and export the CTC checkpoint ``model`` with it to ``out/model``."""
    model = checkpoint_folder(str(model))  # a shipped name ("bundled") or a checkpoint folder
    record = read_checkpoint_record(model)
    if (record.get("projector") or {}).get("head") != "ctc":
        raise InputError(
            "the listener is built on a CTC-head checkpoint (ultravox-native:bundled)", path=str(model)
        )
    backend = load_for_fitting(model, record)
    out.mkdir(parents=True, exist_ok=True)
    clips = ravdess_clips(backend, cfg.split, out, progress)
    words = answer_parts(backend)[2]
    x, y, actors = clip_features(clips)
    cv = grouped_cv(x, y, actors, len(words), cfg)
    best = max(cfg.l2, key=lambda v: (cv[v], v))  # ties: the stronger penalty
    progress("listener: actor-grouped CV accuracy " + ", ".join(f"l2 {k:g}: {v:.3f}" for k, v in cv.items()))
    mean, scale = standardiser(x)
    weight, bias = fit_logistic((x - mean) / scale, y, len(words), best, cfg.max_iter)
    train_acc = float((logits(x, mean, scale, weight, bias).argmax(1) == y).mean())
    add_voice(backend, words, weight, bias, mean, scale, cfg.temperature)
    keep_token_path(backend.projector, Path(model) / WEIGHTS_FILE)
    folder = out / "model"
    backend.save(folder)
    rec = json.loads((folder / CONFIG_FILE).read_text())
    rec["training"] = {
        **record.get("training", {}),
        "listener": {
            **asdict(cfg),
            "clips": len(clips),
            "actors": sorted(int(a) for a in set(actors.tolist())),
            "chosen_l2": best,
            "cv_accuracy": {f"{k:g}": v for k, v in cv.items()},
            "train_accuracy": train_acc,
            "words": [backend.tokenizer.decode([w]) for w in words],
        },
    }
    (folder / CONFIG_FILE).write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    if (Path(model) / TRAINING_TEXTS_FILE).is_file():
        shutil.copyfile(Path(model) / TRAINING_TEXTS_FILE, folder / TRAINING_TEXTS_FILE)
    write_training_ids(folder, "ravdess", [i for _, _, i in clips])
    return folder
