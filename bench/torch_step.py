"""A plain PyTorch training step of the same shapes as seitpp's MTM / token classifier.

Used by `deno task bench:train --vs-torch` (bench/train_step.ts), which passes the resolved
model config as JSON. Written for the benchmark from the shapes in REFERENCE.md (not the
authors' code): token embedding (table + LayerNorm + dropout), p x p patch embedding, CLS and
position tables, pre-norm ViT blocks (qkv, proj, GELU MLP), for MTM the drop of
ceil(L * dropRatio) patches from the encoder, a decoder over all positions (masked ones get
the CLS row), the MLM layer (fc, GELU, LayerNorm, logits on the detached token table) and a
cross-entropy over the masked tokens; for the classifier a linear head on the CLS row and a
soft-target cross-entropy. Training mode, AdamW (weight decay 0.05), float32.

Prints one JSON line: {"ms_per_step", "cpu_ms_per_step", "threads", "torch" (version),
"trainable_parameters"} (the count equals seitpp's model's: test/bench/torch_step_test.ts).
"""

import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, drop, attn_drop, drop_path):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)
        self.drop = nn.Dropout(drop)
        self.attn_drop = nn.Dropout(attn_drop)
        self.drop_path = drop_path

    def _dp(self, x):
        if not self.training or self.drop_path == 0:
            return x
        keep = 1 - self.drop_path
        m = x.new_empty(x.shape[0], 1, 1).bernoulli_(keep)
        return x * m / keep

    def forward(self, x):
        b, n, c = x.shape
        h = self.heads
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)) * (c // h) ** -0.5
        a = self.attn_drop(a.softmax(dim=-1))
        y = (a @ v).transpose(1, 2).reshape(b, n, c)
        x = x + self._dp(self.drop(self.proj(y)))
        y = self.fc2(self.drop(F.gelu(self.fc1(self.norm2(x)))))
        return x + self._dp(self.drop(y))


class Front(nn.Module):
    """Token embedding, patch embedding, CLS and position tables."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.word = nn.Embedding(c["codebookSize"], c["tokenDim"])
        self.ln = nn.LayerNorm(c["tokenDim"], eps=1e-6)
        self.drop = nn.Dropout(c.get("embedDropout", 0.1))
        p = c["patchSize"]
        self.patch = nn.Conv2d(c["tokenDim"], c["embedDim"], p, stride=p)
        n = (c["gridSide"] // p) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, c["embedDim"]))
        self.pos = nn.Parameter(torch.randn(1, n + 1, c["embedDim"]) * 0.02)

    def forward(self, codes):
        e = self.drop(self.ln(self.word(codes)))  # [B, m, m, d]
        x = self.patch(e.permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)  # [B, L, D]
        return x + self.pos[:, 1:], self.cls + self.pos[:, :1]


class Mtm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        d, dd = c["embedDim"], c["decoderEmbedDim"]
        self.front = Front(c)
        self.front.pos.requires_grad_(False)  # MTM: fixed sin-cos table (MAE), not trained
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList(
            [Block(d, c["numHeads"], c.get("mlpRatio", 4), 0, 0, 0) for _ in range(c["depth"])]
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.dec_embed = nn.Linear(d, dd)
        n = (c["gridSide"] // c["patchSize"]) ** 2
        self.dec_pos = nn.Parameter(torch.randn(1, n + 1, dd) * 0.02)
        self.dec_blocks = nn.ModuleList(
            [
                Block(dd, c["decoderNumHeads"], c.get("mlpRatio", 4), 0.1, 0.1, 0)
                for _ in range(c["decoderDepth"])
            ]
        )
        self.dec_norm = nn.LayerNorm(dd, eps=1e-6)
        p = c["patchSize"]
        self.mlm_fc = nn.Linear(dd, p * p * c["tokenDim"])
        self.mlm_ln = nn.LayerNorm(c["tokenDim"], eps=1e-5)
        self.mlm_bias = nn.Parameter(torch.zeros(c["codebookSize"]))

    def forward(self, codes):
        c = self.c
        b = codes.shape[0]
        x, cls = self.front(codes)
        l, d = x.shape[1], x.shape[2]
        ratio = min(max(torch.randn(1).item() * 0.25 + 0.45, 0.4), 1.0)
        n_mask = math.ceil(l * ratio)
        n_drop = math.ceil(l * c.get("dropRatio", 0.4))
        order = torch.rand(b, l).argsort(dim=1)
        masked = torch.zeros(b, l, dtype=torch.bool)
        masked.scatter_(1, order[:, :n_mask], True)
        keep = order[:, n_drop:]
        kept_masked = torch.gather(masked, 1, keep).unsqueeze(-1)
        xk = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, d))
        xk = torch.where(kept_masked, self.mask_token.expand(b, xk.shape[1], d), xk)
        h = torch.cat([cls.expand(b, -1, -1), xk], dim=1)
        for blk in self.blocks:
            h = blk(h)
        h = self.dec_embed(self.norm(h))
        dd = h.shape[2]
        full = h[:, :1].expand(b, l, dd).clone()
        full = full.scatter(1, keep.unsqueeze(-1).expand(-1, -1, dd), h[:, 1:])
        y = torch.cat([h[:, :1], full], dim=1) + self.dec_pos
        for blk in self.dec_blocks:
            y = blk(y)
        y = self.dec_norm(y)[:, 1:]
        p, m, td = c["patchSize"], c["gridSide"], c["tokenDim"]
        t = self.mlm_fc(y).reshape(b, m // p, m // p, p, p, td).permute(0, 1, 3, 2, 4, 5)
        t = self.mlm_ln(F.gelu(t.reshape(b, m * m, td)))
        logits = t @ self.front.word.weight.detach().t() + self.mlm_bias
        per_token = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), codes.reshape(-1), reduction="none"
        ).reshape(b, m // p, p, m // p, p)
        per_patch = per_token.permute(0, 1, 3, 2, 4).reshape(b, l, p * p).mean(-1)
        return (per_patch * masked).sum() / masked.sum()


class Classifier(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["embedDim"]
        self.front = Front(c)
        self.blocks = nn.ModuleList(
            [
                Block(d, c["numHeads"], c.get("mlpRatio", 4), 0, 0, c.get("dropPath", 0.1))
                for _ in range(c["depth"])
            ]
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, c["numClasses"])

    def forward(self, codes, targets):
        x, cls = self.front(codes)
        h = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        for blk in self.blocks:
            h = blk(h)
        logits = self.head(self.norm(h)[:, 0])
        return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["mtm", "cls"], required=True)
    ap.add_argument("--config", required=True, help="resolved model config as JSON")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, required=True)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    c = json.loads(a.config)
    model = Mtm(c) if a.kind == "mtm" else Classifier(c)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    betas = (0.9, 0.95) if a.kind == "mtm" else (0.9, 0.999)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0}],
        lr=1e-3,
        betas=betas,
    )
    codes = torch.randint(0, c["codebookSize"], (a.batch, c["gridSide"], c["gridSide"]))
    targets = None
    if a.kind == "cls":
        targets = torch.full((a.batch, c["numClasses"]), 0.1 / c["numClasses"])
        targets[torch.arange(a.batch), torch.randint(0, c["numClasses"], (a.batch,))] += 0.9

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(codes) if a.kind == "mtm" else model(codes, targets)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(
        json.dumps(
            {
                "ms_per_step": 1000 * (t1 - t0) / a.steps,
                "cpu_ms_per_step": 1000 * cpu / a.steps,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "trainable_parameters": sum(p.numel() for p in trainable),
            }
        )
    )


if __name__ == "__main__":
    main()
