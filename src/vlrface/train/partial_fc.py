"""PartialFC (An et al., CVPR 2022): class centres sharded over ranks, sampled per step.

Each rank holds ``C/W`` consecutive class centres (the wrapped margin head is
built for that many classes). A step:

1. all-gathers the embeddings (with gradient) and labels of the global batch;
2. samples, on each rank, every centre that is a positive of the global batch
   plus random negatives, ``max(rate·C/W, #positives)`` centres in all
   (``rate = 1``: the whole shard, which is plain model parallelism);
3. computes the fp32 cosine to the sampled centres, the margin through the
   head's hooks (``target_cosine``, ``negative_cosine``, ``extra_loss``) with the
   *global* target cosine (all-reduced from the rank that owns the class, so
   MV-Softmax/CurricularFace see the same target as a single process), and
4. the softmax cross-entropy over all ranks' sampled centres with a distributed
   log-sum-exp (max all-reduce for stability, then sum all-reduce).

The loss equals the full-softmax loss of a single process when ``rate = 1``.
Sampling uses the global torch RNG, which the trainer re-seeds at every step,
so it is a function of ``(seed, step)`` like everything else.

RI needs ``d_P`` and ``d_N`` from ``HeadOutput.cosine``. Here ``cosine`` is the
compact ``[B, 2]`` pair *(own centre, nearest sampled negative)* for this rank's
rows, both global over ranks, and :meth:`PartialFC.cosine_labels` gives the
label column (0). So ``d_N`` is the nearest **sampled** negative — PartialFC's
own approximation; exact when ``rate = 1``.

Checkpoints hold the full ``[C, D]`` weight (gathered on save, sliced on load),
so a run can be evaluated, or resumed, at any world size.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError
from ..models.heads.base import HeadOutput, MarginSoftmax
from . import distributed as D


def _uses_base(head: MarginSoftmax, name: str) -> bool:
    return getattr(type(head), name) is getattr(MarginSoftmax, name)


class PartialFC(nn.Module):
    """Wraps a margin head built for this rank's ``num_local`` classes."""

    def __init__(self, head: MarginSoftmax, num_classes: int, sample_rate: float = 1.0) -> None:
        super().__init__()
        if not 0 < sample_rate <= 1:
            raise UserError(f"train.partial_fc_rate={sample_rate} must be in (0, 1]")
        if not all(_uses_base(head, n) for n in ("margin_logits", "compute_logits", "loss")):
            raise UserError(
                f"head {type(head).__name__} changes the softmax itself; PartialFC supports "
                "margin heads only (arcface, cosface, normface, magface, adaface, mv-softmax, "
                "curricularface)"
            )
        info = D.current()
        self.rank, self.world_size = info.rank, info.world_size
        self.class_start, self.num_local = D.shard_range(num_classes, self.world_size, self.rank)
        if head.num_classes != self.num_local:
            raise ValueError(f"head has {head.num_classes} classes, this rank's shard {self.num_local}")
        self.head = head
        self.num_classes = num_classes
        self.sample_rate = sample_rate
        self.num_sample = max(int(sample_rate * self.num_local), 1)
        self.embedding_size = head.embedding_size
        self.register_state_dict_post_hook(_save_full_weight)
        self.register_load_state_dict_pre_hook(_load_shard)

    @property
    def weight(self) -> nn.Parameter:
        """This rank's centres ``[num_local, D]`` (global classes ``class_start …``)."""
        return self.head.weight

    @staticmethod
    def cosine_labels(labels: torch.Tensor) -> torch.Tensor:
        """The own-centre column of :attr:`HeadOutput.cosine` for every row."""
        return torch.zeros_like(labels)

    # ------------------------------------------------------------- sampling
    def sample(self, local_labels: torch.Tensor, owned: torch.Tensor) -> torch.Tensor | None:
        """Sorted shard indices to use this step (all positives + random negatives); None = all."""
        if self.num_sample >= self.num_local:
            return None
        positives = torch.unique(local_labels[owned])
        # one draw per rank from the shared RNG, so shards do not pick the same offsets
        rows = torch.rand(self.world_size, self.num_local, device=local_labels.device)
        score = rows[self.rank]
        score[positives] = 2.0
        k = max(self.num_sample, positives.numel())
        return torch.topk(score, k).indices.sort().values

    # -------------------------------------------------------------- forward
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> HeadOutput:
        b = embeddings.shape[0]
        emb = D.all_gather_with_grad(embeddings)
        all_labels = D.all_gather_nograd(labels)
        norms = emb.float().norm(dim=1)
        local = all_labels - self.class_start
        owned = (local >= 0) & (local < self.num_local)
        index = self.sample(local, owned)
        weight = self.weight if index is None else self.weight[index]
        weight = D.scale_grad(weight, 1.0 / self.world_size)  # DDP does not average the shards
        col = local.clamp(0, self.num_local - 1)
        if index is not None:
            col = torch.searchsorted(index, col).clamp(max=index.numel() - 1)
        cosine = self.head.cosine(emb, weight)  # [N, S] fp32
        col = col.unsqueeze(1)
        cos_t = D.all_reduce_sum_with_grad(torch.where(owned, cosine.gather(1, col).squeeze(1), 0.0))
        target = self.head.target_cosine(cos_t, norms)
        is_target = torch.zeros_like(cosine, dtype=torch.bool).scatter_(1, col, owned.unsqueeze(1))
        logits = torch.where(is_target, target.unsqueeze(1), self.head.negative_cosine(cosine, target))
        logits = logits * self.head.scale
        loss = _distributed_cross_entropy(logits, is_target) + self.head.extra_loss(norms)

        rows = slice(self.rank * b, (self.rank + 1) * b)
        nearest_neg = cosine.masked_fill(is_target, -2.0).max(dim=1).values
        nearest_neg = D.all_gather_with_grad(nearest_neg).view(self.world_size, -1).max(dim=0).values
        pair = torch.stack([cos_t[rows], nearest_neg[rows]], dim=1)
        return HeadOutput(loss, logits[rows], pair)

    # ----------------------------------------------------------- checkpoint
    @torch.no_grad()
    def full_weight(self) -> torch.Tensor:
        """All ranks' centres ``[C, D]`` (a collective: every rank must call it)."""
        if self.world_size == 1:
            return self.weight.detach().clone()
        longest = D.shard_range(self.num_classes, self.world_size, 0)[1]
        padded = self.weight.new_zeros(longest, self.embedding_size)
        padded[: self.num_local] = self.weight
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        counts = [D.shard_range(self.num_classes, self.world_size, r)[1] for r in range(self.world_size)]
        return torch.cat([p[:n] for p, n in zip(parts, counts)])


def _distributed_cross_entropy(logits: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """Mean over the global batch of ``logsumexp_all_ranks(logits) − target logit``.

    ``logits`` are this rank's columns; a row's target column lives on one rank.
    """
    top = D.all_reduce_max_(logits.detach().max(dim=1).values)
    sum_exp = D.all_reduce_sum_with_grad(torch.exp(logits - top.unsqueeze(1)).sum(dim=1))
    target = D.all_reduce_sum_with_grad(torch.where(is_target, logits, 0.0).sum(dim=1))
    return (sum_exp.log() + top - target).mean()


def _save_full_weight(module: PartialFC, state: dict, prefix: str, local_metadata: dict) -> None:
    state[prefix + "head.weight"] = module.full_weight()


def _load_shard(module: PartialFC, state: dict, prefix: str, *args) -> None:
    key = prefix + "head.weight"
    w = state.get(key)
    if w is not None and w.shape[0] == module.num_classes:
        state[key] = w[module.class_start : module.class_start + module.num_local]
