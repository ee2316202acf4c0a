"""An offline language-model study of weight selection at CPU scale (issue: transformers models).

1. :func:`load_corpus`: the Python standard library's own ``.py`` files as bytes (vocabulary: the
   256 byte values), split by file into the teacher's text, the students' training text and the
   validation text (a file's split is a hash of its relative path, so it does not move when other
   files come and go);
2. :func:`pretrain_teacher`: a small causal LM of one family (:data:`FAMILIES`: Llama, or Qwen3,
   which adds per-head ``q_norm``/``k_norm``; both with GQA, RoPE, tied embeddings and the same
   sizes) trained on the teacher's text and saved with ``save_pretrained``;
3. :func:`make_init`: a half-width student (half the hidden size, heads, KV groups and MLP width;
   same depth and head dimension) initialized by weight selection (:func:`weightselect.hf.select`:
   uniform, or activation-ranked on windows of the students' training text) or at random (the
   architecture's own init, seeded);
4. :func:`train_student`: each student trained the same budget on the students' text, its loss
   curve and the validation perplexity (per byte) written as JSON;
5. :func:`summarize` and :func:`plot_curves`: the table (per family and init: mean and std over
   seeds) and the figure (one panel per family).

:func:`run_study` runs them in order for each family in ``LMStudyConfig.families`` (into
``OUT/{family}/``) and skips finished steps (every output is written atomically).
``python -m weightselect.hf.lm_study OUT_DIR`` is the command line.
"""
from __future__ import annotations

import argparse
import math
import sys
import sysconfig
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from weightselect.io import read_json, write_json

__all__ = [
    "LMStudyConfig", "load_corpus", "pretrain_teacher", "make_init", "train_student", "summarize",
    "plot_curves", "report", "run_study", "calibration_windows", "INITS", "FAMILIES",
]

INITS = ("selection", "activation", "random")
# family (the teacher's transformers model_type) -> its causal-LM class in transformers
FAMILIES = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}


