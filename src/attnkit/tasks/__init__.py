"""Task-specific models: recommenders (for Mirror Gradient), CEM (chatting handoff), ADASR (HSI-MSI fusion)."""
