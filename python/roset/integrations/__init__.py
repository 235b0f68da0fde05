"""Framework integrations, one module each, imported on demand:

- ``roset.integrations.pytorch``: ``RosetCheckpointIO`` for PyTorch Lightning;
- ``roset.integrations.huggingface``: ``RosetTrainerCallback`` for transformers;
- ``roset.integrations.ray``: ``RosetRayTrainCallback`` for Ray Train.

Nothing is imported here, so ``import roset`` never pulls in a framework.
"""
