"""The game-theoretical deep model (SPEC §4-5): features, the paper's model classes, decoders,
training, distillation, checkpoints and figures. Importing this package imports PyTorch."""
