"""Modality encoders (ResNet, ECG ResNet, MLP) and the builder that picks one per input spec."""
