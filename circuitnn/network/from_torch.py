"""Convert a trained PyTorch model into circuitnn's network description (needs the optional
`torch` extra: `pip install circuitnn[torch]`; torch is imported only here, when called).

`from_torch(module, input_shape)` traces the module with `torch.fx` and maps, in order:
Conv2d (groups 1, dilation 1, square kernel/stride/padding, zero padding), Linear, BatchNorm2d
/ BatchNorm1d (inference statistics), ReLU (module, `F.relu`, `torch.relu`), MaxPool2d and
AvgPool2d (kernel = stride, no padding), AdaptiveAvgPool2d(1) and `mean` over H, W (global
average pooling), Flatten / `torch.flatten` / `view`/`reshape` to (N, -1), residual additions
(`+`, `torch.add`) and Identity / Dropout (dropped). Anything else is refused with one line
naming the layer. Weights are moved into circuitnn's layout: a conv kernel (out, in, k, k)
becomes the im2col matrix (k*k*in, out) in (dy, dx, c) order; flatten after a spatial tensor
follows torch's (c, h, w) order, so the next linear layer's rows are permuted to circuitnn's
(h, w, c) activations. Returns (Network, params); images then enter as pixel / 255 (any input
normalisation of the user's model must be part of the module to be converted).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.network.graph import Network, Node


def _pair(v: Any, what: str, name: str) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise CircuitnnError(f"layer '{name}': non-square {what} {tuple(v)} is not supported")
        v = v[0]
    return int(v)


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def from_torch(module, input_shape: tuple[int, int, int], n_classes: int | None = None,
               name: str = "torch") -> tuple[Network, dict[str, np.ndarray]]:
    """(Network, params) of a `torch.nn.Module` for NHWC `input_shape` (H, W, C)."""
    try:
        import torch
        import torch.fx
        from torch import nn
    except ImportError:
        raise CircuitnnError("from_torch needs PyTorch: pip install 'circuitnn[torch]'") from None
    if not isinstance(module, nn.Module):
        raise CircuitnnError("from_torch needs a torch.nn.Module")
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__") or len(
            input_shape) != 3 or not all(isinstance(v, (int, np.integer)) and not isinstance(
                v, bool) and v > 0 for v in input_shape):
        raise CircuitnnError(f"input_shape must be (H, W, C), three positive integers, got "
                             f"{input_shape!r}")
    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception as exc:  # torch raises many kinds of tracing errors
        raise CircuitnnError(f"cannot trace the model with torch.fx: "
                             f"{' '.join(str(exc).split())[:160]}") from None
    mods = dict(traced.named_modules())
    nodes: list[Node] = []
    params: dict[str, np.ndarray] = {}
    names: dict[str, str] = {}  # fx node -> circuitnn node name
    channels: dict[str, tuple] = {}  # flat node -> (h, w, c) of the tensor torch flattened
    h, w, c = (int(v) for v in input_shape)
    shape: dict[str, tuple] = {"input": (h, w, c)}

    def clean(s: str) -> str:
        return "".join(ch if ch.isalnum() else "_" for ch in s).strip("_") or "node"

    def add(node_name: str, op: str, inputs: tuple[str, ...], attrs: dict | None = None) -> str:
        n = Node(clean(node_name), op, inputs, attrs or {})
        nodes.append(n)
        net_shape = Network._shape(n, [shape[i] for i in inputs])
        shape[n.name] = net_shape
        return n.name

    def src(arg) -> str:
        if not isinstance(arg, torch.fx.Node) or arg.name not in names:
            raise CircuitnnError(f"cannot map an operation on '{arg}' (not a tensor of the model)")
        return names[arg.name]

    for node in traced.graph.nodes:
        if node.op == "placeholder":
            if "input" in names.values():
                raise CircuitnnError("from_torch supports models with one input")
            names[node.name] = "input"
            continue
        if node.op == "output":
            out = node.args[0]
            if not isinstance(out, torch.fx.Node):
                raise CircuitnnError("from_torch supports models with one output tensor")
            last = names[out.name]
            break
        target = node.target
        label = str(node.target) if node.op == "call_module" else node.name
        m = mods.get(target) if node.op == "call_module" else None
        x = src(node.args[0]) if node.args else None
        if m is not None and isinstance(m, (nn.Identity, nn.Dropout)):
            names[node.name] = x
            continue
        if m is not None and isinstance(m, nn.Conv2d):
            if m.groups != 1 or _pair(m.dilation, "dilation", label) != 1 or (
                    m.padding_mode != "zeros") or isinstance(m.padding, str):
                raise CircuitnnError(f"layer '{label}': only plain Conv2d (groups 1, dilation 1, "
                                     "numeric zero padding) can be mapped")
            k = _pair(m.kernel_size, "kernel", label)
            attrs = {"out": int(m.out_channels), "k": k,
                     "stride": _pair(m.stride, "stride", label),
                     "pad": _pair(m.padding, "padding", label), "bias": m.bias is not None}
            if len(shape[x]) != 3 or shape[x][2] != m.in_channels:
                raise CircuitnnError(f"layer '{label}': Conv2d takes {m.in_channels} channels, "
                                     f"but the tensor before it has shape {shape[x]} (H, W, C); "
                                     "check input_shape")
            nm = add(label, "conv", (x,), attrs)
            wt = _np(m.weight)  # (out, in, k, k)
            params[nm] = wt.transpose(2, 3, 1, 0).reshape(-1, wt.shape[0])
            if m.bias is not None:
                params[f"b_{nm}"] = _np(m.bias)
        elif m is not None and isinstance(m, nn.Linear):
            if m.in_features != int(np.prod(shape[x])):
                raise CircuitnnError(f"layer '{label}': {m.in_features} inputs, but the tensor "
                                     f"before it has shape {shape[x]}; check input_shape")
            nm = add(label, "linear", (x,), {"out": int(m.out_features),
                                             "bias": m.bias is not None})
            wt = _np(m.weight).T  # (in, out)
            perm = channels.get(x)
            if perm is not None:  # rows in torch's (c, h, w) flatten order -> (h, w, c)
                hh, ww, cc = perm
                wt = wt.reshape(cc, hh, ww, -1).transpose(1, 2, 0, 3).reshape(hh * ww * cc, -1)
            params[nm] = wt
            if m.bias is not None:
                params[f"b_{nm}"] = _np(m.bias)
        elif m is not None and isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if m.running_mean is None:
                raise CircuitnnError(f"layer '{label}': batch norm without running statistics")
            nm = add(label, "batchnorm", (x,), {"eps": float(m.eps)})
            ones = np.ones(m.num_features)
            params[f"gamma_{nm}"] = _np(m.weight) if m.affine else ones
            params[f"beta_{nm}"] = _np(m.bias) if m.affine else 0 * ones
            params[f"mean_{nm}"] = _np(m.running_mean)
            params[f"var_{nm}"] = _np(m.running_var)
        elif (m is not None and isinstance(m, nn.ReLU)) or target in (
                torch.relu, torch.nn.functional.relu) or target == "relu":
            nm = add(label, "relu", (x,))
            if x in channels:
                channels[nm] = channels[x]
        elif m is not None and isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair(m.kernel_size, "kernel", label)
            if _pair(m.stride or k, "stride", label) != k or _pair(m.padding, "padding",
                                                                     label) != 0:
                raise CircuitnnError(f"layer '{label}': pooling needs stride = kernel and no "
                                     "padding")
            if isinstance(m, nn.MaxPool2d):
                if _pair(m.dilation, "dilation", label) != 1:
                    raise CircuitnnError(f"layer '{label}': dilated pooling is not supported")
                nm = add(label, "maxpool", (x,), {"size": k, "ceil": bool(m.ceil_mode)})
            else:
                if m.ceil_mode:
                    raise CircuitnnError(f"layer '{label}': ceil-mode average pooling is not "
                                         "supported")
                nm = add(label, "avgpool", (x,), {"size": k})
        elif m is not None and isinstance(m, nn.AdaptiveAvgPool2d):
            if _pair(m.output_size, "output size", label) != 1:
                raise CircuitnnError(f"layer '{label}': only AdaptiveAvgPool2d(1) (global "
                                     "average pooling) can be mapped")
            # torch keeps (N, C, 1, 1), circuitnn's gap gives (N, C): a flatten after it is a
            # no-op
            nm = add(label, "gap", (x,))
        elif (m is not None and isinstance(m, nn.Flatten)) or target is torch.flatten or (
                node.op == "call_method" and target in ("view", "reshape", "flatten")):
            if node.op == "call_method" and target in ("view", "reshape") and tuple(
                    a if isinstance(a, int) else None for a in node.args[2:]) != (-1,):
                raise CircuitnnError(f"'{label}': only reshapes to (N, -1) can be mapped")
            if len(shape[x]) == 3:
                nm = add(label, "flatten", (x,))
                channels[nm] = shape[x]
            else:
                names[node.name] = x
                continue
        elif target in (torch.add, "add") or getattr(target, "__name__", "") in ("add",
                                                                                  "iadd"):
            if len(node.args) != 2 or node.kwargs:
                raise CircuitnnError(f"'{label}': only the sum of two tensors can be mapped")
            nm = add(label, "add", (x, src(node.args[1])))
        elif (node.op == "call_method" and target == "mean") or target is torch.mean:
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            dims = tuple(sorted(d % 4 for d in (dims if isinstance(dims, (tuple, list))
                                                else [dims])))
            if dims != (2, 3) or node.kwargs.get("keepdim"):
                raise CircuitnnError(f"'{label}': only mean over H and W (dims 2, 3) maps to "
                                     "global average pooling")
            nm = add(label, "gap", (x,))
        else:
            what = type(m).__name__ if m is not None else str(target)
            raise CircuitnnError(f"cannot map layer '{label}' ({what}) onto the arrays")
        names[node.name] = nm
    else:
        raise CircuitnnError("the traced model has no output")
    if last == "input" or not nodes:
        raise CircuitnnError("the model has no layers to map")
    if nodes[-1].name != last:  # the output is an earlier node: keep nodes up to it
        nodes = nodes[:[n.name for n in nodes].index(last) + 1]
    if len(shape[last]) != 1:
        raise CircuitnnError(f"the model's output must be (N, classes), got {shape[last]}")
    net = Network(name, (h, w, c), n_classes or shape[last][0], nodes)
    net.check_params(params)
    bad = [k for k, v in params.items() if not np.all(np.isfinite(v))]
    if bad:
        raise CircuitnnError(f"the model's parameter '{bad[0]}' is not finite (NaN or inf)")
    return net, params
