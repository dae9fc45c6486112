"""The paper's model family (fixed K): the GNN+RNN `ResourceAllocationModel`, its distilled student, their
training, and the strategies that decode their probabilities `P` (`decode`)."""
