"""PyTorch side of the torch bridge tests (run with Debian's python3-torch 1.13).

Subcommands (every result is JSON on stdout or a file):
  save-ref IN.safetensors OUT.pth      torch.save({"model": OrderedDict(IN)}) to a buffer, then
                                       to OUT (the reference bytes for the writer)
  check PTH REF.safetensors [PTH REF]  torch.load(PTH, weights_only=True); compare ckpt["model"]
                                       (or the bare state dict or tensor) with REF bit for bit;
                                       one JSON line per pair
  logits PTH CONFIG.json TOKENS.st OUT.st
                                       a token classifier (REFERENCE.md 5) built from CONFIG,
                                       strict-loaded from PTH (weights_only), eval logits of
                                       TOKENS["codes"] written to OUT["logits"]
  craft-run DIR TOKENS [--unsafe-args] a run folder as the authors' fine-tuning leaves it: log.txt
                                       (one JSON dict per epoch, "finetune/" keys) and
                                       checkpoint-N.pth with model / optimizer / epoch / scaler /
                                       args (an argparse.Namespace naming TOKENS as its training
                                       file; --unsafe-args puts a pathlib path in it)

Nothing here is copied from the authors' code: the classifier follows REFERENCE.md section 5
and lib/models/classifier.ts.
"""
import argparse
import collections
import io
import json
import math
import os
import pathlib
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ST_DTYPES = {
    "F32": np.float32,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
    "F16": np.float16,
}


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = collections.OrderedDict()
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=ST_DTYPES[h["dtype"]]).reshape(h["shape"])
        t = torch.from_numpy(arr.copy())
        # a fresh tensor: numpy gives an empty array zero strides, torch.empty does not
        out[name] = torch.empty(t.shape, dtype=t.dtype).copy_(t)
    return out


def write_safetensors(path, tensors):
    names = sorted(tensors)
    header, chunks, off = {}, [], 0
    for name in names:
        t = tensors[name].detach().contiguous().cpu()
        assert t.dtype == torch.float32, name
        b = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


def same_bits(a, b):
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    return a.contiguous().numpy().tobytes() == b.contiguous().numpy().tobytes()


