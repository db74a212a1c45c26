"""The root helpers of bayessky._validate shared by every package: device_dtype, check_device."""

from __future__ import annotations

import pytest
import torch

from bayessky._validate import check_device, device_dtype

F64 = torch.float64


def test_device_dtype_follows_the_first_floating_tensor():
    net = torch.nn.Linear(2, 3).to(F64)
    assert device_dtype(net) == (torch.device("cpu"), F64)
    # non-tensors and integer tensors are skipped; the first floating source wins
    ints = torch.arange(3)
    assert device_dtype(None, "x", ints, torch.zeros(2, dtype=torch.float16), net) == (
        torch.device("cpu"), torch.float16)
    # overrides win, a device string becomes a torch.device
    assert device_dtype(net, device="cpu", dtype=torch.float32) == (torch.device("cpu"), torch.float32)


def test_device_dtype_of_a_module_without_parameters_uses_a_floating_buffer():
    m = torch.nn.Module()
    m.register_buffer("count", torch.tensor(0))  # integer: not a dtype to compute in
    m.register_buffer("scale", torch.ones(2, dtype=F64))
    assert device_dtype(m) == (torch.device("cpu"), F64)


def test_device_dtype_defaults():
    assert device_dtype() == (torch.device("cpu"), torch.get_default_dtype())
    assert device_dtype(torch.nn.Module(), lambda z: z) == (torch.device("cpu"), torch.get_default_dtype())


def test_check_device():
    assert check_device(None) is None
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu"), "--device") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^--device: unknown device 'gpu'"):
        check_device("gpu", "--device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device: 'cuda:0' requested but CUDA is not available"):
            check_device("cuda:0")
