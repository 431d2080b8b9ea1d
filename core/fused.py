"""Fewer matrix multiplies per decode step: each Llama layer's q/k/v projections as one, gate/up as one.

A captured decode step of a small model on a GPU is bound by how many kernels it runs, not by
arithmetic: at 20 rows every projection is a multiply of a few microseconds, seven per layer. Stacking
the weights that read the same input (q, k and v; the MLP's gate and up) into one matrix runs two
multiplies instead of five and computes the same dot products. The original ``Linear`` weights become
views into the stacked ones, so nothing is stored twice and the model's parameters are unchanged.

Only plain ``LlamaAttention`` / ``LlamaMLP`` modules are fused (the embedded model's; an unmerged LoRA
wrapper or another architecture is left as it is), and only for decoding: ``StaticDecoder`` fuses the
model it is given.
"""

from __future__ import annotations

import types

import torch
from torch import nn
from torch.nn import functional

FUSED_MARK = "_titlecraft_fused"

# transformers' Llama module, bound by fuse_projections: the fused forward reads it as a global because
# TorchDynamo in torch 2.11 cannot trace an import of it there (transformers' lazy modules), which cost
# the GPU its compiled decode step.
modeling_llama = None


def _stack(module: nn.Module, names: tuple[str, ...], weight_name: str, bias_name: str) -> tuple[int, ...]:
    """Register the named Linear layers' weights (and biases) stacked, and re-point each layer at its
    slice; returns the output sizes, in order."""
    layers = [getattr(module, name) for name in names]
    sizes = tuple(layer.out_features for layer in layers)
    with torch.no_grad():
        weight = torch.cat([layer.weight for layer in layers])
        biases = [layer.bias for layer in layers]
        bias = torch.cat(biases) if all(b is not None for b in biases) else None
    module.register_buffer(weight_name, weight, persistent=False)
    module.register_buffer(bias_name, bias, persistent=False)
    for layer, part in zip(layers, weight.split(sizes), strict=True):
        layer.weight = nn.Parameter(part, requires_grad=False)
    if bias is not None:
        for layer, part in zip(layers, bias.split(sizes), strict=True):
            layer.bias = nn.Parameter(part, requires_grad=False)
    return sizes


def _fused_attention(self, hidden_states, position_embeddings, attention_mask=None, past_key_values=None, **kwargs):
    """LlamaAttention.forward with one projection multiply instead of three."""
    input_shape = hidden_states.shape[:-1]
    heads = (*input_shape, -1, self.head_dim)
    projected = functional.linear(hidden_states, self.qkv_weight, self.qkv_bias).split(self.qkv_sizes, dim=-1)
    query, key, value = (part.reshape(heads).transpose(1, 2) for part in projected)
    cos, sin = position_embeddings
    query, key = modeling_llama.apply_rotary_pos_emb(query, key, cos, sin)
    if past_key_values is not None:
        key, value = past_key_values.update(key, value, self.layer_idx)
    attend = modeling_llama.ALL_ATTENTION_FUNCTIONS.get_interface(
        self.config._attn_implementation, modeling_llama.eager_attention_forward
    )
    dropout = self.attention_dropout if self.training else 0.0
    output, weights = attend(self, query, key, value, attention_mask, dropout=dropout, scaling=self.scaling, **kwargs)
    return self.o_proj(output.reshape(*input_shape, -1).contiguous()), weights


def _fused_mlp(self, x):
    """LlamaMLP.forward with one multiply for the gate and up projections."""
    gate, up = functional.linear(x, self.gate_up_weight, self.gate_up_bias).split(self.gate_up_sizes, dim=-1)
    return self.down_proj(self.act_fn(gate) * up)


def _plain_linears(module: nn.Module, names: tuple[str, ...]) -> bool:
    return all(type(getattr(module, name, None)) is nn.Linear for name in names)


def fuse_projections(model) -> int:
    """Fuse every plain Llama attention and MLP block of ``model`` in place (once); returns how many
    blocks use a fused forward afterwards."""
    global modeling_llama
    from transformers.models.llama import modeling_llama

    fused = 0
    for module in model.modules():
        if getattr(module, FUSED_MARK, False):
            fused += 1
        elif type(module) is modeling_llama.LlamaAttention and _plain_linears(module, ("q_proj", "k_proj", "v_proj")):
            module.qkv_sizes = _stack(module, ("q_proj", "k_proj", "v_proj"), "qkv_weight", "qkv_bias")
            module.forward = types.MethodType(_fused_attention, module)
            setattr(module, FUSED_MARK, True)
            fused += 1
        elif type(module) is modeling_llama.LlamaMLP and _plain_linears(module, ("gate_proj", "up_proj")):
            module.gate_up_sizes = _stack(module, ("gate_proj", "up_proj"), "gate_up_weight", "gate_up_bias")
            module.forward = types.MethodType(_fused_mlp, module)
            setattr(module, FUSED_MARK, True)
            fused += 1
    return fused
