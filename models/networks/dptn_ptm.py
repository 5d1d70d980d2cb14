"""DPTN's Pose Transformer Module (PTM): Context Augment Blocks (CABs) and Texture Transfer Blocks (TTBs).

Paper: Zhang et al., "Exploring Dual-task Correlation for Pose Guided Person Image Generation", CVPR 2022.
Official code: PangzeCheung/Dual-task-Pose-Transformer-Network `models/PTM.py`; docs/models/dptn.md ("The
model"). Tokens are (L, B, C) with L = H*W in row-major order; there is no positional embedding. `seq_norm` is
a 1-d norm over the L tokens of each (batch, channel), as the official code applies it.

Module names and registration order give the official state_dict keys (`PTM.encoder.layers.<i>.self_attn...`,
`PTM.decoder.layers.<i>.multihead_attn...`, `PTM.decoder.norm.*`).
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def sequence_norm(kind: str, channels: int, affine: bool = True) -> nn.Module:
    """The 1-d norm of the PTM: 'instance' -> InstanceNorm1d, 'batch' -> BatchNorm1d (--norm)."""
    if kind == "instance":
        return nn.InstanceNorm1d(channels, affine=affine)
    if kind == "batch":
        return nn.BatchNorm1d(channels, affine=affine)
    raise ValueError(f"unknown norm {kind!r}; the PTM supports instance and batch")


def seq_norm(norm: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Apply a (B, C, L) norm to (L, B, C) tokens and return (L, B, C)."""
    return norm(tokens.permute(1, 2, 0)).permute(2, 0, 1)


class Attention(nn.MultiheadAttention):
    """nn.MultiheadAttention (sequence-first, packed in_proj) whose call returns the attended values only.

    `exact=True` takes PyTorch's explicit softmax path that the official call (need_weights=True) takes, so
    outputs match it bit for bit; `exact=False` lets PyTorch use its fused scaled-dot-product kernel, the
    same maths in a different summation order (faster; used for training).
    """

    exact: bool = True

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        out, _ = super().forward(query, key, value, need_weights=self.exact)
        return out


class CAB(nn.Module):
    """Context Augment Block: self-attention and a feed-forward layer on the source-to-source tokens.

    m = norm1(m + SelfAttn(m)); m = norm2(m + linear2(act(linear1(m)))).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, norm: str = "instance",
                 affine: bool = True) -> None:
        super().__init__()
        self.self_attn = Attention(d_model, nhead)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = sequence_norm(norm, d_model, affine)
        self.norm2 = sequence_norm(norm, d_model, affine)
        self.activation = nn.LeakyReLU(0.1)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:  # (L, B, C) -> (L, B, C)
        memory = seq_norm(self.norm1, memory + self.self_attn.attend(memory, memory, memory))
        return seq_norm(self.norm2, memory + self.linear2(self.activation(self.linear1(memory))))


class TTB(nn.Module):
    """Texture Transfer Block on the source-to-target tokens t, with keys M (CAB output) and values V (F_s).

    t = norm1(t + SelfAttn(t)); t = norm2(t + Attn(query t, key M, value V)); t = norm3(t + FFN(t)).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, norm: str = "instance",
                 affine: bool = True) -> None:
        super().__init__()
        self.self_attn = Attention(d_model, nhead)
        self.multihead_attn = Attention(d_model, nhead)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = sequence_norm(norm, d_model, affine)
        self.norm2 = sequence_norm(norm, d_model, affine)
        self.norm3 = sequence_norm(norm, d_model, affine)
        self.activation = nn.LeakyReLU(0.1)

    def forward(self, target: torch.Tensor, memory: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        target = seq_norm(self.norm1, target + self.self_attn.attend(target, target, target))
        target = seq_norm(self.norm2, target + self.multihead_attn.attend(target, memory, value))
        return seq_norm(self.norm3, target + self.linear2(self.activation(self.linear1(target))))


def clones(block: nn.Module, count: int) -> nn.ModuleList:
    """`count` independent deep copies of `block` (the official _get_clones)."""
    return nn.ModuleList(copy.deepcopy(block) for _ in range(count))


class CABs(nn.Module):
    """The CAB stack; no final norm."""

    def __init__(self, block: CAB, count: int) -> None:
        super().__init__()
        self.layers = clones(block, count)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            memory = layer(memory)
        return memory


class TTBs(nn.Module):
    """The TTB stack followed by `norm`; returns (B, C, L), as the official `TTBs` does (it never permutes back,
    and the PTM's final reshape relies on that)."""

    def __init__(self, block: TTB, count: int, norm: nn.Module) -> None:
        super().__init__()
        self.layers = clones(block, count)
        self.norm = norm

    def forward(self, target: torch.Tensor, memory: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            target = layer(target, memory, value)
        return self.norm(target.permute(1, 2, 0))  # (B, C, L)


class PTM(nn.Module):
    """Pose Transformer Module: PTM(F_ss, F_st, F_s) -> F_st' (B, C, H, W).

    CABs refine the source-to-source features F_ss; TTBs turn the source-to-target features F_st into
    F_st' by attending from F_st to the CAB output (keys) and fetching F_s (values).

    Args:
        d_model: channels C (256); nhead: heads (2); num_CABs, num_TTBs: depths (2, 2);
        dim_feedforward: FFN width (256); norm: 'instance' or 'batch'; affine: affine norms.
    """

    def __init__(self, d_model: int = 256, nhead: int = 2, num_CABs: int = 2, num_TTBs: int = 2,
                 dim_feedforward: int = 256, norm: str = "instance", affine: bool = True) -> None:
        super().__init__()
        # construction order = the official one, so that a seeded build draws the same random numbers
        cab = CAB(d_model, nhead, dim_feedforward, norm, affine)
        final_norm = sequence_norm(norm, d_model, affine)
        self.encoder = CABs(cab, num_CABs)
        ttb = TTB(d_model, nhead, dim_feedforward, norm, affine)
        self.decoder = TTBs(ttb, num_TTBs, final_norm)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def set_exact(self, exact: bool) -> None:
        """Choose the attention kernel: the official one (bit-identical) or PyTorch's fused one (faster)."""
        for module in self.modules():
            if isinstance(module, Attention):
                module.exact = exact

    def forward(self, source: torch.Tensor, target: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = source.shape
        tokens = [x.flatten(2).permute(2, 0, 1) for x in (source, target, value)]  # (L, B, C) each
        memory = self.encoder(tokens[0])
        out = self.decoder(tokens[1], memory, tokens[2])  # (B, C, L)
        return out.reshape(batch, channels, height, width)
