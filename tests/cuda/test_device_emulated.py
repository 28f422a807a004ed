"""The device plumbing on an emulated GPU (tests/cuda/emulated.py: _C.cuda's API on the
host, with the CPU kernels): runs on any machine. Every op of tests/cuda/cases.py, every
optimizer, Module.to and a short training run must give on "cuda" what they give on the
CPU -- so what these tests cover is everything above the CUDA kernels: DeviceArray, the
dispatch in nn.functional, autograd with device gradients, the optimizers' device path,
and the argument conventions of the _C.cuda bindings (the emulator checks buffer sizes)."""
import numpy as np
import pytest

import fastdl
import fastdl.nn as nn
import fastdl.nn.functional as F
from cases import CASE_IDS, CASES, OPTIMIZER_IDS, OPTIMIZERS, run, run_optimizer
import emulated


@pytest.fixture
def gpu(monkeypatch):
    return emulated.install(monkeypatch)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_op_on_device_matches_cpu(gpu, case, dtype):
    out_cpu, grads_cpu = run(fastdl, case, "cpu", dtype)
    out_dev, grads_dev = run(fastdl, case, "cuda", dtype)
    assert out_dev.dtype == out_cpu.dtype and out_dev.shape == out_cpu.shape
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_dev, out_cpu, **tol)
    for g_dev, g_cpu in zip(grads_dev, grads_cpu):
        assert (g_dev is None) == (g_cpu is None)
        if g_cpu is not None:
            np.testing.assert_allclose(g_dev, g_cpu, **tol)
    # a kernel really ran (no silent host fallback)
    assert any(call.endswith("forward") or call.startswith(("scale", "sum", "elementwise", "strided", "one_hot"))
               for call in gpu.calls)
    if not case.torch:  # dropout: the CPU's mask and values, bit for bit
        np.testing.assert_array_equal(out_dev, out_cpu)


@pytest.mark.parametrize("name,options", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_optimizer_on_device_matches_cpu(gpu, name, options):
    cpu = run_optimizer(fastdl, name, options, "cpu")
    dev = run_optimizer(fastdl, name, options, "cuda")
    for a, b in zip(dev, cpu):
        np.testing.assert_array_equal(a, b)
    assert any(call.endswith("_step") for call in gpu.calls)


def _model():
    fastdl.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_training_on_device_matches_cpu(gpu):
    x, y = fastdl.randn(8, 1, 8, 8), fastdl.randint(0, 3, (8,))
    cpu_model, gpu_model = _model(), _model()
    parameters = list(gpu_model.parameters())
    assert gpu_model.to("cuda") is gpu_model
    assert all(a is b for a, b in zip(parameters, gpu_model.parameters()))  # moved in place
    assert all(p.device == "cuda" for p in gpu_model.parameters())
    assert all(b.device == "cuda:0" for b in gpu_model.buffers())
    for model, device in ((cpu_model, "cpu"), (gpu_model, "cuda")):
        optimizer = fastdl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            loss.backward()
            optimizer.step()
    assert loss.device == "cuda" and loss.item() > 0
    gpu_model.cpu()
    for (key, a), b in zip(gpu_model.state_dict().items(), cpu_model.state_dict().values()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=key)


def test_gradient_accumulates_on_device(gpu):
    w = fastdl.tensor([1.0, -2.0, 3.0], requires_grad=True, device="cuda")
    for _ in range(2):
        F.relu(w).backward(fastdl.tensor([1.0, 1.0, 1.0], device="cuda"))
    assert w.grad.device == "cuda"
    np.testing.assert_array_equal(w.grad.cpu().numpy(), [2.0, 0.0, 2.0])
    # the same leaf used twice in one graph: the two gradients are added on the device
    v = fastdl.tensor([1.0, 2.0], requires_grad=True, device="cuda")
    (F.relu(v) + F.relu(v)).backward(fastdl.tensor([1.0, 1.0], device="cuda"))
    np.testing.assert_array_equal(v.grad.cpu().numpy(), [2.0, 2.0])


def test_to_and_back_is_differentiable(gpu):
    x = fastdl.tensor([[1.0, -1.0]], requires_grad=True)
    y = F.relu(x.to("cuda")).cpu()
    assert y.device == "cpu" and x.grad is None
    y.backward(fastdl.tensor([[3.0, 3.0]]))
    assert x.grad.device == "cpu"
    np.testing.assert_array_equal(x.grad.numpy(), [[3.0, 0.0]])


def test_device_tensor_basics(gpu):
    t = fastdl.tensor([[1.0, 2.0], [3.0, 4.0]], device="cuda")
    assert t.device == "cuda" and t.device == "cuda:0" and t.device == fastdl.device("cuda", 0)
    assert str(t.device) == "cuda:0" and t.is_cuda and not fastdl.tensor(1.0).is_cuda
    assert t.cuda() is t and t.to("cuda") is t
    assert t.to("cpu").device == "cpu"
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]] and t.sum is not None
    assert "device='cuda:0'" in repr(t)
    assert t.reshape(4).shape == (4,) and t.flatten().device == "cuda"
    assert t.to(fastdl.float64).dtype == np.float64 and t.to(fastdl.float64).device == "cuda"
    assert fastdl.zeros(2, 3, device="cuda").device == "cuda"
    assert fastdl.zeros_like(t).device == "cuda" and fastdl.ones_like(t, device="cpu").device == "cpu"
    assert fastdl.tensor(1.5, device="cuda").item() == 1.5
    c = t.clone()
    c.zero_()
    assert c.tolist() == [[0.0, 0.0], [0.0, 0.0]] and t.tolist()[0] == [1.0, 2.0]
    c.copy_(fastdl.tensor([[5.0, 6.0], [7.0, 8.0]]))
    assert c.tolist() == [[5.0, 6.0], [7.0, 8.0]]
    c.fill_(2.0)
    assert c.tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_numpy_on_device_raises_with_hint(gpu):
    t = fastdl.tensor([1.0], device="cuda")
    with pytest.raises(TypeError, match=r"Use Tensor\.cpu\(\)"):
        t.numpy()
    with pytest.raises(TypeError, match=r"cpu\(\)"):
        np.asarray(t.data)


