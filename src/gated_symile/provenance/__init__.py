"""Provenance: content hashes, manifests, the audit, and MLflow tracking."""