@dataclass
class LMStudyConfig:
    """Sizes of the study (defaults: a few minutes on a 2-core CPU)."""

    teacher: Dict[str, int] = field(default_factory=lambda: dict(
        hidden_size=64, intermediate_size=172, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16))
    seq_len: int = 64
    batch_size: int = 8
    teacher_steps: int = 300
    teacher_lr: float = 3e-3
    student_steps: int = 150
    student_lr: float = 3e-3
    eval_every: int = 15
    eval_batches: int = 4
    seeds: Sequence[int] = (0, 1, 2)
    families: Sequence[str] = ("llama", "qwen3")
    max_bytes: Dict[str, int] = field(default_factory=lambda: dict(teacher=4 << 20, student=1 << 20, val=256 << 10))
    threads: int = 1  # tiny matrices: a second thread costs more than it gives on a busy 2-core CPU
    calibration_samples: int = 64  # init "activation": windows of seq_len bytes of the students' text

    def student_overrides(self) -> Dict[str, int]:
        """Half width: hidden size, heads, KV groups and MLP width halved; depth and head_dim kept."""
        t = self.teacher
        keys = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")
        return {k: t[k] // 2 for k in keys}


def _split_of(rel: str) -> str:
    bucket = zlib.crc32(rel.encode()) % 10
    return "teacher" if bucket < 7 else "student" if bucket < 9 else "val"


def load_corpus(cfg: LMStudyConfig, root: Optional[Path] = None) -> Dict[str, torch.Tensor]:
    """``{"teacher", "student", "val"}`` -> uint8 tensors of the standard library's source bytes
    (files in sorted order, each split capped at ``cfg.max_bytes``). Raises FileNotFoundError when
    the standard library has no ``.py`` files (a zipped stdlib)."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and "test" not in p.parts)
    if not files:
        raise FileNotFoundError(f"no .py files under {root}: the LM study reads the standard library's sources")
    parts: Dict[str, List[bytes]] = {"teacher": [], "student": [], "val": []}
    sizes = dict.fromkeys(parts, 0)
    for path in files:
        split = _split_of(path.relative_to(root).as_posix())
        if sizes[split] >= cfg.max_bytes[split]:
            continue
        data = path.read_bytes()
        parts[split].append(data)
        sizes[split] += len(data)
    return {k: torch.frombuffer(bytearray(b"".join(v)[: cfg.max_bytes[k]]), dtype=torch.uint8).long()
            for k, v in parts.items()}


def _batch(data: torch.Tensor, cfg: LMStudyConfig, gen: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, len(data) - cfg.seq_len - 1, (cfg.batch_size,), generator=gen)
    return torch.stack([data[s: s + cfg.seq_len] for s in starts.tolist()])


@torch.no_grad()
def evaluate(model, data: torch.Tensor, cfg: LMStudyConfig) -> float:
    """Mean next-byte cross-entropy (nats) over ``eval_batches`` fixed batches of ``data``."""
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    losses = [float(model(ids, labels=ids).loss) for ids in (_batch(data, cfg, gen) for _ in range(cfg.eval_batches))]
    model.train()
    return sum(losses) / len(losses)


def _train(model, data: torch.Tensor, val: torch.Tensor, cfg: LMStudyConfig, steps: int, lr: float, seed: int) -> Dict:
    """AdamW with linear warmup (5%) and cosine decay; the curve holds (step, train, val) losses."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    curve = [{"step": 0, "train_loss": None, "val_loss": evaluate(model, val, cfg)}]
    model.train()
    running, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        ids = _batch(data, cfg, gen)
        loss = model(ids, labels=ids).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running.append(loss.detach().item())
        if step % cfg.eval_every == 0 or step == steps:
            train_loss = sum(running) / len(running)
            curve.append({"step": step, "train_loss": train_loss, "val_loss": evaluate(model, val, cfg)})
            running = []
    return {"curve": curve, "seconds": time.perf_counter() - start}


def _model_class(family: str):
    """The causal-LM class of ``family``; ValueError names the families the study knows."""
    import transformers

    if family not in FAMILIES:
        raise ValueError(f"unknown LM study family '{family}'; choose from {', '.join(FAMILIES)}")
    return getattr(transformers, FAMILIES[family])


def _teacher_config(cfg: LMStudyConfig, family: str = "llama"):
    from transformers import AutoConfig

    _model_class(family)  # refuses an unknown family before building anything
    config = AutoConfig.for_model(family, vocab_size=256, tie_word_embeddings=True,
                                  max_position_embeddings=cfg.seq_len, bos_token_id=None, eos_token_id=None,
                                  pad_token_id=None, **cfg.teacher)
    config.architectures = [FAMILIES[family]]
    return config


def _save_model(model, out: Path, extra: Optional[Dict] = None) -> Path:
    """``save_pretrained`` into a temp folder beside ``out``, then renamed (never half-written)."""
    import shutil
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        if extra is not None:
            write_json(tmp / "train.json", extra)
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def pretrain_teacher(cfg: LMStudyConfig, corpus: Dict[str, torch.Tensor], out: Path, family: str = "llama") -> Path:
    """Train a ``family`` teacher (a key of :data:`FAMILIES`; ``cfg.teacher`` sizes, vocabulary of
    256 bytes) on the teacher split and save it (``save_pretrained``) to ``out``, with its curve in
    ``out/train.json``. Skipped when ``out/train.json`` exists. Raises ValueError for an unknown
    family."""
    out = Path(out)
    if (out / "train.json").is_file():
        return out
    config = _teacher_config(cfg, family)
    torch.manual_seed(0)
    model = _model_class(family)(config)
    log = _train(model, corpus["teacher"], corpus["val"], cfg, cfg.teacher_steps, cfg.teacher_lr, seed=0)
    return _save_model(model, out, {**log, "params": sum(p.numel() for p in model.parameters())})


def make_init(teacher_dir: Path, cfg: LMStudyConfig, init: str, seed: int, out: Path,
              corpus: Optional[Dict[str, torch.Tensor]] = None) -> Path:
    """The half-width student's starting weights in ``out``: ``selection`` (uniform element
    selection, first-N layers: the same depth), ``activation`` (every axis's units of largest mean
    |activation| of the teacher on :func:`calibration_windows` of the students' training text, drawn
    with ``seed``; ``corpus`` is loaded when not given) or ``random`` (the architecture's init,
    seeded); the family is the teacher's. Raises ValueError for an unknown init or family."""
    import transformers

    out = Path(out)
    if (out / "config.json").is_file():
        return out
    if init in ("selection", "activation"):
        from weightselect.hf import select

        if init == "selection":
            return select(teacher_dir, cfg.student_overrides(), method="uniform", seed=seed).save(out)
        cal = calibration_windows(corpus if corpus is not None else load_corpus(cfg), cfg, seed)
        return select(teacher_dir, cfg.student_overrides(), method="activation", seed=seed,
                      calibration=cal).save(out)
    if init != "random":
        raise ValueError(f"unknown init '{init}'; choose one of {', '.join(INITS)}")
    config = transformers.AutoConfig.from_pretrained(teacher_dir)
    for key, value in cfg.student_overrides().items():
        setattr(config, key, value)
    model_class = _model_class(config.model_type)
    torch.manual_seed(seed)
    return _save_model(model_class(config), out)


def calibration_windows(corpus: Dict[str, torch.Tensor], cfg: LMStudyConfig, seed: int):
    """Init ``activation``'s calibration data: ``cfg.calibration_samples`` windows of ``cfg.seq_len``
    bytes ``(N, seq_len)`` int64, their starts drawn uniformly (seeded by ``seed``) from the students'
    training text (never the validation text). Raises ValueError when that text is shorter than a
    window or ``calibration_samples`` is not positive."""
    from weightselect.selection.importance import Calibration

    text = corpus["student"]
    if int(cfg.calibration_samples) < 1:
        raise ValueError(f"calibration_samples {cfg.calibration_samples}: give a positive number of windows")
    if len(text) < cfg.seq_len:
        raise ValueError(f"the students' text holds {len(text)} bytes, fewer than one window of {cfg.seq_len}: "
                         "raise max_bytes['student'] or lower seq_len")
    gen = torch.Generator().manual_seed(int(seed))
    starts = torch.randint(0, len(text) - cfg.seq_len + 1, (int(cfg.calibration_samples),), generator=gen)
    data = torch.stack([text[s: s + cfg.seq_len] for s in starts.tolist()])
    return Calibration(data, {"source": "lm study: students' training text", "seed": int(seed),
                              "length": int(cfg.seq_len)}, batch_size=cfg.batch_size)


def train_student(init_dir: Path, corpus: Dict[str, torch.Tensor], cfg: LMStudyConfig, seed: int, out: Path,
                  init: str = "") -> Dict:
    """Train the student in ``init_dir`` on the students' split; write and return its log
    (``curve``, ``val_loss``, ``val_ppl`` per byte, ``seconds``, ``seed``, ``init``, ``family``: the
    model type). Skipped when ``out`` exists."""
    from transformers import AutoModelForCausalLM

    out = Path(out)
    if out.is_file():
        return read_json(out)
    model = AutoModelForCausalLM.from_pretrained(init_dir)
    log = _train(model, corpus["student"], corpus["val"], cfg, cfg.student_steps, cfg.student_lr, seed=seed)
    final = evaluate(model, corpus["val"], LMStudyConfig(**{**asdict(cfg), "eval_batches": 4 * cfg.eval_batches}))
    log.update(val_loss=final, val_ppl=math.exp(final), seed=seed, init=init or Path(init_dir).name,
               family=model.config.model_type)
    write_json(out, log)
    return log


def summarize(logs: Sequence[Dict], teacher_ppl: Optional[Dict[str, float]] = None):
    """Validation perplexity per byte for each family and init, in the logs' order: mean and std
    over seeds, the mean validation loss at step 0 (nats per byte), the number of seeds and, when
    ``teacher_ppl`` maps families to it, the full-width teacher's perplexity (a pandas DataFrame)."""
    import pandas as pd

    df = pd.DataFrame([{"family": r["family"], "init": r["init"], "seed": r["seed"],
                        "val_ppl": r["val_ppl"], "start_val_loss": r["curve"][0]["val_loss"]} for r in logs])
    table = df.groupby(["family", "init"], sort=False).agg(
        val_ppl_mean=("val_ppl", "mean"), val_ppl_std=("val_ppl", "std"),
        start_val_loss=("start_val_loss", "mean"), seeds=("seed", "count")).reset_index()
    if teacher_ppl is not None:
        table["teacher_val_ppl"] = table["family"].map(teacher_ppl)
    return table


def plot_curves(logs: Sequence[Dict], path: Path, teacher_ppl: Optional[Dict[str, float]] = None) -> Path:
    """Validation loss (nats per byte) against training step, one panel per family and one line per
    init (mean over seeds, band = min..max); ``teacher_ppl`` (family -> perplexity) adds the
    teacher's level as a dashed line. Written atomically to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    families = list(dict.fromkeys(r["family"] for r in logs))
    fig, axes = plt.subplots(1, len(families), figsize=(5.5 * len(families), 4), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], families):
        runs_of = [r for r in logs if r["family"] == family]
        for init in sorted({r["init"] for r in runs_of}):
            runs = [r for r in runs_of if r["init"] == init]
            steps = [p["step"] for p in runs[0]["curve"]]
            vals = np.array([[p["val_loss"] for p in r["curve"]] for r in runs])
            ax.plot(steps, vals.mean(0), label=f"{init} ({len(runs)} seeds)")
            ax.fill_between(steps, vals.min(0), vals.max(0), alpha=0.25)
        if teacher_ppl and family in teacher_ppl:
            ax.axhline(math.log(teacher_ppl[family]), color="gray", ls="--", label="teacher (full width)")
        ax.set_xlabel("training step")
        ax.set_title(f"half-width {family} student")
        ax.legend()
    axes[0][0].set_ylabel("validation loss (nats per byte)")
    fig.suptitle("Weight selection (uniform, activation-ranked) vs random init on stdlib source bytes")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def report(logs: Sequence[Dict], teachers: Dict[str, Path], out: Path) -> Dict:
    """Write ``table.csv``, ``table.md`` and ``curves.png`` into ``out`` from the students' logs and
    each family's teacher folder (``teachers``: family -> folder holding ``train.json``); returns the
    summary (table records, each teacher's parameters and validation perplexity, the figure's path)."""
    from weightselect.io import write_text

    out = Path(out)
    teacher_info = {}
    for family, folder in teachers.items():
        log = read_json(Path(folder) / "train.json")
        teacher_info[family] = {"params": log["params"], "val_ppl": math.exp(log["curve"][-1]["val_loss"])}
    teacher_ppl = {f: t["val_ppl"] for f, t in teacher_info.items()}
    table = summarize(logs, teacher_ppl)
    notes = "".join(f"\n{f} teacher: {t['params']} parameters, validation perplexity {t['val_ppl']:.3f}"
                    for f, t in teacher_info.items())
    write_text(out / "table.csv", table.to_csv(index=False))
    write_text(out / "table.md", table.to_markdown(index=False, floatfmt=".3f") + "\n" + notes + "\n")
    figure = plot_curves(logs, out / "curves.png", teacher_ppl)
    return {"teachers": teacher_info, "table": table.to_dict(orient="records"), "figure": str(figure)}


def run_study(out: Path, cfg: Optional[LMStudyConfig] = None) -> Dict:
    """All steps into ``out``, per family: ``{family}/teacher/``, ``{family}/inits/{init}_seed{s}/``,
    ``{family}/runs/{init}_seed{s}.json``; then ``table.csv``, ``table.md``, ``curves.png`` and
    ``study.json``. Finished steps are skipped. Raises ValueError for an unknown family."""
    cfg = cfg or LMStudyConfig()
    for family in cfg.families:
        _model_class(family)  # an unknown family fails before any training
    torch.set_num_threads(cfg.threads)
    out = Path(out)
    corpus = load_corpus(cfg)
    teachers, logs = {}, []
    for family in cfg.families:
        teachers[family] = pretrain_teacher(cfg, corpus, out / family / "teacher", family)
        for seed in cfg.seeds:
            for init in INITS:
                name = f"{init}_seed{seed}"
                init_dir = make_init(teachers[family], cfg, init, seed, out / family / "inits" / name, corpus)
                logs.append(train_student(init_dir, corpus, cfg, seed, out / family / "runs" / f"{name}.json", init))
    summary = report(logs, teachers, out)
    summary.update(config=asdict(cfg), python=sys.version.split()[0],
                   corpus_bytes={k: len(v) for k, v in corpus.items()})
    write_json(out / "study.json", summary)
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Offline LM study: weight selection (uniform, activation-ranked) vs random init for a "
                    "half-width student.")
    parser.add_argument("out", help="output folder (finished steps are reused)")
    parser.add_argument("--teacher-steps", type=int, default=None)
    parser.add_argument("--student-steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--calibration-samples", type=int, default=None, metavar="N",
                        help="init activation: windows of the students' text it ranks units on (default 64)")
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=None,
                        help="teacher families (default: all of them)")
    args = parser.parse_args(argv)
    cfg = LMStudyConfig()
    for key in ("teacher_steps", "student_steps", "seeds", "families", "calibration_samples"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    summary = run_study(Path(args.out), cfg)
    print(Path(args.out, "table.md").read_text())
    print(f"figure: {summary['figure']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