def test_mixing_devices_raises(gpu):
    a, b = fastdl.randn(2, 3), fastdl.randn(2, 3).to("cuda")
    message = "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"
    with pytest.raises(RuntimeError, match=message):
        a + b
    with pytest.raises(RuntimeError, match=message):
        F.linear(b, fastdl.randn(4, 3))
    with pytest.raises(RuntimeError, match=message):
        F.conv2d(fastdl.randn(1, 1, 4, 4), fastdl.randn(1, 1, 3, 3).to("cuda"))
    with pytest.raises(RuntimeError, match=message):
        F.cross_entropy(b, fastdl.tensor([0, 1]))


def test_ops_without_cuda_kernel_raise_naming_the_op(gpu):
    t = fastdl.randn(2, 3).to("cuda")
    with pytest.raises(NotImplementedError, match=r"\* of a float32 array and a float64 array \(type promotion\)"):
        t * t.double()
    with pytest.raises(NotImplementedError, match="'pow' with exponent 3"):
        t ** 3
    with pytest.raises(NotImplementedError, match="max .*CUDA"):
        t.max()
    with pytest.raises(NotImplementedError, match="numpy.exp .*CUDA"):
        t.exp()
    with pytest.raises(NotImplementedError, match="matmul .*CUDA"):
        t @ t.t()
    with pytest.raises(NotImplementedError, match="'getitem' .*CUDA"):
        t[0]
    with pytest.raises(NotImplementedError, match=r"\+ on a int64 array"):
        fastdl.tensor([1, 2], device="cuda") + 1
    with pytest.raises(ValueError, match="could not be broadcast"):
        t + fastdl.randn(2).to("cuda")


def test_arithmetic_on_device_matches_cpu(gpu):
    a, b = fastdl.randn(3, 4), fastdl.rand(3, 4) + 0.5
    for x, y in ((a, b), (a.double(), b.double())):
        expected = [x - y, x * y, x / y, -x, x + 2.5, 2.5 - x, x * 3, 1.5 / y, y / 4, (x * y).sum(), x.mean()]
        dx, dy = x.cuda(), y.cuda()
        results = [dx - dy, dx * dy, dx / dy, -dx, dx + 2.5, 2.5 - dx, dx * 3, 1.5 / dy, dy / 4, (dx * dy).sum(),
                   dx.mean()]
        for i, (got, want) in enumerate(zip(results, expected)):
            assert got.device == "cuda" and got.dtype == want.dtype and got.shape == want.shape
            if i < 9:  # one IEEE operation per element: the same bits
                np.testing.assert_array_equal(got.cpu().numpy(), want.numpy())
            else:  # sums: in double on the device, pairwise in the dtype in NumPy
                np.testing.assert_allclose(got.cpu().numpy(), want.numpy(), rtol=1e-6)
    c = a.cuda()
    c.data *= 2.0
    c.data -= a.cuda().data
    c.data /= 4
    c.data += 1
    np.testing.assert_allclose(c.cpu().numpy(), a.numpy() / 4 + 1, rtol=1e-6)
    with fastdl.no_grad():
        d = a.cuda().clone()
        d.add_(a.cuda(), alpha=2).mul_(0.5).sub_(a.cuda())
    np.testing.assert_allclose(d.cpu().numpy(), 0.5 * a.numpy(), rtol=1e-6, atol=1e-7)
    assert (a.cuda().sum() / 2).item() == pytest.approx(float(a.numpy().sum()) / 2, rel=1e-5)


