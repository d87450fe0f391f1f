"""The same optimizer steps in torch and Paddle: torch optimizers and schedulers mapped to Paddle's.

Mapped: ``torch.optim.AdamW`` -> ``paddle.optimizer.AdamW``, ``Adam`` -> ``Adam``, ``SGD`` (momentum > 0) ->
``Momentum`` (else ``SGD``); ``LambdaLR`` (transformers' linear / cosine warm-up schedules are LambdaLR) ->
``LambdaDecay`` with the same function, ``LinearLR`` -> ``LambdaDecay``, ``CosineAnnealingLR`` ->
``CosineAnnealingDecay``; global-norm clipping -> ``ClipGradByGlobalNorm``. Known semantic differences
(``KNOWN_DIFFERENCES``) are stated in every training report.
"""

from __future__ import annotations

import math

from paddleport.errors import PaddleportError
from paddleport.parity.porting.report import TensorStats, TrainingReport, compare_arrays, dtype_name, tolerance_for
from paddleport.parity.porting.weights import WeightMap, parameter_pairs, to_numpy

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
            optimizer = paddle.optimizer.AdamW(
                learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=eps, parameters=parameters,
                weight_decay=_single(decays, "weight_decay") if decays else 0.0, amsgrad=amsgrad, grad_clip=clip,
                apply_decay_param_fun=lambda name: name in decayed)
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


def _uniform_l2(groups) -> float | None:
    decay = _single({group["weight_decay"] for group in groups}, "weight_decay (an L2 term)")
    return decay or None


def clip_torch_gradients(torch_optimizer, max_grad_norm: float | None) -> None:
    import torch

    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_([p for group in torch_optimizer.param_groups for p in group["params"]],
                                       max_grad_norm)


def train_both(torch_module, paddle_layer, batches, weights: WeightMap, streams, *, steps: int, optimizer,
               scheduler, max_grad_norm, loss_fns, loss_tolerance: float, tolerances) -> TrainingReport:
    """``steps`` steps in each framework (training mode), the Paddle optimizer mapped from the torch one."""
    if optimizer is None:
        raise PaddleportError("optimizer", "steps > 0 needs the torch optimizer (and scheduler) to train with")
    from paddleport.parity.porting.engine import paddle_inputs, torch_inputs

    pairs = parameter_pairs(torch_module, paddle_layer, weights)
    paddle_optimizer, paddle_scheduler, differences = paddle_optimizer_like(optimizer, pairs, scheduler,
                                                                            max_grad_norm)
    torch_module.train()
    paddle_layer.train()
    torch_losses, paddle_losses = [], []
    for step in range(steps):
        args, kwargs = torch_inputs(batches[step % len(batches)])
        streams[0].next_forward()
        loss = loss_fns[0](torch_module(*args, **kwargs))
        loss.backward()
        clip_torch_gradients(optimizer, max_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        torch_losses.append(float(loss.detach()))
    for step in range(steps):
        args, kwargs = paddle_inputs(batches[step % len(batches)])
        streams[1].next_forward()
        loss = loss_fns[1](paddle_layer(*args, **kwargs))
        loss.backward()
        paddle_optimizer.step()
        if paddle_scheduler is not None:
            paddle_scheduler.step()
        paddle_optimizer.clear_grad()
        paddle_losses.append(float(loss))
    losses = [{"step": step + 1, "torch": a, "paddle": b, "abs_diff": abs(a - b) if math.isfinite(a - b) else math.inf}
              for step, (a, b) in enumerate(zip(torch_losses, paddle_losses))]
    parameters = [_parameter_stats(name, torch_param, paddle_param, transform, tolerances)
                  for name, torch_param, paddle_param, transform in pairs]
    return TrainingReport(type(optimizer).__name__, type(scheduler).__name__ if scheduler is not None else None,
                          losses, loss_tolerance, parameters, differences)


def _parameter_stats(name, torch_param, paddle_param, transform, tolerances) -> TensorStats:
    dtype = dtype_name(torch_param)
    return compare_arrays(name, transform.to_hf(to_numpy(paddle_param)), to_numpy(torch_param), dtype,
                          tolerance_for(name, dtype, tolerances))
