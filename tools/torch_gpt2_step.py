#!/usr/bin/python3
"""PyTorch's tokens/s for the training step that tools/train_step_benchmark times.

GPT-2 124M (pre-LN, learned positions, tanh GELU, biases, tied wte head, final LN, init std
0.02 with the residual projections scaled by 1/sqrt(2L)), float32, random tokens, one
warm-up step then K timed steps of forward + backward + clip_grad_norm_(1.0) + AdamW; prints
"pytorch T=<T> tokens/s <median>". Not a trainer: the loss is printed only as a sanity check.
Run with Debian's /usr/bin/python3 (python3-torch).

On a GPU (--device=cuda, as tools/run_gpu_checks.sh runs it beside tools/cuda_train_benchmark):
bf16 autocast (--bf16), optionally torch.compile (--compile), the vocabulary padded to 50304
rows as ours, and the line also says the peak memory: "pytorch eager|compile B=.. T=..
tokens/s X peak_gib Y".
"""

import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    # x += attn(ln_1(x)); x += mlp(ln_2(x)). Letters: B batch, T time, C width, NH heads.
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.c_attn = nn.Linear(width, 3 * width)
        self.attn_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.c_fc = nn.Linear(width, 4 * width)
        self.mlp_proj = nn.Linear(4 * width, width)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, NH, T, T)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class Gpt2(nn.Module):
    def __init__(self, vocab=50257, context=1024, layers=12, width=768, heads=12, padded=None):
        super().__init__()
        self.vocab = vocab
        self.wte = nn.Embedding(padded or vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers))
            elif p.dim() == 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, tokens, targets):
        T = tokens.size(1)
        x = self.wte(tokens) + self.wpe(torch.arange(T, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)[..., :self.vocab]  # tied head, (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq_len", type=int, default=64, help="tokens per sequence (T)")
    parser.add_argument("--micro_batch_size", type=int, default=4, help="sequences per step (B)")
    parser.add_argument("--timed_steps", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()
    if args.timed_steps <= 0:
        parser.error("--timed_steps must be positive")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    B, T = args.micro_batch_size, args.seq_len
    cuda = args.device == "cuda"
    model = Gpt2(padded=50304 if cuda else None).to(args.device)
    step_model = torch.compile(model) if args.compile else model
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=6e-4, betas=(0.9, 0.95), eps=1e-8)

    seconds = []
    for step in range(args.timed_steps + 1):
        data = torch.randint(0, 50257, (B, T + 1), device=args.device)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type=args.device, dtype=torch.bfloat16, enabled=args.bf16):
            loss = step_model(data[:, :-1], data[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        print(f"step {step + 1}{' (warm-up)' if step == 0 else ''} loss {loss.item():.4f} "
              f"{elapsed:.3f} s", file=sys.stderr)
        if step > 0:
            seconds.append(elapsed)
    if not cuda:
        print(f"pytorch T={T} tokens/s {B * T / statistics.median(seconds):.1f}")
        return
    mode = "compile" if args.compile else "eager"
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"pytorch {mode} B={B} T={T} tokens/s {B * T / statistics.median(seconds):.1f} "
          f"peak_gib {peak:.2f}")


if __name__ == "__main__":
    main()
