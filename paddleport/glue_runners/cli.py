"""``paddleport run-glue`` and ``paddleport train-parity`` (argparse only; the work is in the library)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from paddleport.cli import run_command
from paddleport.registry import help_epilog

SUBCOMMANDS = ("run-glue", "train-parity")


def _add_run_glue(subparsers) -> None:
    from paddleport.dropout_masks import MODES as DROPOUT_MASK_MODES
    from paddleport.glue_runners.backends.base import AMP_MODES
    from paddleport.glue_runners.distributed import SHARDING_MODES
    from paddleport.glue_runners.tasks import GLUE_TASKS

    parser = subparsers.add_parser("run-glue", epilog=help_epilog(),
                                   help="fine-tune and evaluate on a GLUE task with torch or Paddle",
                                   description="Fine-tune a BERT-family model on a GLUE task (default: the embedded "
                                               "QQP sample) with PyTorch or PaddlePaddle, one shared pipeline; "
                                               "also data-parallel under torchrun --nproc_per_node N or "
                                               "python -m paddle.distributed.launch --nproc_per_node N.")
    parser.add_argument("--framework", required=True, choices=("torch", "paddle"))
    parser.add_argument("--model", required=True, type=Path,
                        help="Hugging Face checkpoint directory, or a Paddle one written by paddleport convert")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--task", default="qqp", help=f"GLUE task: {', '.join(GLUE_TASKS)} (default qqp)")
    data = parser.add_argument_group("data (default: the embedded QQP sample)")
    data.add_argument("--data-dir", type=Path, help="GLUE-format TSVs: train.tsv, dev.tsv (MNLI: dev_matched.tsv, "
                                                    "dev_mismatched.tsv), optional test.tsv")
    data.add_argument("--train-file", type=Path, help="CSV / JSON lines training file (read with datasets)")
    data.add_argument("--validation-file", type=Path, help="CSV / JSON lines evaluation file")
    data.add_argument("--test-file", type=Path, help="CSV / JSON lines unlabelled file for --do-predict")
    data.add_argument("--from-hub", action="store_true", help='datasets.load_dataset("glue", TASK) (hub or cache)')
    data.add_argument("--tokenizer", type=Path, help="tokenizer directory (default: the model's)")
    data.add_argument("--cache-dir", type=Path, help="tokenized-feature cache (default OUTPUT_DIR/cache)")
    data.add_argument("--max-train-samples", type=int)
    data.add_argument("--max-eval-samples", type=int)
    data.add_argument("--max-length", type=int,
                      help="tokens per example (default 128, or the model's max_position_embeddings if fewer)")
    data.add_argument("--group-by-length", action="store_true", help="batch examples of similar length together")
    train = parser.add_argument_group("training")
    train.add_argument("--batch-size", type=int, default=32,
                       help="global micro-batch: under torchrun / paddle.distributed.launch each of the N processes "
                            "takes BATCH_SIZE/N of it (must divide); samples per optimizer step = BATCH_SIZE x "
                            "GRAD_ACCUM, the same for any N")
    train.add_argument("--eval-batch-size", type=int, help="default: twice --batch-size")
    train.add_argument("--lr", type=float, default=5e-5)
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (also sizes the schedule)")
    train.add_argument("--warmup-ratio", type=float, default=0.1)
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    train.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping (0: off)")
    train.add_argument("--amp", choices=AMP_MODES, default="none", help="mixed precision (fp16 with loss scaling)")
    train.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    train.add_argument("--sharding", choices=SHARDING_MODES, default="none",
                       help="under a distributed launch: zero1 (torch ZeroRedundancyOptimizer, Paddle group_sharded "
                            "'os'), zero2 (torch FSDP2 without resharding, Paddle 'os_g'), fsdp (torch FSDP2)")
    train.add_argument("--gradient-checkpointing", action="store_true")
    train.add_argument("--dropout-masks", choices=DROPOUT_MASK_MODES, default="native",
                       help="native (default): the framework's own random generator, a stock fine-tune; shared: the "
                            "masks the other framework draws for the same seed, so torch and Paddle runs train alike, "
                            "at a cost: torch runs BERT's attention eagerly instead of SDPA, and every dropout "
                            "computes int64 temporaries per element")
    train.add_argument("--num-threads", type=int, help="CPU threads of the framework (default: the cores this process "
                                                       "may use: affinity, cgroup quota, physical cores; or "
                                                       "OMP_NUM_THREADS)")
    loop = parser.add_argument_group("evaluation and checkpoints")
    loop.add_argument("--eval-steps", type=int, default=0, help="also evaluate every N steps (0: each epoch only)")
    loop.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: each epoch only)")
    loop.add_argument("--save-total-limit", type=int, default=2, help="checkpoints kept")
    loop.add_argument("--early-stopping-patience", type=int, default=0,
                      help="stop after N evaluations without improvement (0: off)")
    loop.add_argument("--metric-for-best", help="default: the task's metric (QQP/MRPC acc_and_f1, CoLA Matthews...)")
    loop.add_argument("--do-predict", action="store_true", help="write GLUE submission TSVs for the test set")
    loop.add_argument("--overwrite", action="store_true", help="replace a run already in --output-dir")
    loop.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint")
    loop.add_argument("--stop-after-steps", type=int,
                      help="testing aid: stop as if killed after N optimizer steps (then --resume)")
    loop.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm progress bars")
    _add_peft_options(parser)
    parser.set_defaults(func=run_glue_command)


def _add_peft_options(parser) -> None:
    from paddleport.peft.lora import BIAS_MODES
    from paddleport.peft.methods import PEFT_METHODS
    from paddleport.peft.prompt import ENCODER_TYPES, PROMPT_INITS

    peft = parser.add_argument_group("parameter-efficient fine-tuning (the same meaning in both frameworks)")
    peft.add_argument("--peft", choices=PEFT_METHODS, default="none",
                      help="train an adapter and the classifier (modules_to_save) instead of the model (torch: Hugging "
                           "Face peft; Paddle: paddleport.peft's layers), saved as a peft adapter directory: lora, "
                           "prompt (prompt tuning: virtual tokens prepended to the input embeddings) or p-tuning "
                           "(virtual tokens from an MLP/LSTM prompt encoder); adapter: bottleneck adapters "
                           "(paddleport's layers in both frameworks, AdapterHub's layout and files)")
    peft.add_argument("--lora-r", type=int, default=8, help="LoRA rank (default 8)")
    peft.add_argument("--lora-alpha", type=float, default=16.0, help="LoRA scaling numerator: alpha / r (default 16)")
    peft.add_argument("--lora-dropout", type=float, default=0.1,
                      help="dropout on the LoRA input (shared masks with --dropout-masks shared; default 0.1)")
    peft.add_argument("--lora-target-modules", default="query,value",
                      help="comma-separated transformers module names to wrap (default query,value)")
    peft.add_argument("--lora-bias", choices=BIAS_MODES, default="none",
                      help="biases trained too: none, all, or those of the wrapped modules (lora_only)")
    peft.add_argument("--num-virtual-tokens", type=int, default=20,
                      help="prompt, p-tuning: virtual tokens prepended to every input (default 20; they take "
                           "positions, so --max-length + this must fit the model's max_position_embeddings)")
    peft.add_argument("--encoder-reparameterization-type", choices=ENCODER_TYPES, default="MLP",
                      help="p-tuning: the prompt encoder, MLP (3 Linears) or LSTM (bidirectional, 2 layers, + MLP)")
    peft.add_argument("--encoder-hidden-size", type=int,
                      help="p-tuning: the prompt encoder's hidden size (default: the word-embedding width)")
    peft.add_argument("--prompt-tuning-init", type=str.upper, choices=PROMPT_INITS, default="RANDOM",
                      help="prompt: the virtual tokens' start, RANDOM (N(0, 1)) or TEXT (the word embeddings of "
                           "--prompt-tuning-init-text's tokens, repeated/cut to --num-virtual-tokens, as peft's)")
    peft.add_argument("--prompt-tuning-init-text",
                      help="prompt, TEXT: the text, tokenized by the run's tokenizer (--tokenizer or the model's)")
    peft.add_argument("--adapter-config", choices=("houlsby", "pfeiffer"), default="houlsby",
                      help="adapter: houlsby (after attention and feed-forward, swish) or pfeiffer (after "
                           "feed-forward only, relu), as AdapterHub's double_seq_bn / seq_bn (default houlsby)")
    peft.add_argument("--reduction-factor", type=float, default=16,
                      help="adapter: bottleneck size = hidden_size / reduction factor, a whole number (default 16)")


def _add_train_parity(subparsers) -> None:
    parser = subparsers.add_parser("train-parity", epilog=help_epilog(),
                                   help="the same training steps in torch and Paddle, compared",
                                   description="N optimizer steps in both frameworks from the same weights on the same "
                                               "batches (fp32, dropout off unless --dropout); exit 0 when every step's "
                                               "losses agree within float noise and the final parameters within "
                                               "--param-rtol of the largest parameter movement; 1 otherwise.")
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--task", default="qqp")
    parser.add_argument("--data-dir", type=Path, help="GLUE-format TSV directory (default: the embedded QQP sample)")
    parser.add_argument("--tokenizer", type=Path)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int,
                        help="tokens per example (default 64, or the model's max_position_embeddings if fewer)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout", action="store_true",
                        help="train with dropout on, both frameworks drawing the same (shared) masks (torch then runs "
                             "eager attention instead of SDPA)")
    parser.add_argument("--tolerance", type=float,
                        help="largest allowed |loss_torch - loss_paddle| (default: 64 float32 ulps of the loss scale)")
    parser.add_argument("--param-rtol", type=float, default=1e-3,
                        help="largest allowed parameter difference as a fraction of the largest parameter movement")
    parser.add_argument("--num-threads", type=int, help="CPU threads of both frameworks (default: as run-glue)")
    parser.add_argument("--json", dest="json_path", type=Path, help="write the report here")
    _add_peft_options(parser)
    parser.set_defaults(func=train_parity_command)


def register(subparsers) -> None:
    _add_run_glue(subparsers)
    _add_train_parity(subparsers)


def _config_from_args(config_class, args: argparse.Namespace):
    return config_class(**{item.name: getattr(args, item.name) for item in fields(config_class)
                           if hasattr(args, item.name)})


def run_glue_command(args: argparse.Namespace) -> int:
    from paddleport.glue_runners.distributed import detect_launch
    from paddleport.glue_runners.runner import GlueRunConfig, run_glue

    result = run_glue(_config_from_args(GlueRunConfig, args))
    if not detect_launch().is_main:
        return 0
    if result.get("status") == "interrupted":
        print(f"stopped after {result['global_steps']} steps (--stop-after-steps); continue with --resume")
    else:
        print(f"metrics: {Path(args.output_dir) / 'metrics.json'}")
    return 0


def train_parity_command(args: argparse.Namespace) -> int:
    from paddleport.glue_runners.parity import TrainParityConfig, format_parity_report, run_train_parity

    report = run_train_parity(_config_from_args(TrainParityConfig, args))
    print(format_parity_report(report))
    return 0 if report["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m paddleport.glue_runners [run-glue|train-parity] ...`` (run-glue when no sub-command is named)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS + ("-h", "--help"):
        argv.insert(0, "run-glue")
    parser = argparse.ArgumentParser(prog="python -m paddleport.glue_runners")
    register(parser.add_subparsers(dest="command", required=True))
    return run_command(parser.parse_args(argv))
