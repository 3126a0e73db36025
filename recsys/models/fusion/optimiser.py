"""Adam for the gate's dozen parameters, without torch.optim.

``torch.optim``'s first use imports torch's compiler stack (``torch._dynamo``): about 1.5 s on a 2-core
machine, a tenth of the whole fusion fit on movielens-small-mm, paid by every fresh process that trains
(the default baselines use no optimiser). The gate needs plain Adam; :class:`GateAdam` takes the same
steps as ``torch.optim.Adam(params, lr)`` (no weight decay, no AMSGrad) and keeps its state-dict layout,
so a checkpoint written by either resumes with the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


class GateAdam:
    """Adam (Kingma & Ba 2015) as ``torch.optim.Adam`` computes it on one tensor at a time."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for parameter in self.params:
            if set_to_none:
                parameter.grad = None
            elif parameter.grad is not None:
                parameter.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for index, parameter in enumerate(self.params):
            grad = parameter.grad
            if grad is None:
                continue
            state = self.state.get(index)
            if state is None:
                state = self.state[index] = {
                    "step": torch.tensor(0.0),
                    "exp_avg": torch.zeros_like(parameter),
                    "exp_avg_sq": torch.zeros_like(parameter),
                }
            state["step"] += 1
            step = float(state["step"])
            state["exp_avg"].lerp_(grad, 1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denominator = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**step)).add_(self.eps)
            parameter.addcdiv_(state["exp_avg"], denominator, value=-self.lr / (1 - beta1**step))

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Adam``'s layout: per-parameter state by index, and one parameter group."""
        group = {
            "lr": self.lr,
            "betas": self.betas,
            "eps": self.eps,
            "weight_decay": 0,
            "amsgrad": False,
            "maximize": False,
            "params": list(range(len(self.params))),
        }
        return {"state": {i: dict(s) for i, s in self.state.items()}, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError("the optimiser state does not match the gate's parameters")
        self.lr = float(groups[0]["lr"])
        self.betas = (float(groups[0]["betas"][0]), float(groups[0]["betas"][1]))
        self.eps = float(groups[0]["eps"])
        self.state = {}
        for key, saved in state_dict["state"].items():
            parameter = self.params[int(key)]
            self.state[int(key)] = {
                "step": torch.as_tensor(saved["step"], dtype=torch.float32).clone(),
                "exp_avg": saved["exp_avg"].to(parameter.device, parameter.dtype).clone(),
                "exp_avg_sq": saved["exp_avg_sq"].to(parameter.device, parameter.dtype).clone(),
            }
