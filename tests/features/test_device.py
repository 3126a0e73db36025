import pytest
import torch

from recsys.device import describe_device, select_device


def test_auto_returns_a_usable_device():
    device = select_device("auto")
    assert device.type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert device == torch.device("cpu")


def test_cpu_is_always_honoured():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("request_", ["cuda", "cuda:1", "CUDA"])
def test_cuda_request_without_gpu_is_a_clear_error(request_):
    with pytest.raises(ValueError, match=r"CUDA was requested .*torch sees no GPU"):
        select_device(request_)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_request_without_mps_is_a_clear_error():
    with pytest.raises(ValueError, match="MPS was requested"):
        select_device("mps")


@pytest.mark.parametrize("bad", ["gpu", "tpu", "cuda:x"])
def test_unknown_device_names(bad):
    with pytest.raises(ValueError, match="Unknown device"):
        select_device(bad)


def test_describe_cpu():
    text = describe_device(torch.device("cpu"))
    assert text.startswith("CPU (") and "threads" in text
