"""``paddleport estimate-memory`` (argparse only; the work is in ``paddleport.memory``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    from paddleport.memory import AMP_MODES, OPTIMIZERS
    from paddleport.peft.lora import BIAS_MODES
    from paddleport.peft.methods import PEFT_METHODS

    parser = subparsers.add_parser(
        "estimate-memory", help="training memory of a model (parameters, gradients, optimizer, activations)",
        description="Estimate one training step's memory from config.json alone (no model is built); --measure "
                    "also runs real steps with --framework and prints the measured peak beside the estimate.")
    parser.add_argument("--model", required=True, type=Path, help="model directory or config.json")
    parser.add_argument("--batch-size", required=True, type=int)
    parser.add_argument("--max-length", required=True, type=int)
    parser.add_argument("--amp", choices=AMP_MODES, default="none")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--num-labels", type=int, default=2)
    parser.add_argument("--peft", choices=PEFT_METHODS, default="none")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=float, default=16.0)
    parser.add_argument("--lora-dropout", type=float, default=0.1)
    parser.add_argument("--lora-target-modules", default="query,value")
    parser.add_argument("--lora-bias", choices=BIAS_MODES, default="none")
    parser.add_argument("--adapter-config", choices=("houlsby", "pfeiffer"), default="houlsby")
    parser.add_argument("--reduction-factor", type=float, default=16)
    parser.add_argument("--measure", action="store_true", help="run real training steps and measure the peak")
    parser.add_argument("--framework", choices=("torch", "paddle"), default="torch",
                        help="whose autograd the activation estimate follows, and which runs with --measure")
    parser.add_argument("--num-threads", type=int, help="CPU threads of the framework (for --measure)")
    parser.add_argument("--json", dest="json_path", type=Path, help="write the estimate (and measurement) here")
    parser.set_defaults(func=run_estimate, frameworks=None)


def run_estimate(args: argparse.Namespace) -> int:
    from paddleport.memory import MemoryRequest, estimate_memory, measure_training_step
    from paddleport.errors import PaddleportError
    from paddleport.peft.methods import PeftOptions

    lora = PeftOptions(peft=args.peft, lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                       lora_target_modules=args.lora_target_modules, lora_bias=args.lora_bias,
                       adapter_config=args.adapter_config, reduction_factor=args.reduction_factor).peft_settings()
    if lora is not None and args.peft not in ("lora", "adapter"):
        raise PaddleportError("--peft", f"the memory estimate covers none, lora and adapter, not {args.peft}")
    request = MemoryRequest(args.model, args.batch_size, args.max_length, args.amp, args.optimizer,
                            args.gradient_checkpointing, lora, args.num_labels, args.framework)
    estimate = estimate_memory(request)
    if args.measure:
        estimate.measured = measure_training_step(request, args.framework, estimate)
    print(estimate.table())
    if args.json_path:
        args.json_path.write_text(json.dumps(estimate.as_json(), indent=2) + "\n")
        print(f"written to {args.json_path}")
    return 0