class Block(nn.Module):
    """A pre-norm ViT block (timm layout: norm1, attn.qkv, attn.proj, norm2, mlp.fc1/fc2)."""

    def __init__(self, dim, heads, mlp_ratio, qkv_bias, eps):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Module()
        hidden = int(round(dim * mlp_ratio))
        self.mlp.fc1 = nn.Linear(dim, hidden)
        self.mlp.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        b, n, c = x.shape
        h = self.heads
        qkv = self.attn.qkv(self.norm1(x)).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-2, -1)) * (c // h) ** -0.5
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
        x = x + self.attn.proj(y)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class TokenClassifier(nn.Module):
    """Codes -> embedding + LayerNorm -> patch conv -> CLS + positions -> blocks -> pool -> norm -> head."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        d, dim = c["tokenDim"], c["embedDim"]
        self.token_emb = nn.Module()
        self.token_emb.word_embeddings = nn.Embedding(c["codebookSize"], d)
        self.token_emb.LayerNorm = nn.LayerNorm(d, eps=c["normEps"])
        self.patch_embed = nn.Module()
        p = c["patchSize"]
        self.patch_embed.proj = nn.Conv2d(d, dim, kernel_size=p, stride=p)
        grid = c["gridSide"] // p
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.blocks = nn.ModuleList(
            Block(dim, c["numHeads"], c["mlpRatio"], c["qkvBias"], c["normEps"]) for _ in range(c["depth"])
        )
        self.norm = nn.LayerNorm(dim, eps=c["normEps"])
        self.head = nn.Linear(dim, c["numClasses"])

    def forward(self, codes):
        e = self.token_emb.LayerNorm(self.token_emb.word_embeddings(codes))  # [B, m, m, d]
        x = self.patch_embed.proj(e.permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        pooled = x[:, 1:].mean(1) if self.c["globalPool"] else x[:, 0]
        return self.head(self.norm(pooled))


def cmd_save_ref(src, out):
    buf = io.BytesIO()
    torch.save({"model": read_safetensors(src)}, buf)
    open(out, "wb").write(buf.getvalue())


def cmd_check(pth, ref):
    ck = torch.load(pth, weights_only=True)
    want = read_safetensors(ref)
    if isinstance(ck, torch.Tensor):  # a bare tensor (codebook.ckpt)
        got, ck = {next(iter(want)): ck}, {}
    elif "model" in ck:
        got = ck["model"]
    else:  # a bare state dict (tokenadapt.ckpt)
        got, ck = ck, {}
    bad = [k for k in want if k not in got or not same_bits(got[k], want[k])]
    extra = [k for k in got if k not in want]
    print(json.dumps({
        "type": type(got).__name__,
        "keys": list(got.keys()),
        "mismatched": bad,
        "unexpected": extra,
        "others": sorted(k for k in ck if k != "model"),
        "metadata": len(getattr(got, "_metadata", {})),
    }))


def cmd_logits(pth, config, tokens, out):
    torch.set_num_threads(1)
    c = json.load(open(config))
    model = TokenClassifier(c)
    sd = torch.load(pth, weights_only=True)["model"]
    model.load_state_dict(sd, strict=True)
    model.eval()
    codes = read_safetensors(tokens)["codes"].long()
    with torch.no_grad():
        logits = model(codes)
    write_safetensors(out, {"logits": logits})


def cmd_craft_run(folder, tokens, unsafe):
    torch.manual_seed(0)
    os.makedirs(folder, exist_ok=True)
    model = nn.Sequential(collections.OrderedDict(fc=nn.Linear(4, 3)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    args = argparse.Namespace(
        batch_size=2, epochs=3, accum_iter=2, model="deit_base_token_32", blr=1e-3,
        lr=0.004, layer_decay=0.65, save_periods=["last2", "best"], finetune="pretrained.pth",
        output_dir=folder, seed=3, world_size=2, dist_eval=True, cutmix_minmax=None,
        train_token_file=tokens, input_size=224, token_patch_size=8,
    )
    if unsafe:
        args.data_path = pathlib.PurePosixPath("/data/tokens")
    lines = []
    for epoch in range(3):
        lines.append({
            "finetune/train_lr": 0.004 * (epoch + 1) / 3,
            "finetune/train_loss": 6.9 - epoch * 0.5 if epoch != 1 else float("nan"),
            "finetune/test_loss": 6.5 - epoch * 0.4,
            "finetune/test_acc1": 1.5 + epoch * 10.25,
            "finetune/test_acc5": 5.0 + epoch * 20.0,
            "epoch": epoch,
        })
    with open(os.path.join(folder, "log.txt"), "w") as f:
        for r in lines:
            f.write(json.dumps(r) + "\n")
    torch.save({
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": 2,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                   "growth_interval": 2000, "_growth_tracker": 0},
        "args": args,
    }, os.path.join(folder, "checkpoint-2.pth"))
    write_safetensors(os.path.join(folder, "expected_model.safetensors"), model.state_dict())


def main(argv):
    cmd = argv[0] if argv else ""
    if cmd == "save-ref" and len(argv) == 3:
        cmd_save_ref(argv[1], argv[2])
    elif cmd == "check" and len(argv) >= 3 and len(argv) % 2 == 1:
        for i in range(1, len(argv), 2):
            cmd_check(argv[i], argv[i + 1])
    elif cmd == "logits" and len(argv) == 5:
        cmd_logits(*argv[1:])
    elif cmd == "craft-run" and len(argv) in (3, 4):
        cmd_craft_run(argv[1], argv[2], "--unsafe-args" in argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
