"""paddleport diff: weights through rules, module matching, the porting-bug catalogue, dropout, training,
optimizer state conversion (tiny models; the examples under examples/ are the models)."""

import json

import numpy as np
import pytest
import torch

from examples.buggy_port import paddle_port, torch_encoder
from examples.buggy_port.inputs import make_inputs
from examples.cnn import paddle_cnn, torch_cnn
from examples.cnn.inputs import make_inputs as make_images
from paddleport.errors import PaddleportError
from paddleport.parity import diff


def test_cnn_port_passes_forward_single_step_and_gradients():
    for single_step in (False, True):
        report = diff(torch_cnn.build(), paddle_cnn.build(), make_images(), single_step=single_step, train=True)
        assert report.passed, report.summary()
        assert report.first_divergence is None
        assert {module.name for module in report.modules} >= {"conv1", "bn1", "head.2", "head.4", ""}
        assert len(report.gradients) == 1 + 12  # the loss, then every parameter
        assert report.weights["unmapped_torch"] == [] and report.weights["unmapped_paddle"] == []
        transforms = {pair["torch"]: pair["transform"] for pair in report.weights["pairs"]}
        assert transforms["head.2.weight"] == "linear_weight" and transforms["conv1.weight"] == "same"
        assert transforms["bn1.running_mean"] == "same"  # -> Paddle's bn1._mean


@pytest.mark.parametrize("bug, module", [
    ("layernorm_eps", "layers.0.attention_norm"),
    ("gelu_tanh", "layers.0.act"),
    ("attention_scale_heads", "layers.0.attention"),
    ("swapped_qk", "layers.0.attention"),
])
def test_porting_bug_named_as_first_divergence_in_single_step(bug, module):
    report = diff(torch_encoder.build(), paddle_port.build(bug), make_inputs(), single_step=True, grad=False)
    assert not report.passed
    assert report.first_divergence == module, report.summary()
    assert "**← first divergence**" in next(line for line in report.markdown().splitlines() if f"`{module}`" in line)


def test_correct_port_passes_single_step():
    report = diff(torch_encoder.build(), paddle_port.build(), make_inputs(), single_step=True)
    assert report.passed, report.summary()


def test_linear_copied_without_transpose_is_named():
    from examples.buggy_port.rules_no_transpose import RULES

    report = diff(torch_encoder.build(), paddle_port.build(), make_inputs(), rules=RULES, single_step=True)
    assert report.first_divergence == "layers.0.attention_output"


def test_batchnorm_momentum_in_torch_convention_is_named_in_training_mode():
    report = diff(torch_cnn.build(), paddle_port.build_cnn_with_torch_momentum(), make_images(), single_step=True,
                  train=True, grad=False)
    assert report.first_divergence == "bn1"
    failing = next(module for module in report.modules if module.name == "bn1")
    assert [stats.name for stats in failing.buffers if not stats.passed] == ["running_mean", "running_var"]


def test_dropout_on_passes_unedited():
    report = diff(torch_encoder.build_with_dropout(), paddle_port.build_with_dropout(), make_inputs(), train=True)
    assert report.passed, report.summary()
    # the masks really drop: the torch model's train-mode output differs from its eval-mode output
    model, features = torch_encoder.build_with_dropout(), torch.from_numpy(make_inputs()["features"])
    assert not torch.allclose(model.train()(features), model.eval()(features))


