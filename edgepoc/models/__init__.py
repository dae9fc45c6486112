"""The game-theoretical deep model (SPEC §4-5): features, the paper's model classes, decoders,
training, distillation, checkpoints and figures. The modules that build, train or load a torch model import
PyTorch; the package itself, the portable student's forward pass, the decoders and the figures do not."""
