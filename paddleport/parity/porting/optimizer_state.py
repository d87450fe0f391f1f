"""Optimizer state torch <-> Paddle: a run started in one framework continues in the other.

AdamW / Adam: torch's ``exp_avg`` / ``exp_avg_sq`` are Paddle's ``moment1`` / ``moment2`` (in Paddle's layout:
a Linear's moments are transposed like its weight); torch's ``step`` t is Paddle's ``beta1_pow_acc`` =
beta1^(t+1) and ``beta2_pow_acc`` = beta2^(t+1) (Paddle keeps the power for the *next* step). SGD with
momentum: ``momentum_buffer`` is Paddle's ``velocity``. The scheduler position is torch's ``last_epoch``.
"""

from __future__ import annotations

import math

import numpy as np

from paddleport.errors import PaddleportError
from paddleport.parity.porting.weights import NameMap, copy_weights, load_rules, map_weights, parameter_pairs, to_numpy

ADAM_ACCUMULATORS = ("moment1", "moment2", "beta1_pow_acc", "beta2_pow_acc")


def _accumulators(paddle_optimizer, parameters) -> dict[str, dict[str, object]]:
    """Paddle's accumulators (created now if no step has run yet), by kind, then by parameter name."""
    import paddle

    paddle_optimizer._create_accumulators(paddle.static.default_main_program().global_block(), parameters)
    return paddle_optimizer._accumulators


def _adam_betas(paddle_optimizer) -> tuple[float, float]:
    return float(paddle_optimizer._beta1), float(paddle_optimizer._beta2)


def torch_state_to_paddle(torch_optimizer, paddle_optimizer, pairs, torch_scheduler=None,
                          paddle_scheduler=None) -> None:
    """Load ``torch_optimizer``'s state into ``paddle_optimizer`` (built over the paired Paddle parameters,
    e.g. by ``training.paddle_optimizer_like``); ``pairs``: ``weights.parameter_pairs`` output."""
    import paddle
    import torch

    from paddleport.parity.porting.training import set_scheduler_position

    accumulators = _accumulators(paddle_optimizer, [paddle_param for _, _, paddle_param, _ in pairs])
    adam = isinstance(torch_optimizer, (torch.optim.Adam, torch.optim.AdamW))
    for name, torch_param, paddle_param, transform in pairs:
        state = torch_optimizer.state.get(torch_param)
        if not state:
            continue
        if adam:
            step = int(state["step"])
            beta1, beta2 = _adam_betas(paddle_optimizer)
            values = {"moment1": transform.to_paddle(to_numpy(state["exp_avg"])),
                      "moment2": transform.to_paddle(to_numpy(state["exp_avg_sq"])),
                      "beta1_pow_acc": np.array([beta1 ** (step + 1)], np.float32),
                      "beta2_pow_acc": np.array([beta2 ** (step + 1)], np.float32)}
        elif "momentum_buffer" in state and state["momentum_buffer"] is not None:
            values = {"velocity": transform.to_paddle(to_numpy(state["momentum_buffer"]))}
        else:
            continue
        for kind, value in values.items():
            target = accumulators[kind][paddle_param.name]
            target.set_value(paddle.to_tensor(value).astype(target.dtype))
    if torch_scheduler is not None and paddle_scheduler is not None:
        set_scheduler_position(paddle_scheduler, torch_scheduler.last_epoch)


def paddle_state_to_torch(paddle_optimizer, torch_optimizer, pairs, paddle_scheduler=None,
                          torch_scheduler=None) -> None:
    """Load ``paddle_optimizer``'s state into ``torch_optimizer`` (the inverse of :func:`torch_state_to_paddle`)."""
    import torch

    accumulators = paddle_optimizer._accumulators
    adam = isinstance(torch_optimizer, (torch.optim.Adam, torch.optim.AdamW))
    for name, torch_param, paddle_param, transform in pairs:
        if adam:
            if paddle_param.name not in accumulators.get("moment1", {}):
                continue
            beta1, _ = _adam_betas(paddle_optimizer)
            beta1_pow = float(to_numpy(accumulators["beta1_pow_acc"][paddle_param.name]).reshape(()))
            step = round(math.log(beta1_pow) / math.log(beta1)) - 1
            torch_optimizer.state[torch_param] = {
                "step": torch.tensor(float(step)),
                "exp_avg": _torch_like(transform.to_hf(to_numpy(accumulators["moment1"][paddle_param.name])), torch_param),
                "exp_avg_sq": _torch_like(transform.to_hf(to_numpy(accumulators["moment2"][paddle_param.name])),
                                          torch_param)}
        elif paddle_param.name in accumulators.get("velocity", {}):
            torch_optimizer.state[torch_param] = {
                "momentum_buffer": _torch_like(transform.to_hf(to_numpy(accumulators["velocity"][paddle_param.name])),
                                               torch_param)}
    if paddle_scheduler is not None and torch_scheduler is not None:
        _set_torch_scheduler_position(torch_scheduler, paddle_scheduler.last_epoch)


def _torch_like(array: np.ndarray, param):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype=param.dtype, device=param.device)


def _set_torch_scheduler_position(scheduler, step: int) -> None:
    """torch's scheduler at ``step``, every group's learning rate set from the closed form."""
    import warnings

    scheduler.last_epoch = step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_lr outside step() warns
        closed_form = getattr(scheduler, "_get_closed_form_lr", None)
        rates = closed_form() if closed_form is not None else scheduler.get_lr()
    for group, rate in zip(scheduler.optimizer.param_groups, rates):
        group["lr"] = rate
    scheduler._last_lr = list(rates)


def continue_in_paddle(torch_module, torch_optimizer, paddle_layer, rules=None, torch_scheduler=None,
                       max_grad_norm: float | None = None):
    """Carry a torch training run over to Paddle: weights copied through the rules, the Paddle optimizer and
    scheduler built to match torch's, and their state (moments, step counts, scheduler position) converted.
    Returns (paddle optimizer, paddle scheduler or None)."""
    from paddleport.parity.porting.training import paddle_optimizer_like

    if torch_optimizer is None:
        raise PaddleportError("optimizer", "no torch optimizer to continue from")
    weights = map_weights(torch_module, paddle_layer, NameMap(load_rules(rules or ())))
    copy_weights(torch_module, paddle_layer, weights)
    pairs = parameter_pairs(torch_module, paddle_layer, weights)
    paddle_optimizer, paddle_scheduler, _ = paddle_optimizer_like(torch_optimizer, pairs, torch_scheduler,
                                                                  max_grad_norm)
    torch_state_to_paddle(torch_optimizer, paddle_optimizer, pairs, torch_scheduler, paddle_scheduler)
    return paddle_optimizer, paddle_scheduler