def test_rules_rename_both_ways_and_unmapped_tensors_are_listed():
    torch_model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    import paddle

    class Port(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.first = paddle.nn.Linear(3, 4)
            self.extra = paddle.nn.Linear(4, 2)

        def forward(self, x):
            return self.extra(self.first(x))

    paddle_model = Port()
    report = diff(torch_model, paddle_model, (np.ones((2, 3), np.float32),), rules=[("0", "first")], grad=False)
    assert [pair["paddle"] for pair in report.to_dict()["weights"]["pairs"]] == ["first.weight", "first.bias"]
    assert report.weights["unmapped_torch"] == ["1.weight", "1.bias"]
    assert report.weights["unmapped_paddle"] == ["extra.weight", "extra.bias"]
    assert "0" not in report.unmatched_torch and "extra" in report.unmatched_paddle


def test_shape_disagreeing_after_transform_names_both_parameters():
    import paddle

    with pytest.raises(PaddleportError, match=r"torch weight \[4, 3\] -> Paddle weight \[4, 3\]"):
        diff(torch.nn.Linear(3, 4), paddle.nn.Linear(4, 3), (np.ones((2, 3), np.float32),))


def test_non_finite_outputs_fail():
    import paddle

    class Broken(paddle.nn.Linear):
        def forward(self, x):
            return super().forward(x) * float("nan")

    report = diff(torch.nn.Linear(3, 4), Broken(3, 4), (np.ones((2, 3), np.float32),), grad=False)
    assert report.first_divergence == "" and report.modules[0].outputs[0].non_finite == 8
    output = report.to_dict()["modules"][0]["outputs"][0]
    assert output["max_abs"] is None and output["first_non_finite"] == [0, 0] and output["over_tolerance"] == 8
    json.dumps(report.to_dict(), allow_nan=False)  # strict JSON


def _mse_losses(target):
    import paddle

    return (lambda output: ((output - torch.from_numpy(target)) ** 2).mean(),
            lambda output: ((output - paddle.to_tensor(target)) ** 2).mean())


def _batches(count):
    return [make_inputs(seed=seed) for seed in range(count)]


TARGET = np.random.default_rng(1).standard_normal((3, 2)).astype(np.float32)


def _adamw_with_warmup(model):
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    return optimizer, get_linear_schedule_with_warmup(optimizer, num_warmup_steps=3, num_training_steps=10)


@pytest.mark.parametrize("recipe", ["adamw_warmup", "sgd_momentum"])
def test_ten_training_steps_agree(recipe):
    model = torch_encoder.build_with_dropout()
    if recipe == "adamw_warmup":
        optimizer, scheduler = _adamw_with_warmup(model)
    else:
        optimizer, scheduler = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), None
    report = diff(model, paddle_port.build_with_dropout(), _batches(3), grad=False, steps=10, optimizer=optimizer,
                  scheduler=scheduler, max_grad_norm=1.0, loss_fn=_mse_losses(TARGET))
    losses = report.training.losses
    assert len(losses) == 10 and all(row["abs_diff"] <= 1e-5 for row in losses), losses
    assert losses[-1]["torch"] < losses[0]["torch"]  # it trains
    assert report.training.passed and report.training.known_differences


def test_torch_adamw_run_continues_in_paddle():
    from paddleport.parity import continue_in_paddle

    torch_loss, paddle_loss = _mse_losses(TARGET)
    batches = [torch.from_numpy(batch["features"]) for batch in _batches(10)]

    def torch_steps(model, optimizer, scheduler, steps):
        losses = []
        for batch in batches[steps.start:steps.stop]:
            loss = torch_loss(model(batch))
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(float(loss))
        return losses

    reference = torch_encoder.build()
    all_torch = torch_steps(reference.train(), *_adamw_with_warmup(reference), range(0, 10))

    model = torch_encoder.build().train()
    optimizer, scheduler = _adamw_with_warmup(model)
    first_half = torch_steps(model, optimizer, scheduler, range(0, 5))
    port = paddle_port.build()
    paddle_optimizer, paddle_scheduler = continue_in_paddle(model, optimizer, port, torch_scheduler=scheduler)
    port.train()
    import paddle

    second_half = []
    for batch in batches[5:]:
        loss = paddle_loss(port(paddle.to_tensor(batch.numpy())))
        loss.backward()
        paddle_optimizer.step()
        paddle_scheduler.step()
        paddle_optimizer.clear_grad()
        second_half.append(float(loss))
    assert np.max(np.abs(np.array(first_half + second_half) - np.array(all_torch))) <= 1e-5
    assert paddle_scheduler.last_epoch == scheduler.last_epoch + 5


def test_optimizer_state_round_trip_paddle_to_torch():
    from paddleport.parity import continue_in_paddle, paddle_state_to_torch
    from paddleport.parity.porting.weights import NameMap, map_weights, parameter_pairs

    model = torch_encoder.build()
    optimizer, scheduler = _adamw_with_warmup(model)
    for _ in range(4):
        model(torch.from_numpy(make_inputs()["features"])).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    port = paddle_port.build()
    paddle_optimizer, paddle_scheduler = continue_in_paddle(model, optimizer, port, torch_scheduler=scheduler)
    fresh = torch_encoder.build()
    fresh_optimizer, fresh_scheduler = _adamw_with_warmup(fresh)
    pairs = parameter_pairs(fresh, port, map_weights(fresh, port, NameMap()))
    paddle_state_to_torch(paddle_optimizer, fresh_optimizer, pairs, paddle_scheduler, fresh_scheduler)
    assert fresh_scheduler.last_epoch == 4 and fresh_optimizer.param_groups[0]["lr"] == pytest.approx(
        optimizer.param_groups[0]["lr"])
    for (name, original), (_, copy) in zip(model.named_parameters(), fresh.named_parameters()):
        ours, theirs = fresh_optimizer.state[copy], optimizer.state[original]
        assert int(ours["step"]) == int(theirs["step"]) == 4
        np.testing.assert_allclose(ours["exp_avg"].numpy(), theirs["exp_avg"].numpy(), rtol=0, atol=0)
        np.testing.assert_allclose(ours["exp_avg_sq"].numpy(), theirs["exp_avg_sq"].numpy(), rtol=0, atol=0)


