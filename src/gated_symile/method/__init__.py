"""The method: objectives, the Gated Symile gate, the contrastive model and encoders.

Pure computation on tensors: nothing here reads or writes files (import-linter contract)."""
