#!/usr/bin/env python3
"""A plain PyTorch (float64) reference of Stagehand's Llama-style and heterogeneous models.

Reads what tools/reference_batch writes (config.json in Stagehand's canonical model-config
form, weights.safetensors under Hugging Face Llama names, batch.json) and prints the mean
cross-entropy loss of the batch. Written from the model's definition, sharing no code with
Stagehand: nn-free torch ops, float64 throughout. Not a trainer.
Usage: torch_reference.py FOLDER
"""
import json
import math
import struct
import sys

import torch

torch.set_default_dtype(torch.float64)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        begin, end = info["data_offsets"]
        raw = bytearray(data[base + begin:base + end])
        t = torch.frombuffer(raw, dtype=torch.float32).to(torch.float64)
        tensors[name] = t.reshape(info["shape"])
    return tensors


def kind(part):
    return part if isinstance(part, str) else part["kind"]


def option(part, key, default):
    return default if isinstance(part, str) else part.get(key, default)


class Model:
    def __init__(self, config, weights):
        self.c = config
        self.w = weights
        self.C = config["d_model"]
        self.NH = config["num_heads"]
        self.hs = self.C // self.NH
        self.norm = config.get("norm", "layernorm")
        self.eps = config.get("norm_eps", 1e-5)
        self.activation = config.get("activation", "gelu")
        self.positions = config.get("positions", "learned")
        self.rope_base = config.get("rope_base", 10000.0)
        self.tied = config.get("tied_head", True)

    def get(self, name, required=True):
        if name in self.w:
            return self.w[name]
        if required:
            raise KeyError(name)
        return None

    def linear(self, x, prefix):
        y = x @ self.get(prefix + ".weight").T
        b = self.get(prefix + ".bias", required=False)
        return y if b is None else y + b

    def normalize(self, x, prefix):
        weight = self.get(prefix + ".weight")
        if self.norm == "rmsnorm":
            return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * weight
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5) * weight + self.get(prefix + ".bias")

    def rope(self, x):  # x (B, H, T, hs); Hugging Face's rotate_half
        T, hs = x.shape[2], x.shape[3]
        inv_freq = self.rope_base ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
        angles = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
        cos = torch.cat([angles.cos(), angles.cos()], -1)
        sin = torch.cat([angles.sin(), angles.sin()], -1)
        x1, x2 = x[..., :hs // 2], x[..., hs // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def attention(self, x, p, n_kv):
        B, T, _ = x.shape
        q = self.linear(x, p + "self_attn.q_proj").view(B, T, self.NH, self.hs).transpose(1, 2)
        k = self.linear(x, p + "self_attn.k_proj").view(B, T, n_kv, self.hs).transpose(1, 2)
        v = self.linear(x, p + "self_attn.v_proj").view(B, T, n_kv, self.hs).transpose(1, 2)
        if self.positions == "rope":
            q, k = self.rope(q), self.rope(k)
        group = self.NH // n_kv
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.hs)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, self.C)
        return self.linear(out, p + "self_attn.o_proj")

    def mlp(self, x, p):
        if self.activation == "swiglu":
            gate = self.linear(x, p + "mlp.gate_proj")
            hidden = gate * torch.sigmoid(gate) * self.linear(x, p + "mlp.up_proj")
        else:
            u = self.linear(x, p + "mlp.up_proj")
            hidden = 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))
        return self.linear(hidden, p + "mlp.down_proj")

    def loss(self, tokens, targets):
        B, T = tokens.shape
        x = self.get("model.embed_tokens.weight")[tokens]
        if self.positions == "learned":
            x = x + self.get("model.embed_positions.weight")[:T]
        for i, layer in enumerate(self.c["layers"]):
            p = "model.layers.%d." % i
            attention, mlp = layer["attention"], layer["mlp"]
            if kind(attention) != "none":
                h = self.normalize(x, p + "input_layernorm")
                if kind(attention) == "linear":
                    x = x + self.linear(h, p + "self_attn.linear_attn")
                else:
                    x = x + self.attention(h, p, option(attention, "n_kv_heads", self.NH))
            if kind(mlp) != "none":
                h = self.normalize(x, p + "post_attention_layernorm")
                x = x + (self.linear(h, p + "mlp.linear_mlp") if kind(mlp) == "linear"
                         else self.mlp(h, p))
        x = self.normalize(x, "model.norm")
        head = self.get("model.embed_tokens.weight" if self.tied else "lm_head.weight")
        logits = x @ head.T
        return torch.nn.functional.cross_entropy(logits.view(B * T, -1), targets.view(-1)).item()


def main():
    folder = sys.argv[1]
    with open(folder + "/config.json") as f:
        config = json.load(f)
    with open(folder + "/batch.json") as f:
        batch = json.load(f)
    shape = (batch["batch"], batch["seq_len"])
    tokens = torch.tensor(batch["tokens"]).view(shape)
    targets = torch.tensor(batch["targets"]).view(shape)
    model = Model(config, read_safetensors(folder + "/weights.safetensors"))
    print("torch loss float64 %.12f" % model.loss(tokens, targets))


if __name__ == "__main__":
    main()