def test_report_to_dict_and_markdown_tree():
    report = diff(torch_encoder.build(), paddle_port.build("gelu_tanh"), make_inputs(), grad=False)
    data = report.to_dict()
    assert data["passed"] is False and data["first_divergence"] == "layers.0.act"
    first = next(module for module in data["modules"] if not module["passed"])
    assert first["outputs"][0]["over_tolerance"] > 0 and first["outputs"][0]["max_abs"] > 1e-5
    tree = report.markdown().splitlines()
    assert any(line.startswith("      - `layers.0.act` (GELU)") for line in tree)


def test_squeezebert_port_in_2021_style_matches_transformers_through_rules():
    from examples.squeezebert import paddle_squeezebert, torch_reference
    from examples.squeezebert.inputs import make_inputs as make_tokens
    from examples.squeezebert.rules import RULES

    for single_step in (False, True):
        report = diff(torch_reference.build(), paddle_squeezebert.build(), make_tokens(), rules=RULES,
                      single_step=single_step, train=True)  # dropout on: shared masks by torch-side name
        assert report.passed, report.summary()
        assert all(module.problem is None for module in report.modules)
    pairs = {pair["torch"]: pair["paddle"] for pair in report.weights["pairs"]}
    assert pairs["encoder.layers.1.attention.query.weight"] == "encoder.blocks.1.attn.q.weight"
    assert pairs["pooler.dense.weight"] == "pool_dense.weight"
    assert report.weights["unmapped_torch"] == ["embeddings.position_ids"] and not report.weights["unmapped_paddle"]
    assert "pooler" in report.unmatched_torch  # the port has no pooler module: listed, not hidden


def test_functional_dropout_inside_matched_modules_draws_shared_masks():
    import paddle

    class TorchBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = torch.nn.Linear(8, 8)

        def forward(self, x):
            hidden = torch.nn.functional.dropout(self.dense(x), p=0.3, training=self.training)
            return torch.nn.functional.dropout(hidden.tanh(), p=0.3, training=self.training)

    class PaddleBlock(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.dense = paddle.nn.Linear(8, 8)

        def forward(self, x):
            hidden = paddle.nn.functional.dropout(self.dense(x), p=0.3, training=self.training)
            return paddle.nn.functional.dropout(paddle.tanh(hidden), p=0.3, training=self.training)

    original = torch.nn.functional.dropout
    inputs = (np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32),)
    report = diff(TorchBlock(), PaddleBlock(), inputs, train=True)
    assert report.passed, report.summary()
    assert torch.nn.functional.dropout is original  # put back
    model = TorchBlock().train()  # the masks really drop: train-mode output differs from eval-mode output
    assert not torch.allclose(model(torch.from_numpy(inputs[0])), model.eval()(torch.from_numpy(inputs[0])))


def test_token_outputs_are_compared_where_the_attention_mask_keeps_a_token():
    """``positions`` (compare's rule, in the engine): per-token outputs named as such are compared at the kept
    tokens only; a difference at a padding position then does not count, one at a kept token still does."""
    import paddle

    from paddleport.parity.porting.engine import token_positions

    class TorchTokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = torch.nn.Linear(4, 4)

        def forward(self, features, attention_mask):
            return self.dense(features)

    class PaddleTokens(paddle.nn.Layer):
        def __init__(self, shift_kept=0.0):
            super().__init__()
            self.dense = paddle.nn.Linear(4, 4)
            self.shift_kept = shift_kept

        def forward(self, features, attention_mask):
            kept = attention_mask.astype("float32").unsqueeze(-1)
            return self.dense(features) + (1 - kept) + self.shift_kept * kept  # padding positions differ

    inputs = {"features": np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32),
              "attention_mask": np.array([[1, 1, 0], [1, 0, 0]])}
    assert diff(TorchTokens(), PaddleTokens(), inputs, grad=False).first_divergence == ""
    report = diff(TorchTokens(), PaddleTokens(), inputs, grad=False, positions=token_positions([":"]))
    assert report.passed, report.summary()
    assert report.modules[-1].outputs[0].compared == 3 * 4  # the three kept tokens
    shifted = diff(TorchTokens(), PaddleTokens(1e-3), inputs, grad=False, positions=token_positions([":"]))
    assert shifted.first_divergence == ""