def test_dropout_on_device_is_the_cpu_mask(gpu):
    x = fastdl.randn(7, 300)
    for p in (0.1, 0.5, 0.9):
        fastdl.manual_seed(11)
        cpu = F.dropout(x, p)
        fastdl.manual_seed(11)
        dev = F.dropout(x.cuda(), p)
        np.testing.assert_array_equal(dev.cpu().numpy(), cpu.numpy())
    # in place, training flag, generator= and p == 1
    y = x.cuda().clone()
    fastdl.manual_seed(5)
    assert F.dropout(y, 0.4, inplace=True) is y
    fastdl.manual_seed(5)
    np.testing.assert_array_equal(y.cpu().numpy(), F.dropout(x, 0.4).numpy())
    assert F.dropout(x.cuda(), 0.5, training=False).device == "cuda"
    g = fastdl.Generator().manual_seed(2)
    first = F.dropout(x.cuda(), 0.5, generator=g).cpu().numpy()
    np.testing.assert_array_equal(first, F.dropout(x, 0.5, generator=fastdl.Generator().manual_seed(2)).numpy())
    assert not F.dropout(x.cuda(), 1.0).cpu().numpy().any()


def test_one_hot_and_pad_checks_on_device(gpu):
    labels = fastdl.tensor([[0, 2], [1, 3]], device="cuda")
    out = F.one_hot(labels)
    assert out.device == "cuda" and out.dtype == np.int64 and out.shape == (2, 2, 4)
    np.testing.assert_array_equal(out.cpu().numpy(), F.one_hot(labels.cpu()).numpy())
    with pytest.raises(ValueError, match="smaller than num_classes=3"):
        F.one_hot(labels, 3)
    with pytest.raises(ValueError, match="non-negative"):
        F.one_hot(fastdl.tensor([-1, 0], device="cuda"))
    assert F.one_hot(fastdl.tensor([1, 0], dtype=fastdl.int32, device="cuda"), 2).tolist() == [[0, 1], [1, 0]]
    with pytest.raises(ValueError, match="only 'constant'"):
        F.pad(labels, (1, 1), mode="reflect")
    padded = F.pad(labels, (1, 0), value=9)
    assert padded.device == "cuda" and padded.tolist() == [[9, 0, 2], [9, 1, 3]]


def test_weighted_losses_check_the_weight_on_device(gpu):
    x, y = fastdl.rand(4, 3).cuda(), fastdl.rand(4, 3).cuda()
    with pytest.raises(RuntimeError, match="weight: shape \\(2,\\) cannot be broadcast"):
        F.binary_cross_entropy(x, y, fastdl.rand(2).cuda())
    with pytest.raises(RuntimeError, match="same device"):
        F.binary_cross_entropy(x, y, fastdl.rand(3))
    with pytest.raises(NotImplementedError, match="gradients with respect to weight"):
        F.cross_entropy(x, y, fastdl.rand(3, requires_grad=True).cuda())


def test_cuda_label_checks_happen(gpu):
    with pytest.raises(IndexError, match="out of range"):
        F.cross_entropy(fastdl.randn(2, 3).to("cuda"), fastdl.tensor([0, 3], device="cuda"))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(fastdl.tensor([1.5], device="cuda"), fastdl.tensor([1.0], device="cuda"))


def test_optimizer_state_on_device(gpu):
    p = fastdl.tensor([1.0, 2.0], requires_grad=True, device="cuda")
    optimizer = fastdl.optim.Adam([p], lr=0.1)
    p.grad = fastdl.tensor([1.0, 1.0], device="cuda")
    optimizer.step()
    state = optimizer.state_dict()["state"][0]
    assert state["exp_avg"].device == "cuda"
    p.grad = fastdl.tensor([1.0, 1.0])  # on the wrong device
    with pytest.raises(RuntimeError, match="gradient on cpu"):
        optimizer.step()


def test_module_state_dict_loads_into_device_model(gpu):
    source, target = _model(), _model().to("cuda")
    for p in source.parameters():
        with fastdl.no_grad():
            p.fill_(0.25)
    target.load_state_dict(source.state_dict())
    assert all(p.device == "cuda" for p in target.parameters())
    assert target[0].weight.detach().cpu().numpy().max() == 0.25


def test_demo_on_device(gpu, capsys):
    pytest.importorskip("sklearn", reason="the demo trains on scikit-learn's digits")
    from fastdl.__main__ import demo
    result = demo(epochs=1, bench=False, device="cuda")
    assert result["test_accuracy"] > 0.5
    assert "device: emulated GPU" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:Using a target size")  # torch's warning for mse_loss_broadcast
@pytest.mark.parametrize("case", [c for c in CASES if c.torch], ids=[c.name for c in CASES if c.torch])
def test_case_is_valid_torch_code_with_the_same_result(case):
    # On the CPU, no GPU needed: each case means the same in PyTorch, so that on a GPU
    # machine test_cuda_matches_torch_cuda compares like with like.
    torch = pytest.importorskip("torch")
    out, grads = run(fastdl, case, "cpu", np.float64)
    out_ref, grads_ref = run(torch, case, "cpu", np.float64)
    assert out.shape == out_ref.shape and out.dtype == out_ref.dtype
    np.testing.assert_allclose(out, out_ref, rtol=1e-9, atol=1e-11)
    for g, g_ref in zip(grads, grads_ref):
        assert (g is None) == (g_ref is None)
        if g is not None:
            np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-11)
