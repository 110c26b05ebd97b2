"""The trainable model: one encoder per modality, a logit scale and (Gated Symile) the gate.

``ContrastiveModel`` is the single object that training and evaluation share. It hides the
objective: ``loss`` and ``candidate_scores`` dispatch to CLIP, Symile or Gated Symile with the right
multiplier (s for CLIP, s·κ for the Symile family, docs/method.md §2-§3), so the training loop and the
retrieval code never branch on the method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gated_symile.config import RunConfig
from gated_symile.method.encoders.build import EncoderConfig, build_encoder


class ContrastiveModel(nn.Module):
    """Encoders (``encoders[m]``), log logit scale θ (``log_logit_scale``) and ``gate`` (or None).

    Construction is seeded from ``run_cfg.seed`` inside a forked RNG, so the same config and
    metadata always give the same initial weights whatever the caller's global RNG state.
    """

    def __init__(self, metadata: Mapping[str, Any], run_cfg: RunConfig) -> None:
        super().__init__()
        self.metadata = dict(metadata)
        self.run_cfg = run_cfg
        self.modalities: list[str] = list(metadata["modalities"])
        self.target_index: int = self.modalities.index(metadata["target"])
        self.objective = run_cfg.objective
        model_cfg = run_cfg.model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run_cfg.seed)
            self.encoders = nn.ModuleDict(
                {
                    m: build_encoder(
                        m,
                        metadata["inputs"][m],
                        model_cfg.encoders.get(m, EncoderConfig()),
                        model_cfg.embed_dim,
                        final_layernorm=model_cfg.embedding_norm == "layernorm",
                    )
                    for m in self.modalities
                }
            )
            scale = model_cfg.logit_scale
            self.log_logit_scale = nn.Parameter(
                torch.tensor(float(scale.init)), requires_grad=scale.learnable
            )
            self.gate: nn.Module | None = None
            if self.objective == "gated_symile":
                from gated_symile.method.gate import GatedSymileScorer

                g = run_cfg.gate
                self.gate = GatedSymileScorer(
                    dim=model_cfg.embed_dim,
                    n_modalities=len(self.modalities),
                    d_k=g.d_k,
                    gate_type=g.type,
                    gate_mode=g.mode,
                    use_null=g.use_null,
                    neutral=g.neutral,
                    gate_strength_init=g.strength_init,
                    gate_temp=g.temp,
                    temp_param=g.temp_param,
                    renormalize=g.renormalize,
                    mean_momentum=g.mean_momentum,
                    seed=run_cfg.seed,
                )

    # ------------------------------------------------------------------ scale

    @property
    def kappa(self) -> float:
        """DVS factor D^((M-1)/2) for ``l2_dvs``, else 1 (docs/method.md §2); never used by CLIP."""
        if self.run_cfg.model.embedding_norm != "l2_dvs":
            return 1.0
        return float(self.run_cfg.model.embed_dim) ** ((len(self.modalities) - 1) / 2)

    def logit_scale(self) -> torch.Tensor:
        """s = exp(θ), θ clamped at ``clamp_max`` when configured (gradient stops above it)."""
        theta = self.log_logit_scale
        clamp_max = self.run_cfg.model.logit_scale.clamp_max
        if clamp_max is not None:
            theta = theta.clamp(max=clamp_max)
        return theta.exp()

    def loss_multiplier(self) -> torch.Tensor:
        """The full multiplier the losses take: s for CLIP, s·κ for Symile and Gated Symile."""
        s = self.logit_scale()
        return s if self.objective == "clip" else s * self.kappa

    def gate_strength(self) -> float | None:
        """α = σ(λ) of the gate (logged per epoch), None without a gate."""
        return None if self.gate is None else float(self.gate.gate_strength().detach())

    # ------------------------------------------------------------------ embeddings

    def embed_modality(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """One modality's fp32 embeddings; L2-normalised for ``l2``/``l2_dvs``.

        With ``layernorm`` the encoder already ends in LayerNorm(D) and the output is used as is.
        """
        e = self.encoders[modality](x).float()
        if self.run_cfg.model.embedding_norm != "layernorm":
            e = F.normalize(e, dim=-1)
        return e

    def embed(self, batch: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Embeddings of every modality of a ``TensorSplit.batch`` dict, in modality order."""
        return [self.embed_modality(m, batch[m]) for m in self.modalities]

    def present_masks(self, batch: Mapping[str, torch.Tensor]) -> list[torch.Tensor] | None:
        """Per-modality bool masks from ``<m>_present``; None when the batch has none (all present)."""
        if not any(f"{m}_present" in batch for m in self.modalities):
            return None
        n = next(iter(batch[m] for m in self.modalities)).shape[0]
        return [
            batch.get(
                f"{m}_present", torch.ones(n, dtype=torch.bool, device=batch[m].device)
            ).bool()
            for m in self.modalities
        ]

    # ------------------------------------------------------------------ objective

    def loss(
        self,
        embeddings: Sequence[torch.Tensor],
        present: Sequence[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Training loss of the configured objective on one batch of embeddings."""
        from gated_symile.method import losses

        embeddings = list(embeddings)
        present = None if present is None else list(present)
        multiplier = self.loss_multiplier()
        loss_cfg = self.run_cfg.loss
        if self.objective == "clip":
            return losses.clip_loss(
                embeddings, multiplier, loss_cfg.clip_reduction, present=present
            )
        if self.objective == "symile":
            return losses.symile_loss(
                embeddings,
                multiplier,
                negatives=loss_cfg.negatives,
                generator=generator,
                present=present,
                k=loss_cfg.pair_k,
            )
        from gated_symile.method.gate import gated_symile_loss

        assert self.gate is not None
        if self.training:  # EMA of the `mean` neutral; a no-op for the other neutral types
            self.gate.update_neutral_means(embeddings, present)
        return gated_symile_loss(
            self.gate,
            embeddings,
            multiplier,
            negatives=loss_cfg.negatives,
            k=loss_cfg.pair_k,
            generator=generator,
            present=present,
        )

    def candidate_scores(
        self,
        query_embs: Sequence[torch.Tensor],
        candidate_embs: torch.Tensor,
        query_present: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Unscaled retrieval scores (B, N) of N candidates (target modality) for B queries.

        ``query_embs``: the non-target modalities' embeddings in modality order (each B×D).
        Scores omit the positive factor s(·κ), which never changes a ranking.
        """
        from gated_symile.method import losses

        queries = list(query_embs)
        qp = None if query_present is None else list(query_present)
        if self.objective == "clip":
            return losses.clip_candidate_scores(queries, candidate_embs, present=qp)
        if self.objective == "symile":
            return losses.symile_candidate_scores(queries, candidate_embs)
        assert self.gate is not None
        return self.gate.candidate_scores(
            queries, candidate_embs, self.target_index, query_present=qp
        )
