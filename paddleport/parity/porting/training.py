"""The same optimizer steps in torch and Paddle, and the verdict on the two runs.

Every training comparison in paddleport (``diff --steps``, ``train-parity``) runs its two sides through
:func:`run_side` (a side is anything with ``train_step(batch) -> loss`` and ``get_parameters() -> {torch-side
name: array in torch layout}``: :class:`TorchSide` / :class:`PaddleSide` here, run-glue's backends for
train-parity) and judges them with :func:`judge_training`:

- **Losses**: every step's |loss_torch - loss_paddle| within ``loss_tolerance``, or by default
  ``LOSS_NOISE_ULPS`` float32 ulps of the loss scale (max(1, |loss_torch|)): the two frameworks sum the same
  numbers in different orders, so a loss carries rounding noise of a few ulps per reduction, and the drift of the
  parameters adds a few more. Measured: 1 ulp on tiny BERT, 4.5 on the real MiniLM over 20 steps.
- **Parameters** (when ``param_rtol`` is given): after the last step, every |p_paddle - p_torch| within
  ``param_rtol`` (train-parity: ``PARAM_RTOL_OF_MOVEMENT``, 2e-3) x the largest distance any parameter moved from
  its start (torch's run), plus ``PARAM_NOISE_ULPS`` (16) float32 ulps of that parameter's own magnitude. The ulp
  term is there because float32 cannot hold a weight of magnitude |p| closer than |p| x 2**-24 and each step
  rounds again: on tiny BERT at lr 1e-4 a padding-row embedding of magnitude ~3 ends 1.4e-6 apart while the
  largest movement is 9.2e-4 (ratio 1.6e-3), so 1e-3 x movement alone would fail a correct port; 2e-3 rather
  than 1e-3 because tiny SqueezeBERT's classifier bias (magnitude ~0, so no ulp term) ends at 0.64 of a 1e-3
  bound. Measured worst parameter against this bound (20 steps, lr 1e-4, tests/test_glue_parity.py's models):
  0.15-0.32 with dropout off and on. An optimizer that drops weight decay, or decays LayerNorm weights, moves a
  parameter by lr x weight_decay x |p| a step: 3.1e-5 and 1.2e-5 on tiny BERT, 4.0x and 2.9x its bound.
  ``diff`` leaves parameters unjudged by default: Adam turns a gradient that is pure rounding noise (a conv bias
  followed by BatchNorm) into learning-rate-sized steps of either sign.
- Both runs start from the same weights, and every loss and parameter is finite (``parity.metrics.difference``).

Optimizers (``diff``): the torch optimizer and scheduler are mapped to Paddle's.

Mapped: ``torch.optim.AdamW`` -> ``paddle.optimizer.AdamW``, ``Adam`` -> ``Adam``, ``SGD`` (momentum > 0) ->
``Momentum`` (else ``SGD``); ``LambdaLR`` (transformers' linear / cosine warm-up schedules are LambdaLR) ->
``LambdaDecay`` with the same function, ``LinearLR`` -> ``LambdaDecay``, ``CosineAnnealingLR`` ->
``CosineAnnealingDecay``; global-norm clipping -> ``ClipGradByGlobalNorm``. Known semantic differences
(``KNOWN_DIFFERENCES``) are stated in every training report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from paddleport.errors import PaddleportError
from paddleport.parity.metrics import Difference, json_number, largest, named_differences, scalar_difference
from paddleport.parity.porting.report import TrainingReport, compare_arrays, tolerance_for
from paddleport.parity.porting.weights import WeightMap, parameter_pairs, to_numpy

# Parameter tolerance: param_rtol x the largest parameter movement + PARAM_NOISE_ULPS float32 ulps of the
# parameter's magnitude; loss tolerance: LOSS_NOISE_ULPS ulps of max(1, |loss|). See the module doc.
PARAM_RTOL_OF_MOVEMENT = 2e-3
PARAM_NOISE_ULPS = 16
LOSS_NOISE_ULPS = 32
FLOAT32_EPS = 2.0 ** -23

KNOWN_DIFFERENCES = {
    "AdamW": "AdamW: both decay decoupled (p -= lr * weight_decay * p, before the Adam update); Paddle folds the "
             "bias corrections into the learning rate and adds eps * sqrt(1 - beta2^t) to sqrt(v), torch adds eps "
             "to sqrt(v) / sqrt(1 - beta2^t): the same formula, rounded differently. Paddle picks decayed "
             "parameters by name, so every torch group's weight_decay must be 0 or one shared value.",
    "Adam": "Adam: weight_decay is an L2 term added to the gradient in both (torch in the step, Paddle as an "
            "L2Decay regularizer); eps placement as for AdamW.",
    "SGD": "SGD: torch's momentum buffer b = momentum * b + (1 - dampening) * g equals Paddle Momentum's velocity "
           "only with dampening 0 (Paddle has none); weight_decay is an L2 term in both.",
    "clip": "Global-norm clipping: torch scales gradients by max_norm / (total_norm + 1e-6) when that is below 1, "
            "Paddle by clip_norm / max(global_norm, clip_norm) (no epsilon): clipped steps differ by ~1e-6 / "
            "total_norm relative.",
}


def _single(values: set, what: str):
    if len(values) != 1:
        raise PaddleportError("optimizer", f"{what} differs between parameter groups ({sorted(values)}); "
                              "Paddle's optimizers take one value")
    return values.pop()


def paddle_scheduler_like(torch_scheduler, base_lr: float):
    """The Paddle LRScheduler that computes the same learning rate per step as ``torch_scheduler``."""
    import paddle
    from torch.optim import lr_scheduler

    if torch_scheduler is None:
        return None
    kind = type(torch_scheduler).__name__
    if isinstance(torch_scheduler, lr_scheduler.LambdaLR):
        if len(torch_scheduler.lr_lambdas) != 1:
            raise PaddleportError("scheduler", "LambdaLR with one function per group is not mapped")
        scheduler = paddle.optimizer.lr.LambdaDecay(base_lr, torch_scheduler.lr_lambdas[0])
    elif isinstance(torch_scheduler, lr_scheduler.LinearLR):
        start, end, total = torch_scheduler.start_factor, torch_scheduler.end_factor, torch_scheduler.total_iters
        scheduler = paddle.optimizer.lr.LambdaDecay(
            base_lr, lambda step: start + (end - start) * min(step, total) / total)
    elif isinstance(torch_scheduler, lr_scheduler.CosineAnnealingLR):
        scheduler = paddle.optimizer.lr.CosineAnnealingDecay(base_lr, torch_scheduler.T_max, torch_scheduler.eta_min)
    else:
        raise PaddleportError("scheduler", f"{kind} has no Paddle mapping (LambdaLR, LinearLR, CosineAnnealingLR)")
    set_scheduler_position(scheduler, torch_scheduler.last_epoch)
    return scheduler


def set_scheduler_position(paddle_scheduler, step: int) -> None:
    """Put a Paddle scheduler at ``step`` (torch's ``last_epoch``), its learning rate recomputed."""
    paddle_scheduler.last_epoch = step - 1
    paddle_scheduler.step()


def paddle_optimizer_like(torch_optimizer, pairs, torch_scheduler=None, max_grad_norm: float | None = None):
    """The Paddle optimizer (and scheduler) doing what ``torch_optimizer`` does, over the Paddle parameters
    paired with its parameters. ``pairs``: ``weights.parameter_pairs`` output. Returns (optimizer, scheduler,
    known differences)."""
    import paddle
    import torch

    by_id = {id(torch_param): paddle_param for _, torch_param, paddle_param, _ in pairs}
    groups = torch_optimizer.param_groups
    parameters = [by_id[id(param)] for group in groups for param in group["params"] if id(param) in by_id]
    base_lr = _single({group.get("initial_lr", group["lr"]) for group in groups}, "the learning rate")
    scheduler = paddle_scheduler_like(torch_scheduler, base_lr)
    learning_rate = scheduler if scheduler is not None else base_lr
    clip = paddle.nn.ClipGradByGlobalNorm(max_grad_norm) if max_grad_norm else None
    differences = [KNOWN_DIFFERENCES["clip"]] if clip else []
    kind = type(torch_optimizer).__name__
    if isinstance(torch_optimizer, (torch.optim.AdamW, torch.optim.Adam)):
        beta1, beta2 = _single({tuple(group["betas"]) for group in groups}, "betas")
        eps = _single({group["eps"] for group in groups}, "eps")
        amsgrad = _single({group["amsgrad"] for group in groups}, "amsgrad")
        decays = {group["weight_decay"] for group in groups if group["weight_decay"]}
        if isinstance(torch_optimizer, torch.optim.AdamW):
            decayed = {by_id[id(param)].name for group in groups if group["weight_decay"]
                       for param in group["params"] if id(param) in by_id}
            optimizer = paddle_adamw(parameters, learning_rate, (beta1, beta2), eps,
                                     _single(decays, "weight_decay") if decays else 0.0, decayed, max_grad_norm,
                                     amsgrad=amsgrad)
            differences.append(KNOWN_DIFFERENCES["AdamW"])
        else:
            optimizer = paddle.optimizer.Adam(
                learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=eps, parameters=parameters,
                weight_decay=_uniform_l2(groups), amsgrad=amsgrad, grad_clip=clip)
            differences.append(KNOWN_DIFFERENCES["Adam"])
    elif isinstance(torch_optimizer, torch.optim.SGD):
        momentum = _single({group["momentum"] for group in groups}, "momentum")
        if any(group["dampening"] for group in groups) or any(group.get("maximize") for group in groups):
            raise PaddleportError("optimizer", "SGD dampening / maximize have no Paddle counterpart")
        nesterov = _single({group["nesterov"] for group in groups}, "nesterov")
        if momentum:
            optimizer = paddle.optimizer.Momentum(learning_rate=learning_rate, momentum=momentum, parameters=parameters,
                                                  use_nesterov=nesterov, weight_decay=_uniform_l2(groups),
                                                  grad_clip=clip)
        else:
            optimizer = paddle.optimizer.SGD(learning_rate=learning_rate, parameters=parameters,
                                             weight_decay=_uniform_l2(groups), grad_clip=clip)
        differences.append(KNOWN_DIFFERENCES["SGD"])
    else:
        raise PaddleportError("optimizer", f"{kind} has no Paddle mapping (AdamW, Adam, SGD)")
    return optimizer, scheduler, differences


def paddle_adamw(parameters, learning_rate, betas: tuple[float, float], eps: float, weight_decay: float,
                 decayed: set[str], max_grad_norm: float | None, amsgrad: bool = False):
    """Paddle's AdamW as paddleport builds it (``diff``'s mapping of torch's AdamW, run-glue's Paddle backend):
    decoupled weight decay on the parameters whose Paddle names are in ``decayed``, global-norm clipping at
    ``max_grad_norm`` (none when falsy or <= 0)."""
    import paddle

    clip = paddle.nn.ClipGradByGlobalNorm(max_grad_norm) if max_grad_norm and max_grad_norm > 0 else None
    return paddle.optimizer.AdamW(learning_rate=learning_rate, beta1=betas[0], beta2=betas[1], epsilon=eps,
                                  parameters=parameters, weight_decay=weight_decay, amsgrad=amsgrad, grad_clip=clip,
                                  apply_decay_param_fun=lambda name: name in decayed)


def _uniform_l2(groups) -> float | None:
    decay = _single({group["weight_decay"] for group in groups}, "weight_decay (an L2 term)")
    return decay or None


def clip_torch_gradients(torch_optimizer, max_grad_norm: float | None) -> None:
    import torch

    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_([p for group in torch_optimizer.param_groups for p in group["params"]],
                                       max_grad_norm)


# --- the two runs ------------------------------------------------------------------------------------------

class Side(Protocol):
    """One framework's model and optimizer, stepped by :func:`run_side`."""

    def train_step(self, batch) -> float:
        """Forward, backward, optimizer (and scheduler) step on ``batch``; the loss before the update."""

    def get_parameters(self) -> dict[str, np.ndarray]:
        """The trained parameters by torch-side name, in torch layout (float32 numpy)."""


@dataclass
class TrainedRun:
    losses: list[float]  # each step's loss, before its update
    initial: dict[str, np.ndarray]  # parameters before the first step and after the last (torch-side names, layout)
    final: dict[str, np.ndarray]


def run_side(side: Side, batches: Sequence, steps: int) -> TrainedRun:
    """``steps`` training steps of ``side``, cycling through ``batches``."""
    initial = {name: np.array(value, copy=True) for name, value in side.get_parameters().items()}  # not views
    losses = [side.train_step(batches[step % len(batches)]) for step in range(steps)]
    return TrainedRun(losses, initial, side.get_parameters())


class TorchSide:
    """A torch module, its optimizer / scheduler / clipping, the loss of its output, its dropout-mask stream."""

    def __init__(self, module, optimizer, scheduler, max_grad_norm, loss_fn, stream, pairs):
        self.module, self.optimizer, self.scheduler, self.max_grad_norm = module, optimizer, scheduler, max_grad_norm
        self.loss_fn, self.stream, self.pairs = loss_fn, stream, pairs

    def train_step(self, batch) -> float:
        from paddleport.parity.porting.engine import torch_inputs

        args, kwargs = torch_inputs(batch, self.module)
        self.stream.next_forward()
        loss = self.loss_fn(self.module(*args, **kwargs))
        loss.backward()
        clip_torch_gradients(self.optimizer, self.max_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def get_parameters(self) -> dict[str, np.ndarray]:
        return {name: to_numpy(torch_param) for name, torch_param, _, _ in self.pairs}


class PaddleSide:
    """The Paddle counterpart of :class:`TorchSide` (clipping is the optimizer's ``grad_clip``)."""

    def __init__(self, layer, optimizer, scheduler, loss_fn, stream, pairs):
        self.layer, self.optimizer, self.scheduler = layer, optimizer, scheduler
        self.loss_fn, self.stream, self.pairs = loss_fn, stream, pairs

    def train_step(self, batch) -> float:
        from paddleport.parity.porting.engine import paddle_inputs

        args, kwargs = paddle_inputs(batch)
        self.stream.next_forward()
        loss = self.loss_fn(self.layer(*args, **kwargs))
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.clear_grad()
        return float(loss)

    def get_parameters(self) -> dict[str, np.ndarray]:
        return {name: transform.to_hf(to_numpy(paddle_param)) for name, _, paddle_param, transform in self.pairs}


# --- the verdict -------------------------------------------------------------------------------------------

@dataclass
class TrainingVerdict:
    """Two runs judged (module doc): every step's loss difference, the parameters' start and end."""

    reference: TrainedRun  # torch
    ours: TrainedRun  # Paddle
    loss_tolerance: float
    loss_noise_ulps: int | None  # LOSS_NOISE_ULPS when the tolerance is derived from the losses, else None
    steps: list[Difference]
    param_rtol: float | None
    moved_name: str | None = None  # the parameter torch moved most, and how far
    moved: Difference = field(default_factory=Difference)
    param_name: str | None = None  # the largest final difference
    param: Difference = field(default_factory=Difference)
    worst_name: str | None = None  # the parameter closest to (or furthest past) its tolerance, and that ratio
    worst_ratio: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def max_loss_diff(self) -> float:
        return max((diff.max_abs for diff in self.steps), default=0.0)

    def loss_rows(self) -> list[dict]:
        """{"step", "torch", "paddle", "abs_diff"} per step, JSON-ready (a non-finite number is null)."""
        return [{"step": step + 1, "torch": json_number(a), "paddle": json_number(b), "abs_diff": json_number(d.max_abs)}
                for step, (a, b, d) in enumerate(zip(self.reference.losses, self.ours.losses, self.steps))]


def loss_noise_tolerance(losses: list[float]) -> float:
    """LOSS_NOISE_ULPS float32 ulps of the loss scale (the largest finite |loss|, at least 1)."""
    finite = [abs(loss) for loss in losses if np.isfinite(loss)]
    return LOSS_NOISE_ULPS * FLOAT32_EPS * max([1.0, *finite])


def worst_parameter(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray], movement_tolerance: float
                    ) -> tuple[str, float]:
    """The parameter whose |ours - reference| is largest relative to its element-wise tolerance (movement_tolerance
    + PARAM_NOISE_ULPS ulps of |reference|), and that ratio (<= 1 passes; inf when not finite)."""
    ratios = {}
    for name, want in reference.items():
        want64, got64 = want.astype(np.float64), ours[name].astype(np.float64)
        bound = movement_tolerance + PARAM_NOISE_ULPS * FLOAT32_EPS * np.abs(want64)
        delta = np.abs(got64 - want64)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(delta == 0, 0.0, delta / bound)  # equal values pass even where the bound is 0
        ratios[name] = float(np.max(np.where(np.isnan(ratio), np.inf, ratio), initial=0.0))
    name = max(ratios, key=ratios.get)
    return name, ratios[name]


def judge_training(reference: TrainedRun, ours: TrainedRun, loss_tolerance: float | None = None,
                   param_rtol: float | None = PARAM_RTOL_OF_MOVEMENT) -> TrainingVerdict:
    """``ours`` (Paddle) against ``reference`` (torch): the losses of every step, the start and, with
    ``param_rtol``, the final parameters (module doc)."""
    tolerance = loss_noise_tolerance(reference.losses) if loss_tolerance is None else loss_tolerance
    steps = [scalar_difference(b, a) for a, b in zip(reference.losses, ours.losses, strict=True)]
    verdict = TrainingVerdict(reference, ours, tolerance, LOSS_NOISE_ULPS if loss_tolerance is None else None, steps,
                              param_rtol)
    verdict.failures = [f"step {index + 1}: loss {'not finite' if not diff.finite else f'differs by {diff.max_abs:.3g}'}"
                        for index, diff in enumerate(steps) if not diff.within(tolerance)]
    if not reference.initial:
        return verdict
    start_name, start_diff = largest(named_differences(ours.initial, reference.initial))
    if not start_diff.within(0.0):
        verdict.failures.append(f"the runs start from different weights ({start_name} differs by "
                                f"{start_diff.max_abs:.3g})")
    verdict.moved_name, verdict.moved = largest(named_differences(reference.final, reference.initial))
    verdict.param_name, verdict.param = largest(named_differences(ours.final, reference.final))
    if param_rtol is None:
        return verdict
    movement_tolerance = param_rtol * verdict.moved.max_abs
    verdict.worst_name, verdict.worst_ratio = worst_parameter(ours.final, reference.final, movement_tolerance)
    if not verdict.moved.finite:
        verdict.failures.append(f"torch's parameters are not finite ({verdict.moved_name}: "
                                f"{verdict.moved.describe_non_finite()})")
    if not verdict.param.finite:
        verdict.failures.append(f"parameter {verdict.param_name}: {verdict.param.describe_non_finite()}")
    elif verdict.worst_ratio > 1.0:
        verdict.failures.append(f"parameter {verdict.worst_name} differs by {verdict.worst_ratio:.3g} x its tolerance "
                                f"({param_rtol:g} x largest movement {verdict.moved.max_abs:.3g} + "
                                f"{PARAM_NOISE_ULPS} ulps of its magnitude)")
    return verdict


def train_both(torch_module, paddle_layer, batches, weights: WeightMap, streams, *, steps: int, optimizer,
               scheduler, max_grad_norm, loss_fns, loss_tolerance: float, tolerances) -> TrainingReport:
    """``steps`` steps in each framework (training mode), the Paddle optimizer mapped from the torch one."""
    if optimizer is None:
        raise PaddleportError("optimizer", "steps > 0 needs the torch optimizer (and scheduler) to train with")
    pairs = parameter_pairs(torch_module, paddle_layer, weights)
    paddle_optimizer, paddle_scheduler, differences = paddle_optimizer_like(optimizer, pairs, scheduler,
                                                                            max_grad_norm)
    torch_module.train()
    paddle_layer.train()
    reference = run_side(TorchSide(torch_module, optimizer, scheduler, max_grad_norm, loss_fns[0], streams[0], pairs),
                         batches, steps)
    ours = run_side(PaddleSide(paddle_layer, paddle_optimizer, paddle_scheduler, loss_fns[1], streams[1], pairs),
                    batches, steps)
    verdict = judge_training(reference, ours, loss_tolerance, param_rtol=None)
    dtypes = {name: str(torch_param.dtype).rsplit(".", 1)[-1] for name, torch_param, _, _ in pairs}
    parameters = [compare_arrays(name, ours.final[name], reference.final[name], dtypes[name],
                                 tolerance_for(name, dtypes[name], tolerances)) for name in reference.final]
    return TrainingReport(type(optimizer).__name__, type(scheduler).__name__ if scheduler is not None else None,
                          verdict, parameters, differences)
